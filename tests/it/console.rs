//! The operator console and the admin API's roles, over HTTP: sign-in, sessions, CSRF, the
//! role of each token, and the audit trail they leave. (The same flows in a real browser
//! are in `tests/browser`.)

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitOptions};
use wecom_bridge::broker::{Broker, Delivery};

use crate::broker::envelope;
use crate::support::*;

pub const VIEWER_TOKEN: &str = "viewer-token-5b1c0e7f";
pub const OPERATOR_TOKEN: &str = "operator-token-9d24a3c1";

/// `[[admin.users]]` with a viewer `vera` and an operator `otto`, plus a RabbitMQ section.
pub fn users_and_rabbit(prefix: &str) -> String {
    format!(
        r#"
[[admin.users]]
name = "vera"
token = "{VIEWER_TOKEN}"
role = "viewer"
[[admin.users]]
name = "otto"
token = "{OPERATOR_TOKEN}"
role = "operator"
{}"#,
        rabbit_section(prefix)
    )
}

fn opts(prefix: &str) -> RabbitOptions {
    RabbitOptions {
        prefix: prefix.into(),
        prefetch: 8,
        retry_tiers: vec![Duration::from_secs(1)],
        delivery_limit: 20,
        queues: vec![],
    }
}

/// Parks messages with these ids in `queue` of the bridge using `prefix`.
async fn park(prefix: &str, queue: &str, ids: &[&str]) -> RabbitBroker {
    let own = RabbitBroker::connect(&amqp_url(), opts(prefix))
        .await
        .unwrap();
    for id in ids {
        own.publish(queue, &envelope(id)).await.unwrap();
    }
    let mut c = own.consume(queue).await.unwrap();
    for _ in ids {
        let d = c.next().await.unwrap().unwrap();
        d.dead_letter("erp said: cost center 6602 closed")
            .await
            .unwrap();
    }
    drop(c);
    own
}

/// Waits until the bridge's broker connection is up (`/readyz` says so).
async fn broker_up(admin: std::net::SocketAddr) {
    eventually(20, "the bridge's broker connection", || async move {
        let (_, body) = get(&format!("http://{admin}/readyz")).await;
        body.contains("\"state\":\"ok\"")
    })
    .await;
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn audit_rows(admin: std::net::SocketAddr) -> Vec<serde_json::Value> {
    let text = client()
        .get(format!("http://{admin}/admin/audit?limit=1000"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_enforces_roles_and_audits_actions_and_refusals() {
    let prefix = format!("wbrole-{:08x}", rand::random::<u32>());
    let t = TestBridge::start_with(&[TestApp::new("roles")], &users_and_rabbit(&prefix)).await;
    let q = "manual";
    let own = park(&prefix, q, &["evt_r1"]).await;
    broker_up(t.admin).await;
    let base = format!("http://{}", t.admin);
    let c = client();
    let status = |r: reqwest::Response| r.status();

    // no token, a wrong token: 401
    let r = c.get(format!("{base}/admin/events")).send().await.unwrap();
    assert_eq!(status(r), StatusCode::UNAUTHORIZED);
    let r = c
        .get(format!("{base}/admin/events"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), StatusCode::UNAUTHORIZED);

    // a viewer reads metadata but no payloads, and takes no action
    let r = c
        .get(format!("{base}/admin/dead-letters?queue={q}"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("evt_r1")
            && text.contains("\"message\":null")
            && !text.contains("<Id>evt_r1</Id>"),
        "{text}"
    );
    for (method, path) in [
        ("GET", format!("/admin/dead-letters?queue={q}&payload=true")),
        ("GET", "/admin/events?payload=true".to_string()),
        (
            "GET",
            "/admin/deliveries/202506050012?payload=true".to_string(),
        ),
        ("POST", format!("/admin/replay?queue={q}&ids=evt_r1")),
        (
            "POST",
            "/admin/reconcile?since=2025-01-01T00:00:00Z".to_string(),
        ),
        ("GET", "/admin/config".to_string()),
    ] {
        let req = if method == "GET" {
            c.get(format!("{base}{path}"))
        } else {
            c.post(format!("{base}{path}"))
        };
        let r = req.bearer_auth(VIEWER_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "viewer {method} {path}");
    }
    // the operator replays and sees payloads, but not the configuration
    let r = c
        .get(format!("{base}/admin/dead-letters?queue={q}&payload=true"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("<Id>evt_r1</Id>"));
    let r = c
        .get(format!("{base}/admin/config"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(format!("{base}/admin/replay?queue={q}&ids=evt_r1"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["redriven"], 1);

    let rows = audit_rows(t.admin).await;
    let has = |who: &str, action: &str, result: &str| {
        rows.iter().any(|r| {
            r["who"] == who
                && r["action"] == action
                && r["result"].as_str().unwrap().starts_with(result)
                && r["via"] == "api"
        })
    };
    assert!(has("vera", "replay", "refused: role viewer"), "{rows:#?}");
    assert!(
        has("vera", "view_payload", "refused: role viewer"),
        "{rows:#?}"
    );
    assert!(has("otto", "replay", "ok: 1 replayed"), "{rows:#?}");
    assert!(has("otto", "view_payload", "ok"), "{rows:#?}");
    assert!(
        !serde_json::to_string(&rows)
            .unwrap()
            .contains(OPERATOR_TOKEN),
        "no token in the audit log"
    );

    own.delete_queues(&["route".to_string(), q.to_string()])
        .await
        .unwrap();
    own.close().await;
    t.stop().await;
}

/// A console session driven over plain HTTP.
struct Browser {
    c: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(admin: std::net::SocketAddr) -> Self {
        Browser {
            c: client(),
            base: format!("http://{admin}"),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !val.is_empty() {
                self.cookies.push((k.to_string(), val.to_string()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let r = self
            .c
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    async fn sign_in(&mut self, token: &str) -> reqwest::Response {
        let (_, html) = self.get("/console/sign-in").await;
        let nonce = hidden(&html, "nonce");
        self.post("/console/sign-in", &[("token", token), ("nonce", &nonce)])
            .await
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The value of the first hidden input named `name`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_signs_in_checks_csrf_and_roles_and_audits_everything() {
    let prefix = format!("wbcons-{:08x}", rand::random::<u32>());
    let t = TestBridge::start_with(&[TestApp::new("cons")], &users_and_rabbit(&prefix)).await;
    let q = "manual";
    let own = park(&prefix, q, &["evt_c1"]).await;
    broker_up(t.admin).await;
    let mut b = Browser::new(t.admin);

    // not signed in: sent to the sign-in page, which carries the security headers
    let r =
        b.c.get(format!("{}/console/overview", b.base))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/console/sign-in");
    let r =
        b.c.get(format!("{}/console/sign-in", b.base))
            .send()
            .await
            .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // a wrong token, and a sign-in form without its CSRF value, are refused
    let r = b.sign_in("not-a-token").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = b
        .post("/console/sign-in", &[("token", OPERATOR_TOKEN)])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // the operator signs in: a strict session cookie
    let r = b.sign_in(OPERATOR_TOKEN).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("wb_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let (s, html) = b.get("/console/overview").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("otto") && html.contains("outbox backlog"),
        "{html}"
    );

    // the dead-letters page offers a replay; a POST without the CSRF token is refused
    let (_, html) = b.get(&format!("/console/dead-letters?queue={q}")).await;
    assert!(html.contains("evt_c1") && html.contains("Replay"), "{html}");
    let csrf = hidden(&html, "csrf");
    let r = b
        .post(
            "/console/dead-letters/replay",
            &[("queue", q), ("ids", "evt_c1"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b
        .post(
            "/console/dead-letters/replay",
            &[
                ("csrf", "0".repeat(64).as_str()),
                ("queue", q),
                ("ids", "evt_c1"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // a cross-site post is refused by the listener's guard even with the token
    let r =
        b.c.post(format!("{}/console/dead-letters/replay", b.base))
            .header("cookie", b.cookie_header())
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("csrf", csrf.as_str()),
                ("queue", q),
                ("ids", "evt_c1"),
                ("confirm", "yes"),
            ]))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // with the token: first a confirmation, then the replay and its result
    let r = b
        .post(
            "/console/dead-letters/replay",
            &[("csrf", &csrf), ("queue", q), ("ids", "evt_c1")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("confirm-replay"));
    let r = b
        .post(
            "/console/dead-letters/replay",
            &[
                ("csrf", &csrf),
                ("queue", q),
                ("ids", "evt_c1"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let (_, html) = b.get(&to).await;
    assert!(html.contains("Replayed 1 message(s)"), "{html}");

    // sign out: the session is gone
    let r = b.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (s, _) = b.get("/console/overview").await;
    assert_eq!(s, StatusCode::SEE_OTHER);

    // a viewer sees no replay button, and a forged replay form is refused
    let mut v = Browser::new(t.admin);
    assert_eq!(
        v.sign_in(VIEWER_TOKEN).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, html) = v.get(&format!("/console/dead-letters?queue={q}")).await;
    assert!(!html.contains("dead-letters/replay"), "{html}");
    let (_, html) = v.get("/console/overview").await;
    let vcsrf = hidden(&html, "csrf");
    let r = v
        .post(
            "/console/dead-letters/replay",
            &[
                ("csrf", &vcsrf),
                ("queue", q),
                ("all", "1"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // everything is in the audit log, on its page too
    let rows = audit_rows(t.admin).await;
    let has = |who: &str, action: &str, result: &str| {
        rows.iter().any(|r| {
            r["who"] == who
                && r["action"] == action
                && r["result"].as_str().unwrap().starts_with(result)
                && r["via"] == "console"
        })
    };
    assert!(
        has("unknown", "sign_in", "refused: unknown token"),
        "{rows:#?}"
    );
    assert!(
        has("unknown", "sign_in", "refused: sign-in form without"),
        "{rows:#?}"
    );
    assert!(has("otto", "sign_in", "ok"), "{rows:#?}");
    assert!(
        has("otto", "replay", "refused: missing or wrong CSRF token"),
        "{rows:#?}"
    );
    assert!(has("otto", "replay", "ok: 1 replayed"), "{rows:#?}");
    assert!(has("otto", "sign_out", "ok"), "{rows:#?}");
    assert!(has("vera", "replay", "refused: role viewer"), "{rows:#?}");
    let (_, html) = v.get("/console/audit").await;
    assert!(
        html.contains("ok: 1 replayed") && html.contains("refused: role viewer"),
        "{html}"
    );
    assert!(!html.contains(OPERATOR_TOKEN) && !html.contains(VIEWER_TOKEN));

    own.delete_queues(&["route".to_string(), q.to_string()])
        .await
        .unwrap();
    own.close().await;
    t.stop().await;
}
