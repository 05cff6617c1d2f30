//! YonBIP (gateway discovery, access tokens, vouchers) and U8 EAI (XML in UTF-8 and GBK).

use serde_json::{Value, json};
use wecom_bridge::deliver::vendor::{Captured, Outcome, u8eai, yonbip};
use wecom_bridge::standins;

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
