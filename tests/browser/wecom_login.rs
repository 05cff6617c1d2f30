//! Sign-in with WeCom in a real Chromium. The WeCom stand-in's login pages are addressed as
//! `localhost` while the console is `127.0.0.1`: another site, as WeCom's pages are, so the
//! browser's cookie rules apply as in production (the `SameSite=Lax` state cookie must come
//! back from the other site; the `Strict` session cookie must be sent after the callback).

use fantoccini::Locator;
use wecom_bridge::standins::wecom::FakeWeCom;

use crate::harness::*;
use crate::support::*;

const APP_SECRET: &str = "browser-login-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_signs_in_with_wecom_and_an_unlisted_one_is_refused() {
    let wecom = FakeWeCom::start().await;
    wecom.add_credentials(CORP_ID, APP_SECRET);
    let elsewhere = |url: String| url.replace("127.0.0.1", "localhost");
    let extra = format!(
        r#"
[reconcile]
enabled = false
[wecom]
api_base_url = "{api}"
[console.wecom_login]
app = "wbrowser"
authorize_url = "{authorize}"
sso_url = "{sso}"
[[console.wecom_users]]
user_id = "zhangsan"
role = "operator"
"#,
        api = wecom.base_url(),
        authorize = elsewhere(wecom.authorize_url()),
        sso = elsewhere(wecom.sso_login_url()),
    );
    let t = TestBridge::start_edited(&[TestApp::new("wbrowser")], |_, toml| {
        let toml = toml.replace(
            "[apps.wbrowser]\n",
            &format!("[apps.wbrowser]\nsecret = \"{APP_SECRET}\"\nagent_id = 1000002\n"),
        );
        format!("{toml}\n{extra}")
    })
    .await;
    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;

    // a listed member: WeCom's page and back, then the console with the operator's role
    wecom.set_login_user("zhangsan");
    goto(&c, t.admin, "/console/sign-in").await;
    shot(&c, "sign-in-with-wecom").await;
    click(&c, "#wecom-sign-in").await;
    wait_for(&c, "header .who").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/console/overview");
    let who = text_of(&c, "header .who").await;
    assert!(
        who.contains("wecom:zhangsan") && who.contains("operator"),
        "{who}"
    );
    assert_eq!(wecom.login_codes_issued(), 1);

    // signed out, an unlisted member is refused with the reason
    click(&c, "#sign-out").await;
    wait_for(&c, "#wecom-sign-in").await;
    wecom.set_login_user("lisi");
    click(&c, "#wecom-sign-in").await;
    wait_for(&c, "#sign-in-error").await;
    let error = text_of(&c, "#sign-in-error").await;
    assert!(error.contains("(lisi) has no access"), "{error}");
    assert!(c.find(Locator::Css("header .who")).await.is_err());

    c.close().await.unwrap();
    t.stop().await;
    wecom.stop().await;
}
