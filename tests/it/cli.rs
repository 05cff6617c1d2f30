//! The newcomer's path from the README, with the shipped configuration: `serve`, then
//! `simulate`, then `events`; plus `check`.

use crate::support::*;

/// The shipped configuration and catalog, laid out in `root` as in the repository, so that
/// its relative paths (`../data`, `../mappings`) stay inside the test's folder.
fn shipped_config(root: &std::path::Path) -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The code tables under mappings/tables/ come along: mappings read them at load.
    for folder in ["config", "mappings", "mappings/tables", "connectors"] {
        std::fs::create_dir_all(root.join(folder)).unwrap();
        for file in std::fs::read_dir(repo.join(folder)).unwrap() {
            let file = file.unwrap().path();
            if file.is_file() {
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
    let cli = |args: &[&str], env: &[(&str, &str)]| run_config(&config, args, cwd.path(), env);

    let (ok, out, err) = cli(&["simulate", "--verify-url"], &env);
    assert!(ok, "verify-url failed: {out}{err}");
    assert!(out.contains("URL verification passed"), "{out}");

    let (ok, out, err) = cli(&["simulate"], &env);
    assert!(ok, "simulate failed: {out}{err}");
    assert!(out.contains("200 OK"), "{out}");

    // the store is held by `serve`, so `events` goes through the admin API
    let (ok, out, err) = cli(&["events", "--json"], &env);
    assert!(ok, "events failed: {out}{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["kind"], "approval_change");
    assert_eq!(lines[0]["business_key"], "202506050012:2");
    assert_eq!(lines[0]["app"], "demo");

    // the same event simulated again (new nonce/timestamp) is journaled once
    let (ok, _, _) = cli(&["simulate"], &env);
    assert!(ok);
    let (_, table, _) = cli(&["events"], &env);
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
    let args = ["events", "--json", "--payload", "--kind", "approval_change"];
    let (ok, out, err) = cli(&args, &[]);
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
    let (ok, out, err) = run_config(&cfg, &["check"], cwd.path(), &[]);
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
    let (ok, out, err) = run_config(&bad, &["check"], cwd.path(), &[]);
    assert!(!ok);
    for needle in [
        "must start with /",
        "receive_ids is empty",
        "encoding_aes_key",
    ] {
        assert!(err.contains(needle), "missing {needle}: {out}{err}");
    }
}

#[test]
fn check_prints_the_demo_credentials_warning_once() {
    let cwd = tempfile::tempdir().unwrap();
    let cfg = shipped_config(cwd.path());
    let (ok, out, err) = run_config(&cfg, &["check"], cwd.path(), &[]);
    assert!(ok, "{out}{err}");
    let all = format!("{out}{err}");
    let mentions = all
        .lines()
        .filter(|l| l.contains("sample credentials") || l.contains("DEMO CREDENTIALS"))
        .count();
    assert_eq!(mentions, 1, "{all}");
}

#[test]
fn unknown_kinds_are_refused_with_the_list_of_valid_ones() {
    let cwd = tempfile::tempdir().unwrap();
    let cfg = shipped_config(cwd.path());
    let (ok, out, err) = run_config(&cfg, &["events", "--kind", "approval"], cwd.path(), &[]);
    assert!(!ok, "{out}");
    for kind in wecom_bridge::ingress::JOURNAL_KINDS {
        assert!(err.contains(kind), "{kind} not listed: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_unknown_kinds_with_the_list() {
    let t = TestBridge::start(&[TestApp::new("kinds_api")]).await;
    let (status, body) = get(&format!("http://{}/admin/events?kind=approvals", t.admin)).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("approval_change") && body.contains("unparsed"),
        "{body}"
    );
    t.stop().await;
}

/// A client-side config for `simulate` against `t`: the same apps, its listeners.
fn client_config(t: &TestBridge, apps: &[TestApp]) -> std::path::PathBuf {
    let path = t.dir.path().join("client.toml");
    std::fs::write(&path, config_toml(t.dir.path(), apps)).unwrap();
    path
}

async fn cli_with_env(
    args: Vec<String>,
    cwd: std::path::PathBuf,
    env: Vec<(String, String)>,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        run_cli(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &cwd,
            &env.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )
    })
    .await
    .unwrap()
}

/// `--config <cfg> simulate --app <app> --url <url>`.
fn simulate_args(cfg: &std::path::Path, app: &str, url: String) -> Vec<String> {
    let cfg = cfg.to_str().unwrap();
    ["--config", cfg, "simulate", "--app", app, "--url", &url]
        .map(str::to_string)
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_says_duplicate_when_the_bridge_answered_a_redelivery() {
    let t = TestBridge::start(&[TestApp::new("sim_dup")]).await;
    let cfg = client_config(&t, &[TestApp::new("sim_dup")]);
    let args = simulate_args(&cfg, "sim_dup", t.url("/cb/sim_dup"));
    let (ok, first, err) = cli_with_env(args.clone(), t.dir.path().into(), vec![]).await;
    assert!(ok, "{first}{err}");
    assert!(
        first.contains("accepted: the event is journaled"),
        "{first}"
    );
    let (ok, second, err) = cli_with_env(args, t.dir.path().into(), vec![]).await;
    assert!(ok, "{second}{err}");
    assert!(second.contains("duplicate, journaled once"), "{second}");
    assert_eq!(t.events("&app=sim_dup").await.len(), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_digit_token_set_through_the_environment_stays_text() {
    // the bridge's token is "0123456" (a TOML string); the client gets it only from BRIDGE_*
    let mut server_app = TestApp::new("digits");
    server_app.token = "0123456".into();
    let t = TestBridge::start(&[server_app]).await;
    let cfg = client_config(&t, &[TestApp::new("digits")]);
    let args = simulate_args(&cfg, "digits", t.url("/cb/digits"));
    let env = vec![(
        "BRIDGE_APPS__DIGITS__TOKEN".to_string(),
        "0123456".to_string(),
    )];
    let (ok, out, err) = cli_with_env(args.clone(), t.dir.path().into(), env).await;
    // a number would fail to load, and "123456" (zero lost) would be refused as forged
    assert!(ok, "{out}{err}");
    assert!(out.contains("200 OK"), "{out}");
    // without the variable, the client's own token is wrong: proof the variable was used
    let (ok, out, err) = cli_with_env(args, t.dir.path().into(), vec![]).await;
    assert!(!ok && err.contains("-40001"), "{out}{err}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_dead_letters_print_json() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["evt_json_1", "evt_json_2"];
    let config =
        embedded_with_dead_letters(dir.path(), "cli_json", &ids, 1, |_| "target said no").await;
    let run = |args: &[&str]| run_config(&config, args, dir.path(), &[]);
    let (ok, out, err) = run(&["queues", "--json"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["broker"], "embedded");
    let route = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "route")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        (route["ready"].as_u64(), route["dead"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );

    let (ok, out, err) = run(&["dead-letters", "--json"]);
    assert!(ok, "{out}{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["reason"], "target said no");
}
