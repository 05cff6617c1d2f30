//! Every `/admin/*` route at every role boundary: the role just below the one a route needs
//! gets 403 (and an audit row), the role it needs gets through. And the audit log has no
//! surface that edits it.

use reqwest::{Method, StatusCode};

use crate::support::*;

const VIEWER: &str = "roles-viewer-token-6c2d";
const OPERATOR: &str = "roles-operator-token-0f8e";
const ADMIN: &str = "roles-admin-token-a71b";

async fn bridge_with_three_roles() -> TestBridge {
    let users = admin_users(&[
        ("vera", VIEWER, "viewer"),
        ("otto", OPERATOR, "operator"),
        ("ada", ADMIN, "admin"),
    ]);
    let users = format!("[reconcile]\nenabled = false\n{users}");
    TestBridge::start_with(&[TestApp::new("roles")], &users).await
}

async fn call(t: &TestBridge, token: Option<&str>, method: Method, path: &str) -> StatusCode {
    let mut rb = reqwest::Client::new().request(method, format!("http://{}{path}", t.admin));
    if let Some(token) = token {
        rb = rb.bearer_auth(token);
    }
    rb.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_enforces_its_role() {
    let t = bridge_with_three_roles().await;
    // (method, path, the least role, the action a refusal is audited as)
    let routes: &[(Method, &str, Option<&str>, &str)] = &[
        (Method::GET, "/admin/events", Some(VIEWER), "list_events"),
        (
            Method::GET,
            "/admin/events?payload=true",
            Some(OPERATOR),
            "view_payload",
        ),
        (Method::GET, "/admin/queues", Some(VIEWER), "queues"),
        (
            Method::GET,
            "/admin/dead-letters?queue=route",
            Some(VIEWER),
            "list_dead_letters",
        ),
        (
            Method::GET,
            "/admin/dead-letters?queue=route&payload=true",
            Some(OPERATOR),
            "view_payload",
        ),
        (
            Method::POST,
            "/admin/replay?queue=route&ids=none",
            Some(OPERATOR),
            "replay",
        ),
        (
            Method::POST,
            "/admin/reconcile?since=2025-01-01T00:00:00Z&until=2025-01-02T00:00:00Z",
            Some(OPERATOR),
            "reconcile",
        ),
        (
            Method::POST,
            "/admin/reroute?since=2025-01-01T00:00:00Z",
            Some(OPERATOR),
            "reroute",
        ),
        (Method::GET, "/admin/config", Some(ADMIN), "view_config"),
        (Method::GET, "/admin/audit", Some(VIEWER), "list_audit"),
        (Method::GET, "/admin/deliveries", Some(VIEWER), ""),
        (
            Method::GET,
            "/admin/deliveries/202501010001",
            Some(VIEWER),
            "show_delivery",
        ),
        (
            Method::GET,
            "/admin/deliveries/202501010001?payload=true",
            Some(OPERATOR),
            "view_payload",
        ),
    ];
    let below = |least: &str| match least {
        OPERATOR => Some(("vera", VIEWER)),
        ADMIN => Some(("otto", OPERATOR)),
        _ => None,
    };
    for (method, path, least, action) in routes {
        let least = least.unwrap();
        // no token, or an unknown one: 401
        assert_eq!(
            call(&t, None, method.clone(), path).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            call(&t, Some("guess"), method.clone(), path).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        // the least role and every role above it get through
        for token in [VIEWER, OPERATOR, ADMIN]
            .into_iter()
            .skip_while(|t| *t != least)
        {
            let s = call(&t, Some(token), method.clone(), path).await;
            assert!(
                s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                "{token} {method} {path}: {s}"
            );
        }
        // the role just below is refused, and the refusal audited
        if let Some((name, token)) = below(least) {
            let s = call(&t, Some(token), method.clone(), path).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{name} {method} {path}");
            let rows = audit_rows(t.admin, ADMIN, 10_000).await;
            assert!(
                rows.iter().any(|r| r["who"] == name
                    && r["action"] == *action
                    && r["via"] == "api"
                    && r["result"].as_str().unwrap().starts_with("refused: role")),
                "no refusal of {name} {action}: {rows:#?}"
            );
        }
    }
    // the admin reads the configuration, secrets hidden
    let (_, text) = get_as(&format!("http://{}/admin/config", t.admin), ADMIN).await;
    assert!(
        text.contains("admin") && !text.contains(OPERATOR) && !text.contains(VIEWER),
        "{text}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_surface_edits_the_audit_log() {
    let t = bridge_with_three_roles().await;
    // leave a few rows: a refusal and a configuration view
    call(&t, Some(VIEWER), Method::GET, "/admin/config").await;
    call(&t, Some(ADMIN), Method::GET, "/admin/config").await;
    let before = audit_rows(t.admin, ADMIN, 10_000).await;
    assert!(before.len() >= 2, "{before:#?}");
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for path in ["/admin/audit", "/admin/audit?before=1", "/console/audit"] {
            let s = call(&t, Some(ADMIN), method.clone(), path).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    let after = audit_rows(t.admin, ADMIN, 10_000).await;
    assert_eq!(before, after, "the audit rows are unchanged");
    t.stop().await;
}
