//! Kingdee K/3 Cloud: signed headers, session login, the save/submit/audit chain.

use serde_json::{Value, json};
use wecom_bridge::deliver::vendor::{Captured, Outcome, kingdee};
use wecom_bridge::standins;

use super::post_json;
use crate::vendor_connectors::kingdee_creds;

fn voucher(bill_no: &str) -> Value {
    json!({"FBillNo": bill_no, "FAccountBookID": {"FNumber": "101"}, "FDate": "2026-03-31",
        "FEntity": [{"FEXPLANATION": "报销差旅费", "FACCOUNTID": {"FNumber": "6602.03"}, "FDEBIT": "1200.00"},
                    {"FEXPLANATION": "报销差旅费", "FACCOUNTID": {"FNumber": "1002"}, "FCREDIT": "1200.00"}]})
}

/// The Save request of `model` as form `form_id`, in envelope `style`.
fn save_request(form_id: &str, model: Value, style: kingdee::Envelope) -> Value {
    kingdee::envelope(form_id, &kingdee::save_data(model, &[]), style)
}

/// Sends `body` to operation `op` of `server` with headers signed by `creds` now.
async fn kingdee_signed(
    server: &standins::kingdee::KingdeeStandIn,
    creds: &kingdee::Credentials,
    op: kingdee::Op,
    body: &Value,
) -> Outcome {
    let path = op.path("/k3cloud");
    let ts = jiff::Timestamp::now().as_second();
    let headers = kingdee::signed_headers(creds, &path, ts, kingdee::DEFAULT_SECRET_SEED)
        .expect("valid AppID");
    let (status, _, body) =
        post_json(&format!("{}{path}", server.base_url()), &headers, body).await;
    kingdee::classify(status, &body)
}

/// Saves the GL voucher [`voucher`]`(bill_no)` in envelope `style`, signed by `creds`.
async fn save_voucher(
    server: &standins::kingdee::KingdeeStandIn,
    creds: &kingdee::Credentials,
    bill_no: &str,
    style: kingdee::Envelope,
) -> Outcome {
    let body = save_request("GL_VOUCHER", voucher(bill_no), style);
    kingdee_signed(server, creds, kingdee::Op::Save, &body).await
}

#[tokio::test]
async fn kingdee_signed_headers_save_duplicate_failure_and_audit_chain() {
    let mut state = standins::kingdee::KingdeeState::new(kingdee_creds(), "pw");
    state.required.push((
        "GL_VOUCHER".into(),
        "FAccountBookID".into(),
        "字段“账簿”是必填项".into(),
    ));
    let server = standins::kingdee::start(state).await;
    let creds = kingdee_creds();

    let first = save_voucher(&server, &creds, "SP202603310001", kingdee::Envelope::New).await;
    assert_eq!(
        first,
        Outcome::Success {
            captured: Captured {
                id: Some("100029".into()),
                number: Some("SP202603310001".into())
            }
        }
    );
    let (_, model) = server
        .with(|s| s.bill("GL_VOUCHER", "SP202603310001"))
        .expect("saved at the stand-in");
    assert_eq!(model["FEntity"][0]["FDEBIT"], "1200.00");

    let again = save_voucher(&server, &creds, "SP202603310001", kingdee::Envelope::Legacy).await;
    assert!(
        matches!(&again, Outcome::Duplicate { reason } if reason.contains("[SP202603310001]在当前系统中已经被使用")),
        "{again:?}"
    );

    let mut missing = voucher("SP2");
    missing.as_object_mut().unwrap().remove("FAccountBookID");
    let refused = kingdee_signed(
        &server,
        &creds,
        kingdee::Op::Save,
        &save_request("GL_VOUCHER", missing, kingdee::Envelope::New),
    )
    .await;
    assert_eq!(
        refused,
        Outcome::Permanent {
            reason: "FAccountBookID: 字段“账簿”是必填项".into()
        }
    );

    let numbers = kingdee::envelope(
        "GL_VOUCHER",
        &kingdee::numbers_data(&["SP202603310001"]),
        kingdee::Envelope::New,
    );
    let early_audit = kingdee_signed(&server, &creds, kingdee::Op::Audit, &numbers).await;
    assert!(
        matches!(early_audit, Outcome::Permanent { .. }),
        "{early_audit:?}"
    );
    assert!(matches!(
        kingdee_signed(&server, &creds, kingdee::Op::Submit, &numbers).await,
        Outcome::Success { .. }
    ));
    assert!(matches!(
        kingdee_signed(&server, &creds, kingdee::Op::Audit, &numbers).await,
        Outcome::Success { .. }
    ));
    assert!(matches!(
        kingdee_signed(&server, &creds, kingdee::Op::Audit, &numbers).await,
        Outcome::Duplicate { .. }
    ));
    assert_eq!(
        server
            .with(|s| s.bill("GL_VOUCHER", "SP202603310001"))
            .map(|b| b.0),
        Some('C')
    );

    // Wrong secret: refused as the server does for bad credentials (re-auth), nothing saved.
    let mut wrong = creds.clone();
    wrong.app_secret = "ffffffffffffffffffffffffffffffff".into();
    let bad = save_voucher(&server, &wrong, "SP9", kingdee::Envelope::New).await;
    assert!(
        matches!(&bad, Outcome::Reauth { reason } if reason.contains(kingdee::SESSION_LOST)),
        "{bad:?}"
    );
    assert!(server.with(|s| s.bill("GL_VOUCHER", "SP9")).is_none());

    // A stale timestamp is refused by the gateway with HTTP 519 4006.
    let path = kingdee::Op::Save.path("/k3cloud");
    let stale = kingdee::signed_headers(
        &creds,
        &path,
        jiff::Timestamp::now().as_second() - 13 * 60,
        kingdee::DEFAULT_SECRET_SEED,
    )
    .unwrap();
    let (status, _, body) = post_json(
        &format!("{}{path}", server.base_url()),
        &stale,
        &save_request("GL_VOUCHER", voucher("SP10"), kingdee::Envelope::New),
    )
    .await;
    assert_eq!(status, 519);
    assert!(
        matches!(kingdee::classify(status, &body), Outcome::Permanent { reason } if reason.contains("4006"))
    );
    assert_eq!(server.count(&path), 5, "every Save reached the stand-in");
    assert_eq!(server.recorded().len(), 9, "5 Save + 1 Submit + 3 Audit");
    server.stop().await;
}

#[tokio::test]
async fn kingdee_session_login_expiry_and_relogin() {
    let server =
        standins::kingdee::start(standins::kingdee::KingdeeState::new(kingdee_creds(), "pw")).await;
    let creds = kingdee_creds();
    let base = server.base_url();
    let login = |op: kingdee::Op, password: &'static str| {
        let creds = creds.clone();
        let base = base.clone();
        async move {
            let body =
                kingdee::login_body(op, &creds, password, jiff::Timestamp::now().as_second());
            let (status, cookies, body) =
                post_json(&format!("{base}{}", op.path("/k3cloud")), &[], &body).await;
            kingdee::parse_login(status, &body, cookies.iter().map(String::as_str))
        }
    };
    assert!(matches!(
        login(kingdee::Op::ValidateUser, "wrong").await,
        Err(kingdee::KingdeeError::LoginRefused { result_type: 0, .. })
    ));
    let session = login(kingdee::Op::ValidateUser, "pw")
        .await
        .expect("ValidateUser accepted");
    assert!(session.aspnet.is_some());
    // Saves an expense claim with the session cookie `cookie`.
    let save = |cookie: (&'static str, String), doc: Value| {
        let url = format!("{base}{}", kingdee::Op::Save.path("/k3cloud"));
        async move {
            let (status, _, body) = post_json(&url, &[cookie], &doc).await;
            kingdee::classify(status, &body)
        }
    };
    let claim =
        |no: &str, style| save_request("ER_ExpReimbursement", json!({"FBillNo": no}), style);
    let doc = claim("SP1", kingdee::Envelope::Legacy);
    assert!(
        matches!(save(("Cookie", session.cookie_header()), doc).await, Outcome::Success { captured } if captured.number.as_deref() == Some("SP1"))
    );

    server.with(standins::kingdee::KingdeeState::expire_sessions);
    let doc2 = claim("SP2", kingdee::Envelope::New);
    assert!(matches!(
        save(("Cookie", session.cookie_header()), doc2.clone()).await,
        Outcome::Reauth { .. }
    ));
    for op in [kingdee::Op::LoginByAppSecret, kingdee::Op::LoginBySign] {
        let fresh = login(op, "").await.expect("re-login accepted");
        assert_ne!(fresh.id, session.id);
        let outcome = save((kingdee::SESSION_COOKIE, fresh.id.clone()), doc2.clone()).await;
        if op == kingdee::Op::LoginByAppSecret {
            assert!(matches!(outcome, Outcome::Success { .. }), "{outcome:?}");
        } else {
            assert!(matches!(outcome, Outcome::Duplicate { .. }), "{outcome:?}");
        }
    }
    server.stop().await;
}
