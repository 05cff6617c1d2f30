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
    let elsewhere = |url: String| url.replace("127.0.0.1", "localhost");
    let pages = (
        elsewhere(wecom.authorize_url()),
        elsewhere(wecom.sso_login_url()),
    );
    let t = start_with_wecom_login(&wecom, ("wbrowser", APP_SECRET), pages, "").await;
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
