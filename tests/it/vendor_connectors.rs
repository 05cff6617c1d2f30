//! Vendor connectors (`kind = "kingdee" | "yonbip" | "u8_eai"`) built from connector files and
//! sent through `Connector::send` against the protocol stand-ins: auth (signed headers,
//! session login with re-login, token cache with refresh), the envelope the stand-in
//! accepts, verdicts with captured ids, duplicates in each system's own shape, business
//! failures with the system's message, and no secret in the recorded attempt.

use std::path::Path;

use serde_json::{Value, json};
use wecom_bridge::deliver::vendor::kingdee;
use wecom_bridge::deliver::{Connector, Verdict};
use wecom_bridge::standins;

use crate::support::{connector_with_secrets, header_masked, no_secret_in, send};

pub const KD_APP_ID: &str = "224248_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY";
pub const KD_APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
pub const KD_PASSWORD: &str = "kd-password-51d3";

pub fn kingdee_creds() -> kingdee::Credentials {
    kingdee::Credentials {
        acct_id: "62f1e4b0a1b2c3".into(),
        user: "integration".into(),
        app_id: KD_APP_ID.into(),
        app_secret: KD_APP_SECRET.into(),
        lcid: 2052,
        org_num: "0".into(),
    }
}

/// Builds a connector from `text`, with `{dir}` replaced by a folder holding the secrets
/// `kd_app_secret`, `kd_password`, `yb_app_secret`.
fn connector(dir: &Path, text: &str) -> Connector {
    let secrets = [
        ("kd_app_secret", KD_APP_SECRET),
        ("kd_password", KD_PASSWORD),
        ("yb_app_secret", "yb-secret-8c2e"),
    ];
    connector_with_secrets(dir, text, &secrets)
}

fn kingdee_file(url: &str, auth: &str) -> String {
    format!(
        "kind = \"kingdee\"\nurl = \"{url}/k3cloud\"\n[idempotency]\nfield = \"/FBillNo\"\n[kingdee]\nform_id = \"GL_VOUCHER\"\nauth = \"{auth}\"\nacct_id = \"62f1e4b0a1b2c3\"\nuser = \"integration\"\napp_id = \"{KD_APP_ID}\"\napp_secret = \"file:{{dir}}/kd_app_secret\"\npassword = \"file:{{dir}}/kd_password\"\n"
    )
}

/// The Kingdee stand-in, knowing the account of [`kingdee_creds`] with `KD_PASSWORD`.
async fn kingdee_server() -> standins::kingdee::KingdeeStandIn {
    standins::kingdee::start(standins::kingdee::KingdeeState::new(
        kingdee_creds(),
        KD_PASSWORD,
    ))
    .await
}

fn model(no: &str) -> Value {
    json!({"FBillNo": no, "FAccountBookID": {"FNumber": "101"}, "FDate": "2026-03-31",
        "FEntity": [{"FACCOUNTID": {"FNumber": "6602.03"}, "FDEBIT": "1200.00", "FCREDIT": "0"},
                    {"FACCOUNTID": {"FNumber": "2241.01"}, "FDEBIT": "0", "FCREDIT": "1200.00"}]})
}

#[tokio::test]
async fn kingdee_signed_connector_saves_captures_and_counts_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let server = kingdee_server().await;
    let text = kingdee_file(&server.base_url(), "signed").replace("password = ", "# password = ");
    let c = connector(dir.path(), &text);
    let a = send(&c, &model("EXP-1"), "EXP-1").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    assert_eq!(a.captured["number"], "EXP-1");
    assert_eq!(a.captured["id"], "100029");
    assert!(
        a.request.url.ends_with(
            "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save.common.kdsvc"
        ),
        "{}",
        a.request.url
    );
    header_masked(&a, "X-Api-Signature");
    let (_, saved) = server.with(|s| s.bill("GL_VOUCHER", "EXP-1")).unwrap();
    assert_eq!(saved["FEntity"][1]["FCREDIT"], "1200.00");

    let again = send(&c, &model("EXP-1"), "EXP-1").await;
    assert_eq!(again.verdict, Verdict::Duplicate, "{again:?}");
    assert!(again.response.unwrap().body.contains("违反字段唯一性要求"));

    let mut missing = model("EXP-2");
    missing.as_object_mut().unwrap().remove("FBillNo");
    let refused = send(&c, &missing, "EXP-2").await;
    assert!(
        matches!(&refused.verdict, Verdict::Permanent { reason } if reason.contains("/FBillNo"))
    );
    assert_eq!(c.token_fetches(), 0, "signed headers need no login");
    no_secret_in(&a, &[KD_APP_SECRET, KD_APP_ID]);
    server.stop().await;
}

#[tokio::test]
async fn kingdee_session_is_logged_in_once_and_again_when_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = kingdee_server().await;
    for (auth, legacy) in [("login_by_sign", false), ("validate_user", true)] {
        let mut text = kingdee_file(&server.base_url(), auth);
        if legacy {
            text.push_str("envelope = \"legacy\"\n");
        }
        let c = connector(dir.path(), &text);
        let docs: Vec<Value> = (0..8).map(|i| model(&format!("{auth}-{i}"))).collect();
        let sends = docs.iter().map(|d| send(&c, d, "k"));
        let all = futures_util::future::join_all(sends).await;
        assert!(
            all.iter().all(|a| a.verdict == Verdict::Delivered),
            "{all:?}"
        );
        assert_eq!(c.token_fetches(), 1, "one login for concurrent sends");
        server.with(standins::kingdee::KingdeeState::expire_sessions);
        let after = send(&c, &model(&format!("{auth}-late")), "k").await;
        assert_eq!(after.verdict, Verdict::Delivered, "{after:?}");
        assert_eq!(
            c.token_fetches(),
            2,
            "one re-login after the session was lost"
        );
        header_masked(&after, "Cookie");
        no_secret_in(&after, &[KD_APP_SECRET, KD_PASSWORD, "standin-session-"]);
    }
    server.stop().await;
}

#[tokio::test]
async fn kingdee_wrong_secret_is_refused_as_the_server_does_and_parked() {
    let dir = tempfile::tempdir().unwrap();
    let mut creds = kingdee_creds();
    creds.app_secret = "ffffffffffffffffffffffffffffffff".into();
    let server =
        standins::kingdee::start(standins::kingdee::KingdeeState::new(creds, KD_PASSWORD)).await;
    let c = connector(dir.path(), &kingdee_file(&server.base_url(), "signed"));
    let a = send(&c, &model("EXP-9"), "EXP-9").await;
    assert!(
        matches!(&a.verdict, Verdict::Permanent { reason } if reason.contains(kingdee::SESSION_LOST) && reason.contains("refused again")),
        "{a:?}"
    );
    // re-signed and sent once more, then given up
    assert_eq!(
        server
            .count("/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save.common.kdsvc"),
        2
    );
    assert!(server.with(|s| s.bill("GL_VOUCHER", "EXP-9")).is_none());

    let login = connector(
        dir.path(),
        &kingdee_file(&server.base_url(), "login_by_app_secret"),
    );
    let a = send(&login, &model("EXP-9"), "EXP-9").await;
    assert!(
        matches!(&a.verdict, Verdict::Permanent { reason } if reason.contains("login refused")),
        "{a:?}"
    );
    server.stop().await;
}

fn yonbip_file(url: &str) -> String {
    format!(
        "kind = \"yonbip\"\nurl = \"{url}\"\n[idempotency]\nfield = \"/businessId\"\n[yonbip]\napp_key = \"yb-key-1\"\napp_secret = \"file:{{dir}}/yb_app_secret\"\ntenant_id = \"tenant-1\"\n"
    )
}

fn yonbip_voucher(business_id: &str) -> Value {
    json!({"accbookCode": "BOOK01", "voucherTypeCode": "01", "makerMobile": "13800000000",
        "businessId": business_id, "period": "2026-03",
        "bodies": [{"description": "差旅费", "accsubjectCode": "660201", "debitOriginal": "1200.00", "debitOrg": "1200.00"},
                   {"description": "差旅费", "accsubjectCode": "1002", "creditOriginal": "1200.00", "creditOrg": "1200.00"}]})
}

/// A YonBIP stand-in where app `yb-key-1` has the secret `secret`, and a connector of
/// [`yonbip_file`] to it (its secret files in `dir`).
async fn yonbip_server(dir: &Path, secret: &str) -> (standins::yonbip::YonbipStandIn, Connector) {
    let mut state = standins::yonbip::YonbipState::default();
    state.apps.insert("yb-key-1".into(), secret.into());
    let server = standins::yonbip::start(state).await;
    let c = connector(dir, &yonbip_file(&server.base_url()));
    (server, c)
}

#[tokio::test]
async fn yonbip_token_is_cached_single_flight_and_refreshed_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, c) = yonbip_server(dir.path(), "yb-secret-8c2e").await;
    let docs: Vec<Value> = (0..6).map(|i| yonbip_voucher(&format!("SP{i}"))).collect();
    let all = futures_util::future::join_all(docs.iter().map(|d| send(&c, d, "k"))).await;
    assert!(
        all.iter().all(|a| a.verdict == Verdict::Delivered),
        "{all:?}"
    );
    assert_eq!(
        server.count(wecom_bridge::deliver::vendor::yonbip::TOKEN_PATH),
        1
    );
    assert!(
        all[0].captured["id"]
            .as_str()
            .unwrap()
            .starts_with("2A4556F6-")
    );
    assert!(
        all[0].request.url.contains("access_token=***"),
        "{}",
        all[0].request.url
    );
    no_secret_in(&all[0], &["yb-secret-8c2e", "yonbip-token-"]);

    server.with(standins::yonbip::YonbipState::expire_tokens);
    let a = send(&c, &yonbip_voucher("SP-late"), "k").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    assert_eq!(
        server.count(wecom_bridge::deliver::vendor::yonbip::TOKEN_PATH),
        2
    );

    let dup = send(&c, &yonbip_voucher("SP0"), "k").await;
    assert_eq!(dup.verdict, Verdict::Duplicate, "{dup:?}");
    let mut bad = yonbip_voucher("SP-bad");
    bad["accbookCode"] = json!("");
    let refused = send(&c, &bad, "k").await;
    assert!(
        matches!(&refused.verdict, Verdict::Permanent { reason } if reason.contains("账簿code不能为空")),
        "{refused:?}"
    );
    let long = send(&c, &yonbip_voucher(&"9".repeat(33)), "k").await;
    assert!(
        matches!(&long.verdict, Verdict::Permanent { reason } if reason.contains("longer than 32")),
        "{long:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn yonbip_wrong_secret_is_permanent_with_the_gateway_message() {
    let dir = tempfile::tempdir().unwrap();
    let (server, c) = yonbip_server(dir.path(), "another-secret").await;
    let a = send(&c, &yonbip_voucher("SP1"), "k").await;
    assert!(
        matches!(&a.verdict, Verdict::Permanent { reason } if reason.contains("签名校验失败") && reason.contains("yonbip.app_secret")),
        "{a:?}"
    );
    server.stop().await;
}

/// A U8 EAI connector file for sender `999` at `url/eai`.
fn u8_file(url: &str) -> String {
    format!(
        "kind = \"u8_eai\"\nurl = \"{url}/eai\"\n[u8_eai]\nroottag = \"voucher\"\nbilltype = \"gl\"\nsender = \"999\"\n"
    )
}

#[tokio::test]
async fn u8_eai_connector_wraps_the_document_and_reads_gbk_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = standins::u8::U8State::default();
    state.senders.push("999".into());
    state.answer_gbk = true;
    let server = standins::u8::start(state).await;
    let c = connector(dir.path(), &u8_file(&server.base_url()));
    let doc = json!({"voucher": {"#order": ["voucher_head", "voucher_body"],
        "voucher_head": {"voucher_type": "记", "reserve2": "SP1", "accounting_period": 3},
        "voucher_body": {"entry": [{"entry_id": 1, "account_code": "660203", "natural_debit_currency": "1200.00"}]}}});
    let a = send(&c, &doc, "SP1").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    assert_eq!(a.captured["id"], "1");
    assert!(
        a.response.as_ref().unwrap().body.contains("凭证已成功保存"),
        "{a:?}"
    );
    let dup = send(&c, &doc, "SP1").await;
    assert_eq!(dup.verdict, Verdict::Duplicate, "{dup:?}");
    let received = server.recorded();
    assert!(
        String::from_utf8_lossy(&received[0].body)
            .contains(r#"<ufinterface roottag="voucher" billtype="gl" sender="999""#)
    );
    assert_eq!(server.count("/eai"), 2);
    server.stop().await;
}

/// A target that answers every document with `status`, `content_type` and `body` (and a
/// YonBIP token to whoever asks for one).
async fn canned(
    status: u16,
    content_type: &'static str,
    body: &'static str,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    use axum::http::{StatusCode, header};
    let token = axum::routing::get(|| async {
        axum::Json(
            json!({"code": "00000", "message": "成功！", "data": {"access_token": "tok-canned-1", "expire": 7200}}),
        )
    });
    let router = axum::Router::new()
        .route(wecom_bridge::deliver::vendor::yonbip::TOKEN_PATH, token)
        .fallback(move || async move {
            (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (format!("http://{addr}"), tx)
}

#[tokio::test]
async fn answers_nobody_understands_are_never_success() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(u16, &str, &str, bool)] = &[
        (
            502,
            "text/html",
            "<html><body>502 Bad Gateway</body></html>",
            true,
        ),
        (503, "application/json", "{\"Result\":", true),
        (200, "text/html", "<html><body>请登录</body></html>", false),
        (
            200,
            "application/json",
            "{\"Result\":{\"ResponseStatus\":{\"IsSucc",
            false,
        ),
        (
            200,
            "application/json",
            "{\"code\":\"77777\",\"message\":\"未知\"}",
            false,
        ),
        (404, "text/plain", "not found", false),
    ];
    for &(status, ct, body, retryable) in cases {
        let (url, stop) = canned(status, ct, body).await;
        let connectors = [
            (
                "kingdee",
                connector(dir.path(), &kingdee_file(&url, "signed")),
                model("X-1"),
            ),
            (
                "yonbip",
                connector(
                    dir.path(),
                    &yonbip_file(&url).replace("tenant_id = \"tenant-1\"\n", ""),
                ),
                yonbip_voucher("X-1"),
            ),
            (
                "u8_eai",
                connector(dir.path(), &u8_file(&url)),
                json!({"voucher": {"voucher_head": {"reserve2": "X-1"}}}),
            ),
        ];
        for (kind, c, doc) in connectors {
            let a = send(&c, &doc, "X-1").await;
            let excerpt: String = body.chars().take(12).collect();
            match (&a.verdict, retryable) {
                (Verdict::Retryable { .. }, true) => {}
                (Verdict::Permanent { reason }, false) => {
                    assert!(
                        reason.contains(&excerpt) || reason.contains("77777"),
                        "{kind} {status} {body}: {reason}"
                    );
                }
                (other, _) => panic!("{kind}: HTTP {status} {body} gave {other:?}"),
            }
        }
        let _ = stop.send(());
    }
}
