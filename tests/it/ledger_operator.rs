//! The delivery ledger through the operator surfaces: a failed delivery found with the CLI
//! (reading the store directly) and with the admin API of a running bridge.

use std::path::PathBuf;

use wecom_bridge::record::{Classification, Ledger, Outcome};
use wecom_bridge::store::Store;

use crate::ledger::{attempt, start};
use crate::support::*;

/// Writes a config file for a bridge with its store under `dir`, and a ledger with a dead
/// job and a delivered one for SpNo 202506050012.
async fn operator_fixture(dir: &std::path::Path) -> PathBuf {
    let config = dir.join("bridge.toml");
    std::fs::write(&config, config_toml(dir, &[TestApp::new("ledger_cli")])).unwrap();
    let l = Ledger::embedded(Store::open(&dir.join("bridge.redb"), test_sealer()).unwrap());
    let now = now() * 1000;
    let dead = Outcome::Dead {
        reason: "body code E1001: invalid account".into(),
    };
    let failed = (Classification::Permanent, "body-dead", dead);
    one_attempt_job(&l, ("job_dead_1", "finance"), now - 2_000, failed).await;
    let delivered = (Classification::Delivered, "body-ok", Outcome::Delivered);
    one_attempt_job(&l, ("job_ok_1", "erp"), now - 1_000, delivered).await;
    config
}

/// Job `key` of SpNo 202506050012 for `connector`, begun at `at`: one attempt 1 ms later
/// classified `class` (its bodies marked `body`), finished 10 ms after that as `outcome`.
async fn one_attempt_job(
    l: &Ledger,
    (key, connector): (&str, &str),
    at: i64,
    (class, body, outcome): (Classification, &str, Outcome),
) {
    l.begin(start(key, "202506050012", connector, at))
        .await
        .unwrap();
    l.record_attempt(key, attempt(class, at + 1, body))
        .await
        .unwrap();
    l.finish(key, outcome, at + 10).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_a_failed_delivery_through_the_cli_and_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = operator_fixture(dir.path()).await;
    let cfg = config.to_str().unwrap().to_string();

    // no bridge running: the CLI reads the store directly
    let cwd = dir.path();
    let deliveries = |args: &'static [&'static str]| {
        let args = [&["--config", cfg.as_str(), "deliveries"][..], args].concat();
        async move { run_cli_async(&args, cwd).await }
    };
    let (ok, out, err) = deliveries(&["--json"]).await;
    assert!(ok, "{out}{err}");
    let jobs = json_lines(&out);
    assert_eq!(
        jobs.iter()
            .map(|j| j["key"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["job_ok_1", "job_dead_1"]
    );
    let (ok, table, err) = deliveries(&["--state", "dead", "--since", "1h"]).await;
    assert!(ok, "{table}{err}");
    assert!(
        table.contains("job_dead_1") && table.contains("E1001"),
        "{table}"
    );
    assert!(!table.contains("job_ok_1"), "{table}");
    let (ok, shown, err) = deliveries(&["show", "202506050012", "--payload"]).await;
    assert!(ok, "{shown}{err}");
    assert!(
        shown.contains("#1") && shown.contains("body-dead") && shown.contains("V-0042"),
        "{shown}"
    );
    let (ok, _, err) = deliveries(&["--state", "deliverd"]).await;
    assert!(!ok);
    assert!(err.contains("unknown delivery state"), "{err}");

    // with the bridge holding the store, the same through the admin API
    let parsed = wecom_bridge::config::Config::load(&config).unwrap();
    let bridge = wecom_bridge::app::start(&parsed).await.unwrap();
    let admin = bridge.admin_addr.to_string();
    let page = get_json(&format!(
        "http://{admin}/admin/deliveries?connector=finance&state=dead"
    ))
    .await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["key"], "job_dead_1");
    assert_eq!(page["next"], serde_json::Value::Null);
    let first = get_json(&format!("http://{admin}/admin/deliveries?limit=1")).await;
    let next = first["next"].as_str().expect("a second page").to_string();
    let second = get_json(&format!(
        "http://{admin}/admin/deliveries?limit=1&cursor={next}"
    ))
    .await;
    assert_eq!(second["jobs"][0]["key"], "job_dead_1");
    let bad = get(&format!("http://{admin}/admin/deliveries?state=nope")).await;
    assert_eq!(bad.0, 400);

    let (_, detail) = get(&format!("http://{admin}/admin/deliveries/job_dead_1")).await;
    assert!(
        detail.contains("E1001") && !detail.contains("body-dead"),
        "bodies only on request: {detail}"
    );
    let with_payload = reqwest::get(format!(
        "http://{admin}/admin/deliveries/job_dead_1?payload=true"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(with_payload.contains("body-dead"), "{with_payload}");
    let missing = reqwest::get(format!("http://{admin}/admin/deliveries/job_nope"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // the CLI notices the lock and goes through the admin API
    let via_api = |args: &'static [&'static str]| {
        let args = [&["--config", cfg.as_str(), "deliveries"][..], args].concat();
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let (admin, cwd) = (admin.clone(), cwd.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&args, &cwd, &[("BRIDGE_ADMIN__LISTEN", admin.as_str())])
        })
    };
    let (ok, out, err) = via_api(&["--json", "--sp-no", "202506050012", "--connector", "erp"])
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    let jobs = json_lines(&out);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["key"], "job_ok_1");
    assert_eq!(jobs[0]["captured"]["voucher_no"], "V-0042");
    let (ok, out, err) = via_api(&["show", "job_dead_1", "--json"]).await.unwrap();
    assert!(ok, "{out}{err}");
    let shown = json_lines(&out);
    assert_eq!(shown[0]["job"]["state"], "dead");
    assert_eq!(shown[0]["attempts"][0]["status"], 200);
    assert_eq!(shown[0]["attempts"][0]["payload"], serde_json::Value::Null);
    let (ok, _, err) = via_api(&["show", "job_nope"]).await.unwrap();
    assert!(!ok);
    assert!(err.contains("no delivery job"), "{err}");
    bridge.shutdown().await;
}
