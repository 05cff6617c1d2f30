use super::*;

const MINIMAL: &str = r#"
    [apps.demo]
    path = "/wecom/callback"
    token = "QDG6eK"
    encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
    receive_ids = ["wx5823bf96d3bd56c7"]
"#;

/// Asserts that `toml` is refused as invalid with every one of `needles` among its errors.
fn assert_invalid(toml: &str, needles: &[&str]) {
    let Err(ConfigError::Invalid(errors)) = Config::from_toml(toml) else {
        panic!("expected invalid config");
    };
    let all = errors.join("\n");
    for needle in needles {
        assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
    }
}

#[test]
fn minimal_config_gets_safe_defaults() {
    let c = Config::from_toml(MINIMAL).unwrap();
    let app = &c.apps["demo"];
    assert!(app.check_timestamp);
    assert_eq!(app.timestamp_window_secs, 300);
    assert_eq!(app.kind, AppKind::App);
    assert_eq!(c.server.max_body_bytes, 65536);
    assert_eq!(c.broker.kind, BrokerKind::Embedded);
    assert!(c.resolve().unwrap().apps["demo"].is_demo());
}

#[test]
fn secrets_never_show_in_debug() {
    let c = Config::from_toml(MINIMAL).unwrap();
    let resolved = c.resolve().unwrap();
    let shown = format!("{c:?} {resolved:?}");
    assert!(!shown.contains("QDG6eK"), "{shown}");
    assert!(!shown.contains("jWmYm7qr"), "{shown}");
    assert!(shown.contains("***"));
}

#[test]
fn secret_references_resolve_from_env_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tok");
    std::fs::write(&file, "from-file\n").unwrap();
    let r = SecretRef::parse(&format!("file:{}", file.display()));
    assert_eq!(r.resolve().unwrap().expose(), "from-file");
    // PATH is set in every test environment; use it rather than mutating the environment.
    let r = SecretRef::parse("env:PATH");
    assert_eq!(
        r.resolve().unwrap().expose(),
        std::env::var("PATH").unwrap()
    );
    let missing = SecretRef::parse("env:WECOM_BRIDGE_SURELY_UNSET_VAR");
    let e = missing.resolve().unwrap_err().to_string();
    assert!(e.contains("WECOM_BRIDGE_SURELY_UNSET_VAR"), "{e}");
    assert_eq!(format!("{missing:?}"), "env:WECOM_BRIDGE_SURELY_UNSET_VAR");
}

#[test]
fn every_problem_is_listed_at_once() {
    let bad = r#"
        [admin]
        listen = "0.0.0.0:8081"
        [apps.a]
        path = "wecom"
        token = "t"
        encoding_aes_key = "short"
        receive_ids = []
        [apps.b]
        path = "wecom"
        token = "t"
        encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
        receive_ids = ["x"]
    "#;
    assert_invalid(
        bad,
        &[
            "admin.token is not set",
            "must start with /",
            "also used by apps.a",
            "receive_ids is empty",
            "encoding_aes_key must be the 43",
        ],
    );
}

#[test]
fn validation_builds_the_typed_values_start_up_uses() {
    let c = Config::from_toml(&format!(
        "{MINIMAL}\n[wecom]\ntime_zone = \"Europe/Berlin\"\n"
    ))
    .unwrap();
    let v = c.checked().unwrap();
    assert_eq!(v.time_zone.iana_name(), Some("Europe/Berlin"));
    assert_eq!(
        v.apps["demo"].corp_id, "wx5823bf96d3bd56c7",
        "the first receive-id"
    );
    assert_eq!(v.route.concurrency, 1);
    assert_eq!(v.deliver.policy.max_attempts(), 12);
    assert_eq!(v.route.policy.max_attempts(), 12);
    assert_eq!(
        v.route.policy.schedule(),
        [5, 30, 120, 600].map(std::time::Duration::from_secs)
    );
}

#[test]
fn stage_schedules_must_be_broker_tiers() {
    let ok = format!(
        "{MINIMAL}\n[broker]\nretry_tiers_secs = [1, 60]\n[stages.route]\nretry_secs = [1, 60]\nconcurrency = 4\n"
    );
    let c = Config::from_toml(&ok).unwrap();
    assert_eq!(c.checked().unwrap().route.concurrency, 4);
    let bad = format!(
        "{MINIMAL}\n[stages.route]\nretry_secs = [5, 45]\nmax_hint_secs = 100\nconcurrency = 0\n[stages.deliver]\nretry_secs = [7]\n"
    );
    assert_invalid(
        &bad,
        &[
            "stages.route.retry_secs: 45 s is not one of broker.retry_tiers_secs [5, 30, 120, 600, 3600]",
            "stages.route.max_hint_secs: 100 s",
            "stages.route.concurrency must be at least 1",
            "stages.deliver.retry_secs: 7 s is not one of",
        ],
    );
    let e = Config::from_toml(&format!("{MINIMAL}\n[stages.route]\nretries = 3\n")).unwrap_err();
    assert!(e.to_string().contains("retries"), "{e}");
}

#[test]
fn an_empty_admin_token_is_a_config_error() {
    let e = Config::from_toml(&format!("[admin]\ntoken = \"  \"\n{MINIMAL}")).unwrap_err();
    assert!(e.to_string().contains("admin.token is empty"), "{e}");
    // a reference that resolves to nothing is refused at start
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty");
    std::fs::write(&file, "\n").unwrap();
    let c = Config::from_toml(&format!(
        "[admin]\ntoken = \"file:{}\"\n{MINIMAL}",
        file.display()
    ))
    .unwrap();
    let e = c.resolve().unwrap_err().to_string();
    assert!(e.contains("resolves to an empty value"), "{e}");
}

#[test]
fn secret_fields_keep_environment_values_as_text() {
    for key in [
        "apps.demo.token",
        "apps.demo.encoding_aes_key",
        "apps.demo.secret",
        "admin.token",
        "broker.url",
        "journal.keys.local-1",
    ] {
        assert!(is_secret_key(key), "{key}");
    }
    for key in [
        "server.max_connections",
        "apps.demo.agent_id",
        "wecom.api_base_url",
    ] {
        assert!(!is_secret_key(key), "{key}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let e = Config::from_toml(&format!("{MINIMAL}\n[server]\nlisten_addr = \"x\"\n")).unwrap_err();
    assert!(e.to_string().contains("listen_addr"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let file = etc.join("bridge.toml");
    std::fs::write(
        &file,
        MINIMAL.to_string() + "[store]\npath = \"data/b.redb\"\n[catalog]\nmappings_dir = \"maps\"\nconnectors_dir = \"/abs/connectors\"\n[journal]\nactive_key = \"k\"\nkeys = { k = \"file:keys/j.key\", lit = \"00\" }\n",
    )
    .unwrap();
    let c = Config::load(&file).unwrap();
    let etc = std::path::absolute(&etc).unwrap();
    assert_eq!(c.store.path, etc.join("data/b.redb"));
    assert_eq!(c.catalog.mappings_dir, etc.join("maps"));
    assert_eq!(c.catalog.connectors_dir, PathBuf::from("/abs/connectors"));
    assert_eq!(c.journal.keys["k"], SecretRef::File(etc.join("keys/j.key")));
    assert_eq!(c.journal.keys["lit"], SecretRef::Literal("00".into()));
}
