//! The edge under abuse: slow clients, too many connections, huge declared bodies, a
//! shutdown that clients cannot hold up, and the admin listener against web pages.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wecom_bridge::telemetry::names;

use crate::support::*;

const APPROVAL: &str = include_str!("../../samples/approval-approved.xml");

/// A bridge whose `[server]` section also has `server_keys` (short timeouts, a small cap).
async fn start_with_server(apps: &[TestApp], server_keys: &str) -> TestBridge {
    TestBridge::start_edited(apps, |_, toml| {
        toml.replacen("[server]\n", &format!("[server]\n{server_keys}\n"), 1)
    })
    .await
}

/// Reads until the server closes the connection (or `within` passes); returns what was read
/// and whether it was closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn signed_query(app: &TestApp) -> String {
    signed(app, &APPROVAL.replace("wx5823bf96d3bd56c7", CORP_ID)).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_closed_within_the_timeout_while_callbacks_are_answered() {
    let app = TestApp::new("loris");
    let t = start_with_server(
        &[TestApp::new("loris")],
        "header_read_timeout_ms = 600\nbody_read_timeout_ms = 600\nmax_connections = 500",
    )
    .await;
    let q = signed_query(&app);
    let opened = Instant::now();
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(t.public).await.unwrap();
        let head = if i % 2 == 0 {
            // headers never finished
            format!("POST /cb/loris?{q} HTTP/1.1\r\nHost: bridge\r\nContent-Ty")
        } else {
            // headers complete, body promised and never sent in full
            format!(
                "POST /cb/loris?{q} HTTP/1.1\r\nHost: bridge\r\nContent-Length: 2000\r\n\r\n<xml>"
            )
        };
        s.write_all(head.as_bytes()).await.unwrap();
        held.push(s);
    }
    // a genuine callback is answered while 200 slow clients are held
    let (q, body) = signed(&app, &APPROVAL.replace("wx5823bf96d3bd56c7", CORP_ID));
    assert_eq!(post(&t.url("/cb/loris"), &q, body).await.0, 200);

    let mut answered_408 = 0;
    for s in &mut held {
        let (text, closed) = read_until_closed(s, Duration::from_secs(5)).await;
        assert!(closed, "a slow connection was still open after 5 s");
        if text.starts_with("HTTP/1.1 408") {
            answered_408 += 1;
        }
    }
    let elapsed = opened.elapsed();
    eprintln!("200 slow connections (timeouts 600 ms) all closed after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "closing took {elapsed:?}");
    // the ones that sent their headers were answered 408 and counted per app
    assert_eq!(answered_408, 100);
    assert_eq!(
        counter(
            names::CALLBACKS_REJECTED,
            &[("app", "loris"), ("reason", "body_timeout")]
        ),
        100
    );
    assert!(
        counter(
            names::CONNECTIONS_CLOSED,
            &[("listener", "public"), ("reason", "header_timeout")]
        ) >= 100
    );
    assert_eq!(t.events("&app=loris").await.len(), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_and_are_counted() {
    let app = TestApp::new("capped");
    let t = start_with_server(
        &[TestApp::new("capped")],
        "header_read_timeout_ms = 5000\nmax_connections = 3",
    )
    .await;
    let before = counter(
        names::CONNECTIONS_REFUSED,
        &[("listener", "public"), ("reason", "max_connections")],
    );
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(t.public).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        idle.push(s);
    }
    let mut extra = TcpStream::connect(t.public).await.unwrap();
    let (text, closed) = read_until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503"), "{text:?}");
    assert_eq!(
        counter(
            names::CONNECTIONS_REFUSED,
            &[("listener", "public"), ("reason", "max_connections")],
        ),
        before + 1
    );
    // once the holders go away, callbacks are served again
    drop(idle);
    let url = t.url("/cb/capped");
    eventually(5, "a callback is answered after the holders left", || {
        let (q, body) = signed(&app, &APPROVAL.replace("wx5823bf96d3bd56c7", CORP_ID));
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}?{q}"))
                .body(body)
                .send()
                .await;
            r.is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_content_length_gets_413_before_any_body_is_sent() {
    let app = TestApp::new("huge");
    // long body timeout: the 413 must not come from the timeout
    let t = start_with_server(&[TestApp::new("huge")], "body_read_timeout_ms = 30000").await;
    let q = signed_query(&app);
    let started = Instant::now();
    let mut s = TcpStream::connect(t.public).await.unwrap();
    s.write_all(
        format!(
            "POST /cb/huge?{q} HTTP/1.1\r\nHost: bridge\r\nContent-Length: 10000000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        counter(
            names::CALLBACKS_REJECTED,
            &[("app", "huge"), ("reason", "too_large")]
        ),
        1
    );
    t.stop().await;
}

#[test]
fn sigterm_returns_within_the_grace_period_while_a_client_holds_a_half_sent_request() {
    let dir = tempfile::tempdir().unwrap();
    // catalog folders exist (empty) so that only the held connection can delay the stop
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    let toml = config_toml(dir.path(), &[TestApp::new("held")]).replace(
        "shutdown_grace_secs = 5",
        "shutdown_grace_secs = 1\nheader_read_timeout_ms = 60000\nbody_read_timeout_ms = 60000",
    );
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(&cfg, toml).unwrap();
    let server = ServeProcess::start(&cfg, dir.path());
    use std::io::Write;
    let mut body_held = std::net::TcpStream::connect(&server.public).unwrap();
    body_held
        .write_all(b"POST /cb/held?msg_signature=a&timestamp=1&nonce=1 HTTP/1.1\r\nHost: b\r\nContent-Length: 500\r\n\r\n<xml>")
        .unwrap();
    let mut head_held = std::net::TcpStream::connect(&server.public).unwrap();
    head_held
        .write_all(b"POST /cb/held HTTP/1.1\r\nHost: b\r\n")
        .unwrap();
    // the requests have reached the server: a plain probe on the same listener is answered
    let (status, _) = blocking_get(&format!("http://{}/healthz", server.public));
    assert_eq!(status, 200);

    let started = Instant::now();
    let status = server.terminate();
    let took = started.elapsed();
    eprintln!("SIGTERM with two held requests and grace 1 s: exited after {took:?}");
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_secs(4),
        "SIGTERM took {took:?} with grace 1 s"
    );
    drop((body_held, head_held));
}

fn blocking_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

/// A request to the admin listener with explicit headers; returns (status, body).
async fn admin(
    t: &TestBridge,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", t.admin));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_refuses_rebinding_hosts_cross_site_posts_and_gets_on_actions() {
    let t = TestBridge::start(&[TestApp::new("guarded")]).await;
    let port = t.admin.port();
    let before = counter(names::ADMIN_REFUSED, &[("reason", "unknown_host")]);

    // DNS rebinding: the page's own name in Host
    let (status, body) = admin(
        &t,
        reqwest::Method::GET,
        "/admin/events",
        &[("host", format!("attacker.example:{port}"))],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("attacker.example"), "{body}");
    assert_eq!(
        counter(names::ADMIN_REFUSED, &[("reason", "unknown_host")]),
        before + 1
    );
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, body) =
            admin(&t, reqwest::Method::GET, "/admin/events", &[("host", host)]).await;
        assert_eq!(status, 200, "{body}");
    }

    // a page in the operator's browser posting a replay
    for headers in [
        vec![("origin", "https://attacker.example".to_string())],
        vec![("sec-fetch-site", "cross-site".to_string())],
        vec![("origin", "null".to_string())],
    ] {
        let (status, body) = admin(
            &t,
            reqwest::Method::POST,
            "/admin/replay?all=true",
            &headers,
        )
        .await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert!(body.contains("cross-site"), "{body}");
    }
    // the operator's own tools (no Origin) pass the guard
    let (status, body) = admin(&t, reqwest::Method::POST, "/admin/replay?all=true", &[]).await;
    assert_ne!(status, 403, "{body}");

    // state-changing endpoints are POST only
    for path in [
        "/admin/replay?all=true",
        "/admin/reconcile?since=2025-01-01T00:00:00Z",
    ] {
        let (status, _) = admin(&t, reqwest::Method::GET, path, &[]).await;
        assert_eq!(status, 405, "{path}");
    }
    // probes and scrapers are not tied to a host name
    let (status, _) = admin(
        &t,
        reqwest::Method::GET,
        "/metrics",
        &[("host", format!("10.1.2.3:{port}"))],
    )
    .await;
    assert_eq!(status, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_readyz_says_only_ready_and_details_stay_on_the_admin_listener() {
    let app = TestApp::new("readyz_pub");
    let t = TestBridge::start(&[TestApp::new("readyz_pub")]).await;
    let (q, body) = signed(&app, &APPROVAL.replace("wx5823bf96d3bd56c7", CORP_ID));
    assert_eq!(post(&t.url("/cb/readyz_pub"), &q, body).await.0, 200);
    let (status, body) = get(&t.url("/readyz")).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, serde_json::json!({"status": "ready"}));
    let (status, body) = get(&format!("http://{}/readyz", t.admin)).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["journal"]["entries"], 1, "{v}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_query_parameter_gets_our_own_400() {
    let app = TestApp::new("dup_param");
    let t = TestBridge::start(&[TestApp::new("dup_param")]).await;
    let (q, body) = signed(&app, &APPROVAL.replace("wx5823bf96d3bd56c7", CORP_ID));
    let doubled = format!("{q}&msg_signature={}", "0".repeat(40));
    let (status, text) = post(&t.url("/cb/dup_param"), &doubled, body.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(
        text,
        "duplicate_param: query parameter `msg_signature` appears more than once\n"
    );
    assert_eq!(
        counter(
            names::CALLBACKS_REJECTED,
            &[("app", "dup_param"), ("reason", "duplicate_param")]
        ),
        1
    );
    assert!(t.events("&app=dup_param").await.is_empty());
    // the same request without the repeat is accepted
    assert_eq!(post(&t.url("/cb/dup_param"), &q, body).await.0, 200);
    t.stop().await;
}
