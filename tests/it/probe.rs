//! `wecom-bridge check --online` and `deliver::probe` against the stand-ins over real HTTP:
//! good credentials → `ok`, a wrong secret → the line that says which keys to fix, an
//! unreachable URL → "connection refused" with its fix, and a non-zero exit when any fails.

use wecom_bridge::config::Secret;
use wecom_bridge::deliver::probe::vendor::{
    ProbeHttp, beisen_token, fxiaoke_token, salesforce_token,
};
use wecom_bridge::deliver::probe::{ProbeResult, Problem, probe_spec};
use wecom_bridge::deliver::spec;
use wecom_bridge::standins::{self, oauth::OAuthStandIn};

use crate::support::*;

/// A loopback address where nothing listens (bound, then released).
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

fn oauth_connector(token_url: &str, secret_var: &str) -> String {
    format!(
        "kind = \"http\"\nurl = \"http://127.0.0.1:9/api\"\n[auth]\nkind = \"oauth2_client_credentials\"\ntoken_url = \"{token_url}\"\nclient_id = \"bridge\"\nclient_secret = \"env:{secret_var}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_prints_ok_or_the_fix_per_connector_and_fails_when_one_fails() {
    let idp = OAuthStandIn::start().await;
    idp.add_client("bridge", "right-secret");
    let inbox = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inbox_addr = inbox.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        &config_toml(dir.path(), &[TestApp::new("probe")]),
    );
    let c = dir.path().join("connectors");
    std::fs::write(
        c.join("good.toml"),
        oauth_connector(&idp.token_url(), "GOOD_SECRET"),
    )
    .unwrap();
    std::fs::write(
        c.join("wrong.toml"),
        oauth_connector(&idp.token_url(), "WRONG_SECRET"),
    )
    .unwrap();
    let down = closed_port().await;
    std::fs::write(
        c.join("down.toml"),
        oauth_connector(&format!("http://{down}/oauth/token"), "GOOD_SECRET"),
    )
    .unwrap();
    // A bearer connector: reachable, credentials not checkable without sending a document.
    std::fs::write(
        c.join("plain.toml"),
        format!("kind = \"http\"\nurl = \"http://{inbox_addr}/in\"\n[auth]\nkind = \"bearer\"\ntoken = \"env:GOOD_SECRET\"\n"),
    )
    .unwrap();
    let accept = tokio::spawn(async move {
        // Answers every connection like any HTTP server would a HEAD of `/` (404); the probe
        // first opens a bare TCP connection to tell "refused" from TLS problems.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut s, _) = inbox.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = s
                        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });

    let env = [("GOOD_SECRET", "right-secret"), ("WRONG_SECRET", "not-it")];
    let (cfg2, cwd) = (cfg.clone(), dir.path().to_owned());
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_config(&cfg2, &["check", "--online"], &cwd, &env))
            .await
            .unwrap();
    accept.abort();
    assert!(!ok, "two probes failed, so check must fail: {out}{err}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {out}"))
            .to_owned()
    };
    assert!(line("good").contains(" ok "), "{out}");
    assert!(line("good").contains("token issued"), "{out}");
    let wrong = line("wrong");
    assert!(wrong.contains("FAILED"), "{wrong}");
    assert!(wrong.contains("invalid_client"), "{wrong}");
    assert!(
        wrong.contains("fix: check auth.client_id and auth.client_secret"),
        "{wrong}"
    );
    let down_line = line("down");
    assert!(
        down_line.contains(&format!("connection refused at {down}")),
        "{down_line}"
    );
    assert!(
        down_line.contains("fix: check the host and port"),
        "{down_line}"
    );
    let plain = line("plain");
    assert!(
        plain.contains(" ok ") && plain.contains("HTTP 404"),
        "{plain}"
    );
    assert!(
        plain.contains("bearer credentials are not checked"),
        "{plain}"
    );
    assert!(
        err.contains("2 of 4 connector(s) failed the online probe"),
        "{err}"
    );
    // The token endpoint saw exactly the two token requests that reached it.
    assert_eq!(idp.token_requests(), 2);
    assert_eq!(idp.refused(), 1);
    for secret in ["right-secret", "not-it"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "secret printed: {out}{err}"
        );
    }

    // Only the good one: exit 0.
    for f in ["wrong.toml", "down.toml", "plain.toml"] {
        std::fs::remove_file(c.join(f)).unwrap();
    }
    let cwd = dir.path().to_owned();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_config(&cfg, &["check", "--online"], &cwd, &env))
            .await
            .unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.contains("online probes:"), "{out}");
    idp.stop().await;
}

#[tokio::test]
async fn a_dns_name_that_does_not_resolve_is_reported_as_dns() {
    let text = "kind = \"http\"\nurl = \"http://no-such-host.invalid/api\"\n";
    let spec = spec::parse(std::path::Path::new("dns.toml"), text, "dns").unwrap();
    let report = probe_spec(&spec).await;
    assert!(
        matches!(&report.result, ProbeResult::Failed { problem: Problem::Dns { host, .. } } if host == "no-such-host.invalid"),
        "{report:?}"
    );
    assert!(
        report.line().contains("fix: check the host name"),
        "{}",
        report.line()
    );
}

fn http() -> ProbeHttp {
    ProbeHttp::new(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
}

#[tokio::test]
async fn vendor_token_probes_say_ok_or_which_credential_to_fix() {
    let http = http();
    let mut state = standins::beisen::BeisenState::default();
    state.app = ("900".into(), "204402".into(), "bs-secret".into());
    let beisen = standins::beisen::start(state).await;
    let base = url::Url::parse(&beisen.base_url()).unwrap();
    let ok = beisen_token(&http, &base, "900", "204402", &Secret::new("bs-secret")).await;
    assert!(ok.as_deref().is_ok_and(|d| d.contains("204402")), "{ok:?}");
    let wrong = beisen_token(&http, &base, "900", "204402", &Secret::new("nope")).await;
    assert!(
        matches!(&wrong, Err(Problem::Credentials { detail, fix }) if detail.contains("invalid_client") && fix.contains("AppSecret")),
        "{wrong:?}"
    );
    let tenant = beisen_token(&http, &base, "900", "1", &Secret::new("bs-secret")).await;
    assert!(
        matches!(&tenant, Err(Problem::Credentials { fix, .. }) if fix.contains("tenant_id")),
        "{tenant:?}"
    );

    let mut state = standins::fxiaoke::FxiaokeState::default();
    state.app = ("FSAID_1".into(), "fx-secret".into(), "perm".into());
    state.ea = "fxxxx1".into();
    let fx = standins::fxiaoke::start(state).await;
    let base = url::Url::parse(&fx.base_url()).unwrap();
    let perm = Secret::new("perm");
    let ok = fxiaoke_token(&http, &base, "FSAID_1", &Secret::new("fx-secret"), &perm).await;
    assert!(ok.as_deref().is_ok_and(|d| d.contains("fxxxx1")), "{ok:?}");
    let wrong = fxiaoke_token(&http, &base, "FSAID_1", &Secret::new("x"), &perm).await;
    assert!(
        matches!(&wrong, Err(Problem::Credentials { detail, .. }) if detail.contains("10006") && detail.contains("appSecret")),
        "{wrong:?}"
    );
    assert_eq!(
        fx.with(|s| s.token_requests()),
        2,
        "counted at the stand-in"
    );

    let mut state = standins::salesforce::SalesforceState::default();
    state.client = ("3MVG9".into(), "sf-secret".into());
    let sf = standins::salesforce::start(state).await;
    let base = url::Url::parse(&sf.base_url()).unwrap();
    let ok = salesforce_token(&http, &base, "3MVG9", &Secret::new("sf-secret")).await;
    assert!(
        ok.as_deref().is_ok_and(|d| d.contains(&sf.base_url())),
        "{ok:?}"
    );
    let wrong = salesforce_token(&http, &base, "3MVG9", &Secret::new("x")).await;
    assert!(
        matches!(&wrong, Err(Problem::Credentials { detail, fix }) if detail.contains("invalid_client") && fix.contains("Consumer Secret")),
        "{wrong:?}"
    );

    // Nothing listens: refused, whichever vendor.
    let down = url::Url::parse(&format!("http://{}", closed_port().await)).unwrap();
    let refused = salesforce_token(&http, &down, "3MVG9", &Secret::new("sf-secret")).await;
    assert!(
        matches!(refused, Err(Problem::ConnectionRefused { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_refusal_from_a_target_whose_clock_is_an_hour_off_is_reported_as_clock_skew() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A token endpoint whose clock says one hour ago, refusing like OAuth2 servers do.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(
            &(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)),
        )
        .unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (mut s, _) = server.accept().await.unwrap();
            let date = date.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    let body =
                        r#"{"error":"invalid_client","error_description":"request expired"}"#;
                    let answer = format!(
                        "HTTP/1.1 401 Unauthorized\r\ndate: {date}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let text = format!(
        "kind = \"http\"\nurl = \"http://{addr}/api\"\n[auth]\nkind = \"oauth2_client_credentials\"\ntoken_url = \"http://{addr}/oauth/token\"\nclient_id = \"bridge\"\nclient_secret = \"file:{}\"\n",
        secret.display()
    );
    let spec = spec::parse(std::path::Path::new("skew.toml"), &text, "skew").unwrap();
    let report = probe_spec(&spec).await;
    task.abort();
    assert!(
        matches!(&report.result, ProbeResult::Failed { problem: Problem::ClockSkew { detail } } if detail.contains("request expired")),
        "{report:?}"
    );
    assert!(
        report
            .line()
            .contains("fix: set this machine's clock right"),
        "{}",
        report.line()
    );
}
