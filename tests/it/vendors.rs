//! Vendor client primitives (`deliver::vendor`) against their protocol stand-ins
//! (`standins`) over real HTTP: auth accepted, wrong secret refused in the real shape, a
//! document saved with its id captured, the same business key refused as a duplicate, a
//! business failure permanent with the system's message, and expiry → re-login/refresh.

use std::time::Duration;

use serde_json::{Value, json};
use wecom_bridge::deliver::vendor::{
    Captured, Outcome, beisen, fxiaoke, kingdee, salesforce, u8eai, yonbip,
};
use wecom_bridge::standins;

async fn post_json(
    url: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> (u16, Vec<String>, Vec<u8>) {
    let mut req = reqwest::Client::new().post(url).json(body);
    for (n, v) in headers {
        req = req.header(*n, v);
    }
    let resp = req.send().await.expect("stand-in reachable");
    let status = resp.status().as_u16();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    (status, cookies, resp.bytes().await.expect("body").to_vec())
}

/// POSTs `pairs` as an `application/x-www-form-urlencoded` body; answers status and body.
async fn post_form(url: &str, pairs: &[(&'static str, String)]) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .expect("reachable");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

fn form(pairs: &[(&'static str, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn kingdee_creds() -> kingdee::Credentials {
    kingdee::Credentials {
        acct_id: "62f1e4b0a1b2c3".into(),
        user: "integration".into(),
        app_id: "224248_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY".into(),
        app_secret: "0123456789abcdef0123456789abcdef".into(),
        lcid: 2052,
        org_num: "0".into(),
    }
}

fn voucher(bill_no: &str) -> Value {
    json!({"FBillNo": bill_no, "FAccountBookID": {"FNumber": "101"}, "FDate": "2026-03-31",
        "FEntity": [{"FEXPLANATION": "报销差旅费", "FACCOUNTID": {"FNumber": "6602.03"}, "FDEBIT": "1200.00"},
                    {"FEXPLANATION": "报销差旅费", "FACCOUNTID": {"FNumber": "1002"}, "FCREDIT": "1200.00"}]})
}

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
    let save = |no: &str, style| {
        kingdee::envelope("GL_VOUCHER", &kingdee::save_data(voucher(no), &[]), style)
    };

    let first = kingdee_signed(
        &server,
        &creds,
        kingdee::Op::Save,
        &save("SP202603310001", kingdee::Envelope::New),
    )
    .await;
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

    let again = kingdee_signed(
        &server,
        &creds,
        kingdee::Op::Save,
        &save("SP202603310001", kingdee::Envelope::Legacy),
    )
    .await;
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
        &kingdee::envelope(
            "GL_VOUCHER",
            &kingdee::save_data(missing, &[]),
            kingdee::Envelope::New,
        ),
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
    let bad = kingdee_signed(
        &server,
        &wrong,
        kingdee::Op::Save,
        &save("SP9", kingdee::Envelope::New),
    )
    .await;
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
        &save("SP10", kingdee::Envelope::New),
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
    let save_url = format!("{base}{}", kingdee::Op::Save.path("/k3cloud"));
    let doc = kingdee::envelope(
        "ER_ExpReimbursement",
        &kingdee::save_data(json!({"FBillNo": "SP1"}), &[]),
        kingdee::Envelope::Legacy,
    );
    let (status, _, body) =
        post_json(&save_url, &[("Cookie", session.cookie_header())], &doc).await;
    assert!(
        matches!(kingdee::classify(status, &body), Outcome::Success { captured } if captured.number.as_deref() == Some("SP1"))
    );

    server.with(standins::kingdee::KingdeeState::expire_sessions);
    let doc2 = kingdee::envelope(
        "ER_ExpReimbursement",
        &kingdee::save_data(json!({"FBillNo": "SP2"}), &[]),
        kingdee::Envelope::New,
    );
    let (status, _, body) =
        post_json(&save_url, &[("Cookie", session.cookie_header())], &doc2).await;
    assert!(matches!(
        kingdee::classify(status, &body),
        Outcome::Reauth { .. }
    ));
    for op in [kingdee::Op::LoginByAppSecret, kingdee::Op::LoginBySign] {
        let fresh = login(op, "").await.expect("re-login accepted");
        assert_ne!(fresh.id, session.id);
        let (status, _, body) = post_json(
            &save_url,
            &[(kingdee::SESSION_COOKIE, fresh.id.clone())],
            &doc2,
        )
        .await;
        let outcome = kingdee::classify(status, &body);
        if op == kingdee::Op::LoginByAppSecret {
            assert!(matches!(outcome, Outcome::Success { .. }), "{outcome:?}");
        } else {
            assert!(matches!(outcome, Outcome::Duplicate { .. }), "{outcome:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn yonbip_gateway_token_voucher_duplicate_failure_and_expiry() {
    let mut state = standins::yonbip::YonbipState::default();
    state.apps.insert("app-key-1".into(), "app-secret-1".into());
    let server = standins::yonbip::start(state).await;
    let client = reqwest::Client::new();
    let get = |url: String, query: Vec<(&'static str, String)>| {
        let client = client.clone();
        async move {
            let r = client
                .get(url)
                .query(&query)
                .send()
                .await
                .expect("reachable");
            (r.status().as_u16(), r.bytes().await.expect("body").to_vec())
        }
    };
    let (s, b) = get(
        format!("{}{}", server.base_url(), yonbip::GATEWAY_PATH),
        vec![("tenantId", "t1".into())],
    )
    .await;
    let gw = yonbip::parse_gateways(s, &b).expect("gateway discovery");
    let token_url = format!("{}{}", gw.token_url, yonbip::TOKEN_PATH);
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let (s, b) = get(
        token_url.clone(),
        yonbip::token_query("app-key-1", "wrong-secret", now_ms),
    )
    .await;
    assert!(matches!(
        yonbip::parse_token(s, &b),
        Err(yonbip::YonbipError::AuthRefused { .. })
    ));
    let (s, b) = get(
        token_url.clone(),
        yonbip::token_query("nope", "app-secret-1", now_ms),
    )
    .await;
    assert!(
        matches!(yonbip::parse_token(s, &b), Err(yonbip::YonbipError::AuthRefused { code, .. }) if code == "10018")
    );
    let token = yonbip::parse_token(
        200,
        &get(
            token_url.clone(),
            yonbip::token_query("app-key-1", "app-secret-1", now_ms),
        )
        .await
        .1,
    )
    .expect("token");

    let add = |token: String, body: Value| {
        let client = client.clone();
        let url = format!("{}{}", gw.gateway_url, yonbip::ADD_VOUCHER_PATH);
        async move {
            let r = client
                .post(url)
                .query(&[("access_token", token)])
                .json(&body)
                .send()
                .await
                .expect("reachable");
            let status = r.status().as_u16();
            yonbip::classify(status, &r.bytes().await.expect("body"))
        }
    };
    let doc = json!({"accbookCode": "BOOK01", "voucherTypeCode": "01", "period": "2026-03", "makerMobile": "13800000000",
        "businessId": yonbip::resubmit_check_key("SP202603310001").unwrap(),
        "bodies": [{"description": "差旅费", "accsubjectCode": "660201", "debitOriginal": "1200.00", "debitOrg": "1200.00"},
                   {"description": "差旅费", "accsubjectCode": "1002", "creditOriginal": "1200.00", "creditOrg": "1200.00"}]});
    let ok = add(token.access_token.clone(), doc.clone()).await;
    assert!(
        matches!(&ok, Outcome::Success { captured } if captured.id.is_some() && captured.number.is_some()),
        "{ok:?}"
    );
    assert!(matches!(
        add(token.access_token.clone(), doc.clone()).await,
        Outcome::Duplicate { .. }
    ));
    let mut no_book = doc.clone();
    no_book["accbookCode"] = "".into();
    no_book["businessId"] = "SP2".into();
    assert!(
        matches!(add(token.access_token.clone(), no_book).await, Outcome::Permanent { reason } if reason.contains("账簿code不能为空"))
    );
    server.with(|s| s.throttle_next = 1);
    assert!(matches!(
        add(token.access_token.clone(), doc.clone()).await,
        Outcome::Retryable { .. }
    ));

    server.with(standins::yonbip::YonbipState::expire_tokens);
    let mut third = doc.clone();
    third["businessId"] = "SP3".into();
    assert!(matches!(
        add(token.access_token.clone(), third.clone()).await,
        Outcome::Reauth { .. }
    ));
    let fresh = yonbip::parse_token(
        200,
        &get(
            token_url,
            yonbip::token_query("app-key-1", "app-secret-1", now_ms),
        )
        .await
        .1,
    )
    .expect("token");
    assert!(matches!(
        add(fresh.access_token, third).await,
        Outcome::Success { .. }
    ));
    server.stop().await;
}

#[tokio::test]
async fn u8_eai_xml_save_duplicate_failure_in_utf8_and_gbk() {
    let server = {
        let mut state = standins::u8::U8State::default();
        state.senders.push("999".into());
        standins::u8::start(state).await
    };
    let root = |sender: &str| u8eai::Root {
        roottag: "voucher".into(),
        billtype: "gl".into(),
        sender: sender.into(),
        receiver: "u8".into(),
        proc_: "add".into(),
        codeexchanged: "N".into(),
    };
    let doc = |key: &str, account: &str| {
        json!({"voucher": {"#order": ["voucher_head", "voucher_body"],
        "voucher_head": {"voucher_type": "记", "fiscal_year": 2026, "accounting_period": 3, "reserve2": key},
        "voucher_body": {"entry": [{"entry_id": 1, "account_code": account, "natural_debit_currency": "1200.00"}]}}})
    };
    let send = |root: u8eai::Root, body: Value| {
        let url = format!("{}/U8EAI/import.asp", server.base_url());
        async move {
            let xml = u8eai::envelope(&root, &body).expect("envelope");
            let r = reqwest::Client::new()
                .post(url)
                .header("Content-Type", "text/xml")
                .body(xml)
                .send()
                .await
                .expect("reachable");
            let status = r.status().as_u16();
            u8eai::classify(status, &r.bytes().await.expect("body"))
        }
    };
    assert_eq!(
        send(root("999"), doc("SP1", "660203")).await,
        Outcome::Success {
            captured: Captured {
                id: Some("1".into()),
                number: Some("1".into())
            }
        }
    );
    assert!(
        matches!(send(root("999"), doc("SP1", "660203")).await, Outcome::Duplicate { reason } if reason.contains("不可重复"))
    );
    assert!(
        matches!(send(root("999"), doc("SP2", "")).await, Outcome::Permanent { reason } if reason.contains("科目编码不能为空"))
    );
    assert!(
        matches!(send(root("777"), doc("SP3", "660203")).await, Outcome::Permanent { reason } if reason.contains("未注册"))
    );
    server.with(|s| s.answer_gbk = true);
    assert!(
        matches!(send(root("999"), doc("SP1", "660203")).await, Outcome::Duplicate { reason } if reason.contains("凭证已经存在，不可重复！"))
    );
    assert!(matches!(
        send(root("999"), doc("SP4", "660203")).await,
        Outcome::Success { .. }
    ));
    assert_eq!(server.recorded().len(), 6);
    assert!(
        String::from_utf8_lossy(&server.recorded()[0].body)
            .contains(r#"<ufinterface roottag="voucher" billtype="gl" sender="999""#)
    );
    server.stop().await;
}

#[tokio::test]
async fn beisen_token_push_poll_failure_and_expiry() {
    let mut state = standins::beisen::BeisenState::default();
    state.app = ("1001".into(), "204402".into(), "beisen-secret".into());
    state.staff.insert(115_000_335);
    let server = standins::beisen::start(state).await;
    let client = reqwest::Client::new();
    let token = |tenant: &'static str, secret: &'static str| {
        let url = format!("{}{}", server.base_url(), beisen::TOKEN_PATH);
        async move {
            let (status, body) = post_form(&url, &beisen::token_form("1001", tenant, secret)).await;
            beisen::parse_token(status, &body)
        }
    };
    assert_eq!(
        token("1", "beisen-secret").await,
        Err(beisen::BeisenError::Refused {
            status: 400,
            error: "invalid_tenantid".into()
        })
    );
    assert!(matches!(
        token("204402", "wrong").await,
        Err(beisen::BeisenError::Refused { .. })
    ));
    let bearer = token("204402", "beisen-secret").await.expect("token");
    let push = |bearer: String, staff: i64| {
        let client = client.clone();
        let base = server.base_url();
        async move {
            let body = json!({"VacationRecords": [{"StaffName": "张三", "StaffId": staff, "VacationType": "事假", "StartDateTime": "2026-03-16 09:00:00", "StopDateTime": "2026-03-16 18:00:00", "Reason": "家中有事"}]});
            let r = client
                .post(format!("{base}{}", beisen::VACATION_PATH))
                .bearer_auth(&bearer)
                .json(&body)
                .send()
                .await
                .expect("reachable");
            let status = r.status().as_u16();
            let id = r
                .headers()
                .get(beisen::REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let outcome =
                beisen::classify_push(status, id.as_deref(), &r.bytes().await.expect("body"), None);
            let Outcome::Success { captured } = outcome else {
                return outcome;
            };
            let request_id = captured.id.expect("request id captured");
            let mut states = Vec::new();
            loop {
                let r = client
                    .get(format!("{base}{}", beisen::ASYNC_RESULT_PATH))
                    .query(&[("requestId", &request_id)])
                    .bearer_auth(&bearer)
                    .send()
                    .await
                    .expect("reachable");
                let status = r.status().as_u16();
                match beisen::classify_state(status, &r.bytes().await.expect("body")) {
                    beisen::BatchState::Pending(s) => states.push(s),
                    beisen::BatchState::Done(o) => {
                        assert_eq!(states, ["Running"], "polled through Running first");
                        return o;
                    }
                }
                assert!(states.len() < 5, "async state never became final");
            }
        }
    };
    assert_eq!(
        push(bearer.clone(), 115_000_335).await,
        Outcome::Success {
            captured: Captured::default()
        }
    );
    assert!(
        matches!(push(bearer.clone(), 42).await, Outcome::Permanent { reason } if reason.contains("员工不存在：42"))
    );
    server.with(|s| s.throttle_next = 1);
    assert!(matches!(
        push(bearer.clone(), 115_000_335).await,
        Outcome::Retryable { .. }
    ));
    server.with(standins::beisen::BeisenState::expire_tokens);
    assert!(matches!(
        push(bearer, 115_000_335).await,
        Outcome::Reauth { .. }
    ));
    let fresh = token("204402", "beisen-secret").await.expect("token");
    assert!(matches!(
        push(fresh, 115_000_335).await,
        Outcome::Success { .. }
    ));
    assert_eq!(server.with(|s| s.records.len()), 2);
    server.stop().await;
}

#[tokio::test]
async fn fxiaoke_token_create_failure_expiry_and_token_counting() {
    let mut state = standins::fxiaoke::FxiaokeState::default();
    state.app = ("FSAID_1".into(), "fx-secret".into(), "perm-1".into());
    state.ea = "fxxxx1".into();
    let server = standins::fxiaoke::start(state).await;
    let token_url = format!("{}{}", server.base_url(), fxiaoke::TOKEN_PATH);
    let token = |secret: &'static str| {
        let url = token_url.clone();
        async move {
            let (status, _, body) =
                post_json(&url, &[], &fxiaoke::token_body("FSAID_1", secret, "perm-1")).await;
            fxiaoke::parse_token(status, &body)
        }
    };
    assert!(
        matches!(token("wrong").await, Err(fxiaoke::FxiaokeError::Refused { code, .. }) if code == "10006")
    );
    let t = token("fx-secret").await.expect("token");
    let create = |t: fxiaoke::Token, name: &'static str| {
        let url = format!("{}{}", server.base_url(), fxiaoke::CREATE_PATH);
        async move {
            let mut f = serde_json::Map::new();
            f.insert("name".into(), name.into());
            let headers = [
                ("authorization", format!("Bearer {}", t.access_token)),
                ("x-fs-ea", t.ea.clone()),
                ("x-fs-userid", "1000".into()),
            ];
            let (status, _, body) =
                post_json(&url, &headers, &fxiaoke::create_body("AccountObj", f)).await;
            fxiaoke::classify(status, &body)
        }
    };
    assert!(
        matches!(create(t.clone(), "上海示例科技有限公司").await, Outcome::Success { captured } if captured.id.is_some())
    );
    server.with(|s| {
        s.reject_next
            .push((320_001_401, "必填字段未填写：负责人".into()))
    });
    assert!(
        matches!(create(t.clone(), "B").await, Outcome::Permanent { reason } if reason.contains("必填字段未填写"))
    );
    server.with(standins::fxiaoke::FxiaokeState::expire_tokens);
    assert!(matches!(
        create(t.clone(), "C").await,
        Outcome::Reauth { .. }
    ));
    let fresh = token("fx-secret").await.expect("token");
    assert!(matches!(create(fresh, "C").await, Outcome::Success { .. }));
    assert_eq!(server.with(|s| s.created().len()), 2);
    assert_eq!(server.with(|s| s.token_requests()), 3);
    assert!(!server.with(|s| s.token_overuse()));
    assert_eq!(server.max_concurrent(fxiaoke::TOKEN_PATH), 1);

    // The counters a connector test relies on do flag abuse: two overlapping token calls,
    // then more than ten within a minute.
    server.set_latency(fxiaoke::TOKEN_PATH, Duration::from_millis(200));
    let (a, b) = tokio::join!(token("fx-secret"), token("fx-secret"));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(server.max_concurrent(fxiaoke::TOKEN_PATH), 2);
    server.set_latency(fxiaoke::TOKEN_PATH, Duration::ZERO);
    for _ in 0..6 {
        token("fx-secret").await.expect("token");
    }
    assert_eq!(server.with(|s| s.token_requests()), 11);
    assert!(server.with(|s| s.token_overuse()));
    server.stop().await;
}

#[tokio::test]
async fn salesforce_token_upsert_duplicate_failure_and_expiry() {
    let mut state = standins::salesforce::SalesforceState::default();
    state.client = ("cid".into(), "csecret".into());
    state.unique_field = "ExtId__c".into();
    let server = standins::salesforce::start(state).await;
    let client = reqwest::Client::new();
    let token = |secret: &'static str| {
        let url = format!("{}{}", server.base_url(), salesforce::TOKEN_PATH);
        async move {
            let (status, body) = post_form(&url, &salesforce::token_form("cid", secret)).await;
            salesforce::parse_token(status, &body)
        }
    };
    assert!(matches!(
        token("nope").await,
        Err(salesforce::SalesforceError::Refused { status: 400, .. })
    ));
    let t = token("csecret").await.expect("token");
    let call = |t: salesforce::Token, method: reqwest::Method, path: String, body: Value| {
        let client = client.clone();
        async move {
            let r = client
                .request(method, format!("{}{path}", t.instance_url))
                .bearer_auth(&t.access_token)
                .json(&body)
                .send()
                .await
                .expect("reachable");
            let status = r.status().as_u16();
            (
                status,
                salesforce::classify(status, &r.bytes().await.expect("body")),
            )
        }
    };
    let upsert = salesforce::upsert_path("v60.0", "Account", "ExtId__c", "SP 1");
    let (status, first) = call(
        t.clone(),
        reqwest::Method::PATCH,
        upsert.clone(),
        json!({"Name": "Express Logistics"}),
    )
    .await;
    assert_eq!(status, 201);
    let Outcome::Success { captured } = first else {
        panic!("{first:?}")
    };
    let (status, again) = call(
        t.clone(),
        reqwest::Method::PATCH,
        upsert,
        json!({"Name": "Express Logistics"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        again,
        Outcome::Success {
            captured: captured.clone()
        }
    );
    let create = "/services/data/v60.0/sobjects/Account/".to_owned();
    let (_, dup) = call(
        t.clone(),
        reqwest::Method::POST,
        create.clone(),
        json!({"Name": "X", "ExtId__c": "SP 1"}),
    )
    .await;
    assert!(
        matches!(dup, Outcome::Duplicate { reason } if reason.contains(captured.id.as_deref().unwrap()))
    );
    let (_, missing) = call(
        t.clone(),
        reqwest::Method::POST,
        create.clone(),
        json!({"ExtId__c": "SP2"}),
    )
    .await;
    assert!(
        matches!(missing, Outcome::Permanent { reason } if reason.contains("Required fields are missing: [Name]"))
    );
    server.with(|s| s.throttle_next = 1);
    assert!(matches!(
        call(
            t.clone(),
            reqwest::Method::POST,
            create.clone(),
            json!({"Name": "Y"})
        )
        .await
        .1,
        Outcome::Retryable { .. }
    ));
    server.with(standins::salesforce::SalesforceState::expire_tokens);
    assert!(matches!(
        call(
            t,
            reqwest::Method::POST,
            create.clone(),
            json!({"Name": "Y"})
        )
        .await
        .1,
        Outcome::Reauth { .. }
    ));
    let fresh = token("csecret").await.expect("token");
    assert!(matches!(
        call(fresh, reqwest::Method::POST, create, json!({"Name": "Y"}))
            .await
            .1,
        Outcome::Success { .. }
    ));
    assert_eq!(server.with(|s| s.record_count()), 2);
    server.stop().await;
}
