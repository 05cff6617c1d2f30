//! The operator console and the admin API's roles, over HTTP: sign-in, sessions, CSRF, the
//! role of each token, and the audit trail they leave. (The same flows in a real browser
//! are in `tests/browser`.)

use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode};
use wecom_bridge::broker::rabbitmq::RabbitBroker;

use crate::support::*;

pub const VIEWER_TOKEN: &str = "viewer-token-5b1c0e7f";
pub const OPERATOR_TOKEN: &str = "operator-token-9d24a3c1";

/// `[[admin.users]]` with a viewer `vera` and an operator `otto`, plus a RabbitMQ section.
pub fn users_and_rabbit(prefix: &str) -> String {
    let users = admin_users(&[
        ("vera", VIEWER_TOKEN, "viewer"),
        ("otto", OPERATOR_TOKEN, "operator"),
    ]);
    format!("{users}{}", rabbit_section(prefix))
}

const PARKED_REASON: &str = "erp said: cost center 6602 closed";

/// A bridge with the users of [`users_and_rabbit`] on RabbitMQ (under a fresh prefix), its
/// broker connected, and message `id` parked in `queue`; with the test's own connection.
async fn bridge_with_a_dead_letter(app: &str, queue: &str, id: &str) -> (TestBridge, RabbitBroker) {
    let prefix = unique("wbcons");
    let t = TestBridge::start_with(&[TestApp::new(app)], &users_and_rabbit(&prefix)).await;
    let own = own_rabbit(&prefix).await;
    drop(park(&own, queue, &[id], PARKED_REASON).await);
    t.broker_up().await;
    (t, own)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// `method base+path` with `token` as the bearer.
async fn as_user(token: &str, method: Method, base: &str, path: &str) -> reqwest::Response {
    client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Asserts that `rows` hold, for each `(who, action, result)`, an audit row of `who` doing
/// `action` via `via` whose result starts with `result`.
fn assert_audited(rows: &[serde_json::Value], via: &str, expected: &[(&str, &str, &str)]) {
    for (who, action, result) in expected {
        let found = rows.iter().any(|r| {
            r["who"] == *who
                && r["action"] == *action
                && r["result"].as_str().unwrap().starts_with(result)
                && r["via"] == via
        });
        assert!(found, "no row {who} {action} {result} via {via}: {rows:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_enforces_roles_and_audits_actions_and_refusals() {
    let q = "manual";
    let (t, own) = bridge_with_a_dead_letter("roles", q, "evt_r1").await;
    let base = format!("http://{}", t.admin);

    // no token, a wrong token: 401
    let r = client()
        .get(format!("{base}/admin/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = as_user("guess", Method::GET, &base, "/admin/events").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // a viewer reads metadata but no payloads, and takes no action
    let r = as_user(
        VIEWER_TOKEN,
        Method::GET,
        &base,
        &format!("/admin/dead-letters?queue={q}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("evt_r1")
            && text.contains("\"message\":null")
            && !text.contains("<Id>evt_r1</Id>"),
        "{text}"
    );
    for (method, path) in [
        (
            Method::GET,
            format!("/admin/dead-letters?queue={q}&payload=true"),
        ),
        (Method::GET, "/admin/events?payload=true".to_string()),
        (
            Method::GET,
            "/admin/deliveries/202506050012?payload=true".to_string(),
        ),
        (Method::POST, format!("/admin/replay?queue={q}&ids=evt_r1")),
        (
            Method::POST,
            "/admin/reconcile?since=2025-01-01T00:00:00Z".to_string(),
        ),
        (Method::GET, "/admin/config".to_string()),
    ] {
        let r = as_user(VIEWER_TOKEN, method.clone(), &base, &path).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "viewer {method} {path}");
    }
    // the operator replays and sees payloads, but not the configuration
    let path = format!("/admin/dead-letters?queue={q}&payload=true");
    let r = as_user(OPERATOR_TOKEN, Method::GET, &base, &path).await;
    assert!(r.text().await.unwrap().contains("<Id>evt_r1</Id>"));
    let r = as_user(OPERATOR_TOKEN, Method::GET, &base, "/admin/config").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let path = format!("/admin/replay?queue={q}&ids=evt_r1");
    let r = as_user(OPERATOR_TOKEN, Method::POST, &base, &path).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["redriven"], 1);

    let rows = audit_rows(t.admin, VIEWER_TOKEN, 1000).await;
    assert_audited(
        &rows,
        "api",
        &[
            ("vera", "replay", "refused: role viewer"),
            ("vera", "view_payload", "refused: role viewer"),
            ("otto", "replay", "ok: 1 replayed"),
            ("otto", "view_payload", "ok"),
        ],
    );
    assert!(
        !serde_json::to_string(&rows)
            .unwrap()
            .contains(OPERATOR_TOKEN),
        "no token in the audit log"
    );

    remove_queues(own, q).await;
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
        self.post_from("same-origin", path, form).await
    }

    /// A form post as the browser sends it from a page of `site` (`Sec-Fetch-Site`).
    async fn post_from(
        &mut self,
        site: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let r = self
            .c
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("sec-fetch-site", site)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// Posts the dead-letter replay form.
    async fn replay(&mut self, form: &[(&str, &str)]) -> reqwest::Response {
        self.post("/console/dead-letters/replay", form).await
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
    let q = "manual";
    let (t, own) = bridge_with_a_dead_letter("cons", q, "evt_c1").await;
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

    // the dead-letters page offers a replay; a POST without the CSRF token, or with a wrong
    // one, is refused
    let (_, html) = b.get(&format!("/console/dead-letters?queue={q}")).await;
    assert!(html.contains("evt_c1") && html.contains("Replay"), "{html}");
    let csrf = hidden(&html, "csrf");
    let zeros = "0".repeat(64);
    for wrong in [None, Some(zeros.as_str())] {
        let mut form = vec![("queue", q), ("ids", "evt_c1"), ("confirm", "yes")];
        form.extend(wrong.map(|c| ("csrf", c)));
        let r = b.replay(&form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "CSRF token {wrong:?}");
    }
    let replay = [("csrf", csrf.as_str()), ("queue", q), ("ids", "evt_c1")];
    let confirmed = [&replay[..], &[("confirm", "yes")]].concat();
    // a cross-site post is refused by the listener's guard even with the token
    let r = b
        .post_from("cross-site", "/console/dead-letters/replay", &confirmed)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // with the token: first a confirmation, then the replay and its result
    let r = b.replay(&replay).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("confirm-replay"));
    let r = b.replay(&confirmed).await;
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
    let form = [
        ("csrf", vcsrf.as_str()),
        ("queue", q),
        ("all", "1"),
        ("confirm", "yes"),
    ];
    assert_eq!(v.replay(&form).await.status(), StatusCode::FORBIDDEN);

    // everything is in the audit log, on its page too
    let rows = audit_rows(t.admin, VIEWER_TOKEN, 1000).await;
    assert_audited(
        &rows,
        "console",
        &[
            ("unknown", "sign_in", "refused: unknown token"),
            ("unknown", "sign_in", "refused: sign-in form without"),
            ("otto", "sign_in", "ok"),
            ("otto", "replay", "refused: missing or wrong CSRF token"),
            ("otto", "replay", "ok: 1 replayed"),
            ("otto", "sign_out", "ok"),
            ("vera", "replay", "refused: role viewer"),
        ],
    );
    let (_, html) = v.get("/console/audit").await;
    assert!(
        html.contains("ok: 1 replayed") && html.contains("refused: role viewer"),
        "{html}"
    );
    assert!(!html.contains(OPERATOR_TOKEN) && !html.contains(VIEWER_TOKEN));

    remove_queues(own, q).await;
    t.stop().await;
}
