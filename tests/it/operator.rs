//! The README's operator walk-through against a running bridge (the demo, whose store is not
//! the one the config names): `deliveries`, `deliveries show` and `dead-letters` must read the
//! running bridge through its admin API and show the parked job with its reason.

use std::path::Path;

use crate::demo::start_demo;
use crate::support::run_cli;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_finds_a_failed_delivery_in_the_running_bridge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = root.join("config/bridge.toml");
    let dir = tempfile::tempdir().unwrap();
    let d = start_demo(&dir.path().join("demo")).await;
    let parked = d.sent[3].0.clone();
    let delivered = d.sent[0].0.clone();

    // The CLI's config: the shipped one, pointed at the demo's admin listener, in a folder of
    // its own whose store does not exist, so every answer below comes from the running bridge.
    let text = std::fs::read_to_string(&shipped)
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:8081\"",
            &format!("listen = \"{}\"", d.bridge.admin_addr),
        )
        .replace("\"../mappings\"", &format!("{:?}", root.join("mappings")))
        .replace(
            "\"../connectors\"",
            &format!("{:?}", root.join("connectors")),
        );
    let cfg = dir.path().join("cli").join("bridge.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_string_lossy().to_string();
    let cwd = dir.path().to_path_buf();
    // The demo's admin API takes tokens: the CLI uses the operator token it printed, as the
    // printout says (`export BRIDGE_ADMIN__TOKEN=…`).
    assert!(
        d.summary
            .contains(&format!("export BRIDGE_ADMIN__TOKEN={}", d.operator_token)),
        "{}",
        d.summary
    );
    let token = d.operator_token.clone();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config".to_string(), cfg.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        let (cwd, token) = (cwd.clone(), token.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = all.iter().map(String::as_str).collect();
                run_cli(&args, &cwd, &[("BRIDGE_ADMIN__TOKEN", token.as_str())])
            })
            .await
            .unwrap()
        }
    };

    let (ok, out, err) = cli(&["deliveries", "--state", "dead"]).await;
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.contains(&parked))
        .unwrap_or_else(|| panic!("the parked claim is listed:\n{out}\n{err}"));
    assert!(
        row.contains("dead") && row.contains("unknown_category"),
        "{row}"
    );
    assert!(!out.contains(&delivered), "only dead jobs:\n{out}");

    let (ok, out, err) = cli(&["dead-letters", "--queue", "deliver.finance"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(&parked) && l.contains("`礼品费` is not in table `accounts`")),
        "{out}\n{err}"
    );
    assert!(
        out.contains("replay with: wecom-bridge replay --queue deliver.finance"),
        "{out}"
    );

    let (ok, out, err) = cli(&["deliveries", "show", &delivered]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("delivered") && out.contains("voucher_no=JZ-"),
        "{out}"
    );
    assert!(
        out.contains("→ 201"),
        "the attempt and the target's status:\n{out}"
    );

    d.stop().await;
}
