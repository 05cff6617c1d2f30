//! The newcomer's path from the README, with the shipped configuration: `serve`, then
//! `simulate`, then `events`; plus `check`.

use crate::support::*;

/// The shipped configuration and catalog, laid out in `root` as in the repository, so that
/// its relative paths (`../data`, `../mappings`) stay inside the test's folder.
fn shipped_config(root: &std::path::Path) -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["config", "mappings", "connectors"] {
        std::fs::create_dir_all(root.join(folder)).unwrap();
        for file in std::fs::read_dir(repo.join(folder)).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&file, root.join(folder).join(file.file_name().unwrap())).unwrap();
            }
        }
    }
    root.join("config/bridge.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_round_trips_an_approval_into_events_with_the_shipped_config() {
    let cwd = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let config = shipped_config(root.path());
    let server = ServeProcess::start(&config, cwd.path());
    let env = [
        ("BRIDGE_SERVER__LISTEN", server.public.as_str()),
        ("BRIDGE_ADMIN__LISTEN", server.admin.as_str()),
    ];
    let cfg = config.to_str().unwrap();

    let (ok, out, err) = run_cli(
        &["--config", cfg, "simulate", "--verify-url"],
        cwd.path(),
        &env,
    );
    assert!(ok, "verify-url failed: {out}{err}");
    assert!(out.contains("URL verification passed"), "{out}");

    let (ok, out, err) = run_cli(&["--config", cfg, "simulate"], cwd.path(), &env);
    assert!(ok, "simulate failed: {out}{err}");
    assert!(out.contains("200 OK"), "{out}");

    // the store is held by `serve`, so `events` goes through the admin API
    let (ok, out, err) = run_cli(&["--config", cfg, "events", "--json"], cwd.path(), &env);
    assert!(ok, "events failed: {out}{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["kind"], "approval_change");
    assert_eq!(lines[0]["business_key"], "202506050012:2");
    assert_eq!(lines[0]["app"], "demo");

    // the same event simulated again (new nonce/timestamp) is journaled once
    let (ok, _, _) = run_cli(&["--config", cfg, "simulate"], cwd.path(), &env);
    assert!(ok);
    let (_, table, _) = run_cli(&["--config", cfg, "events"], cwd.path(), &env);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("202506050012:2"))
            .count(),
        1,
        "{table}"
    );

    // after a clean stop, `events` reads the store directly and can show the payload
    assert_eq!(server.terminate().code(), Some(0));
    let (ok, out, err) = run_cli(
        &[
            "--config",
            cfg,
            "events",
            "--json",
            "--payload",
            "--kind",
            "approval_change",
        ],
        cwd.path(),
        &[],
    );
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(
        v["payload"]
            .as_str()
            .unwrap()
            .contains("<SpNoStr><![CDATA[202506050012]]></SpNoStr>")
    );
}

#[test]
fn check_validates_and_summarises_the_shipped_config() {
    let cwd = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let cfg = shipped_config(root.path());
    let (ok, out, err) = run_cli(
        &["--config", cfg.to_str().unwrap(), "check"],
        cwd.path(),
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("/wecom/callback"), "{out}");
    assert!(out.contains("wx5823bf96d3bd56c7"), "{out}");
    assert!(out.contains("public sample credentials"), "{out}");
    assert!(
        !out.contains("QDG6eK") && !err.contains("QDG6eK"),
        "token printed: {out}{err}"
    );
}

#[test]
fn check_lists_every_problem_and_fails() {
    let cwd = tempfile::tempdir().unwrap();
    let bad = cwd.path().join("bad.toml");
    std::fs::write(&bad, "[apps.x]\npath = \"nope\"\ntoken = \"t\"\nencoding_aes_key = \"short\"\nreceive_ids = []\n").unwrap();
    let (ok, out, err) = run_cli(
        &["--config", bad.to_str().unwrap(), "check"],
        cwd.path(),
        &[],
    );
    assert!(!ok);
    for needle in [
        "must start with /",
        "receive_ids is empty",
        "encoding_aes_key",
    ] {
        assert!(err.contains(needle), "missing {needle}: {out}{err}");
    }
}
