//! Sign-in with WeCom, end to end over HTTP: the console sends the browser to the WeCom
//! stand-in's login pages (OAuth2 inside the WeCom client, QR code in a browser), the
//! stand-in sends it back with a one-time code, and the bridge asks the stand-in's
//! `auth/getuserinfo` who that is. Roles come from `[[console.wecom_users]]`; every refusal
//! is audited.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use wecom_bridge::standins::wecom::{FakeWeCom, refresh_target};

use crate::support::*;

const APP_SECRET: &str = "login-app-secret";
const VIEWER_TOKEN: &str = "viewer-token-wecom-login-31f0";

/// A bridge whose console signs in WeCom members `zhangsan` (operator) and `wangwu`
/// (viewer) through `wecom`.
async fn bridge_with_wecom_login(wecom: &FakeWeCom) -> TestBridge {
    let extra = format!(
        "[[console.wecom_users]]\nuser_id = \"wangwu\"\nrole = \"viewer\"\n{}",
        admin_users(&[("vera", VIEWER_TOKEN, "viewer")])
    );
    let pages = (wecom.authorize_url(), wecom.sso_login_url());
    start_with_wecom_login(wecom, ("login", APP_SECRET), pages, &extra).await
}

/// A browser: follows nothing by itself, keeps the bridge's cookies (and sends them only to
/// the bridge).
struct Browser {
    c: reqwest::Client,
    base: String,
    user_agent: &'static str,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(t: &TestBridge, user_agent: &'static str) -> Self {
        Browser {
            c: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: format!("http://{}", t.admin),
            user_agent,
            cookies: Vec::new(),
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let url = if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_string()
        };
        let mut rb = self.c.get(&url).header("user-agent", self.user_agent);
        if url.starts_with(&self.base) && !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            rb = rb.header("cookie", jar.join("; "));
        }
        let r = rb.send().await.unwrap();
        if url.starts_with(&self.base) {
            for v in r.headers().get_all("set-cookie") {
                let (pair, _) = v.to_str().unwrap().split_once(';').unwrap();
                let (k, val) = pair.split_once('=').unwrap();
                self.cookies.retain(|(n, _)| n != k);
                if !val.is_empty() {
                    self.cookies.push((k.to_string(), val.to_string()));
                }
            }
        }
        r
    }

    fn has_cookie(&self, name: &str) -> bool {
        self.cookies.iter().any(|(k, _)| k == name)
    }

    /// Starts a sign-in (`start_path`), lets the stand-in's login page answer, and returns
    /// the URL WeCom sends the browser back to.
    async fn via_wecom_and_back(&mut self, start_path: &str, wecom_page: &str) -> String {
        let r = self.get(start_path).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{start_path}");
        let state_cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("wb_wecom_state="))
            .expect("a state cookie");
        assert!(
            state_cookie.contains("HttpOnly")
                && state_cookie.contains("SameSite=Lax")
                && state_cookie.contains("Path=/console/wecom/callback"),
            "{state_cookie}"
        );
        let to_wecom = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to_wecom.starts_with(wecom_page), "{to_wecom}");
        let r = self.get(&to_wecom).await;
        // the authorize page redirects; the QR-code page is a page that navigates back
        let back = match r.status() {
            StatusCode::FOUND => r.headers()["location"].to_str().unwrap().to_string(),
            StatusCode::OK => refresh_target(&r.text().await.unwrap()).expect("a refresh"),
            other => panic!("{to_wecom}: {other}"),
        };
        assert!(
            back.starts_with(&format!("{}/console/wecom/callback?", self.base)),
            "{back}"
        );
        back
    }
}

/// `name=value` of query parameter `name` in `url`.
fn param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

fn audited(rows: &[serde_json::Value], who: &str, result: &str) -> bool {
    rows.iter().any(|r| {
        r["who"] == who
            && r["action"] == "sign_in"
            && r["via"] == "console"
            && r["result"].as_str().unwrap().starts_with(result)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_sign_in_with_wecom_by_qr_code_and_inside_the_wecom_client() {
    let wecom = FakeWeCom::start().await;
    let t = bridge_with_wecom_login(&wecom).await;

    // the sign-in page offers it
    let mut b = Browser::new(&t, "Mozilla/5.0 Chrome/131");
    let html = b.get("/console/sign-in").await.text().await.unwrap();
    assert!(html.contains("Sign in with WeCom"), "{html}");

    // in a browser: the QR-code login page
    wecom.set_login_user("zhangsan");
    let back = b
        .via_wecom_and_back("/console/wecom/start", &wecom.sso_login_url())
        .await;
    let r = b.get(&back).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(b.has_cookie("wb_session") && !b.has_cookie("wb_wecom_state"));
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Signed in as wecom:zhangsan")
            && html.contains(r#"http-equiv="refresh" content="0; url=/console/overview""#),
        "{html}"
    );
    let r = b.get("/console/overview").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("wecom:zhangsan") && html.contains(r#"<span class="role">operator</span>"#),
        "{html}"
    );

    // inside the WeCom client: the OAuth2 authorize page, silently
    wecom.set_login_user("wangwu");
    let mut inside = Browser::new(
        &t,
        "Mozilla/5.0 (iPhone) wxwork/4.1.33 MicroMessenger/7.0.1",
    );
    let start = inside.get("/console/wecom/start").await;
    let to = start.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to.starts_with(&wecom.authorize_url())
            && to.contains("scope=snsapi_base")
            && to.ends_with("#wechat_redirect"),
        "{to}"
    );
    let back = inside
        .via_wecom_and_back("/console/wecom/start?via=oauth2", &wecom.authorize_url())
        .await;
    assert_eq!(inside.get(&back).await.status(), StatusCode::OK);
    let html = inside.get("/console/overview").await.text().await.unwrap();
    assert!(
        html.contains("wecom:wangwu") && html.contains(r#"<span class="role">viewer</span>"#),
        "{html}"
    );

    let rows = audit_rows(t.admin, VIEWER_TOKEN, 1000).await;
    assert!(audited(&rows, "wecom:zhangsan", "ok"), "{rows:#?}");
    assert!(audited(&rows, "wecom:wangwu", "ok"), "{rows:#?}");
    assert_eq!(wecom.calls("auth/getuserinfo"), 2);

    t.stop().await;
    wecom.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_sign_in_refuses_unknown_members_foreign_states_and_reused_codes() {
    let wecom = FakeWeCom::start().await;
    let t = bridge_with_wecom_login(&wecom).await;
    let start = "/console/wecom/start?via=qr";
    let sso = wecom.sso_login_url();

    // a member who is not listed: refused, and audited with their user id
    wecom.set_login_user("lisi");
    let mut b = Browser::new(&t, "test");
    let back = b.via_wecom_and_back(start, &sso).await;
    let r = b.get(&back).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("(lisi) has no access"));
    assert!(!b.has_cookie("wb_session"));

    // the state must be this browser's: a changed one, or none, is refused before WeCom
    // is asked about the code
    wecom.set_login_user("zhangsan");
    let asked = wecom.calls("auth/getuserinfo");
    let back = b.via_wecom_and_back(start, &sso).await;
    let forged = back.replace(&param(&back, "state"), &"0".repeat(64));
    assert_eq!(b.get(&forged).await.status(), StatusCode::FORBIDDEN);
    let back = b.via_wecom_and_back(start, &sso).await;
    let mut other = Browser::new(&t, "test");
    assert_eq!(other.get(&back).await.status(), StatusCode::FORBIDDEN);
    assert!(!other.has_cookie("wb_session"));
    assert_eq!(wecom.calls("auth/getuserinfo"), asked);
    // the browser that started it signs in, once: the state is good for one callback
    assert_eq!(b.get(&back).await.status(), StatusCode::OK);
    assert!(b.has_cookie("wb_session"));
    assert_eq!(b.get(&back).await.status(), StatusCode::FORBIDDEN);

    // a code works once: used again with a fresh state, WeCom refuses it (40029)
    let used = param(&back, "code");
    let mut again = Browser::new(&t, "test");
    let fresh = again.via_wecom_and_back(start, &sso).await;
    let replayed = fresh.replace(&param(&fresh, "code"), &used);
    let r = again.get(&replayed).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("already used or has expired")
    );
    assert!(!again.has_cookie("wb_session"));

    // declined at WeCom (no code), and someone who is not a member of the corp
    wecom.decline_logins();
    let mut d = Browser::new(&t, "test");
    let back = d.via_wecom_and_back(start, &sso).await;
    assert_eq!(d.get(&back).await.status(), StatusCode::UNAUTHORIZED);
    wecom.set_login_non_member("o_outsider_1");
    let back = d.via_wecom_and_back(start, &sso).await;
    assert_eq!(d.get(&back).await.status(), StatusCode::FORBIDDEN);
    assert!(!d.has_cookie("wb_session"));

    let rows = audit_rows(t.admin, VIEWER_TOKEN, 1000).await;
    for (who, result) in [
        ("wecom:lisi", "refused: WeCom user lisi is not allowed"),
        ("unknown", "refused: the sign-in's state does not match"),
        ("unknown", "refused: invalid or used code"),
        ("unknown", "refused: WeCom returned no code"),
        ("wecom-openid:o_outsider_1", "refused: not a member"),
        ("wecom:zhangsan", "ok"),
    ] {
        assert!(audited(&rows, who, result), "no {who} {result}: {rows:#?}");
    }
    t.stop().await;
    wecom.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wecom_login_configured_the_flow_is_not_offered() {
    let t = TestBridge::start(&[TestApp::new("nologin")]).await;
    let mut b = Browser::new(&t, "test");
    let html = b.get("/console/sign-in").await.text().await.unwrap();
    assert!(!html.contains("Sign in with WeCom"), "{html}");
    assert_eq!(
        b.get("/console/wecom/start").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.get("/console/wecom/callback?code=x&state=y")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    t.stop().await;
}
