use super::*;
use crate::config::Secret;
use crate::wecom::api::{
    ApiConfig, ApiError, ApprovalFilter, ApprovalInfoQuery, Credentials, WeComApi,
};

const CORP: &str = "ww-fake";
const SECRET: &str = "s3cret";

async fn started() -> (FakeWeCom, reqwest::Client) {
    let fake = FakeWeCom::start().await;
    fake.add_credentials(CORP, SECRET);
    (fake, reqwest::Client::new())
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    let resp = http.get(url).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn post(http: &reqwest::Client, url: String, body: &Value) -> Value {
    let resp = http.post(url).json(body).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

/// `gettoken` for this corp id and secret.
async fn gettoken(fake: &FakeWeCom, http: &reqwest::Client, corpid: &str, secret: &str) -> Value {
    let base = fake.base_url();
    get(
        http,
        format!("{base}/gettoken?corpid={corpid}&corpsecret={secret}"),
    )
    .await
}

async fn token(fake: &FakeWeCom, http: &reqwest::Client) -> String {
    let v = gettoken(fake, http, CORP, SECRET).await;
    v["access_token"].as_str().expect("token").to_owned()
}

/// The real client on `fake`, with the credentials `fake` accepts; retries wait little.
fn client(fake: &FakeWeCom) -> (WeComApi, Credentials) {
    let api = WeComApi::new(ApiConfig {
        base_url: fake.base_url(),
        retry_min_delay: Duration::from_millis(5),
        ..ApiConfig::default()
    })
    .expect("client");
    (api, Credentials::new(CORP, Secret::new(SECRET)))
}

/// An `apply_data` with one `Money` control of 1280.50.
fn money_form() -> Value {
    json!({"contents": [{"control": "Money", "id": "Money-1",
        "title": [{"text": "金额", "lang": "zh_CN"}], "value": {"new_money": "1280.50"}}]})
}

#[tokio::test]
async fn gettoken_speaks_wecom_json() {
    let (fake, http) = started().await;
    let v = gettoken(&fake, &http, CORP, SECRET).await;
    assert_eq!(v["errcode"], 0);
    assert_eq!(v["errmsg"], "ok");
    assert_eq!(v["expires_in"], 7200);
    let first = v["access_token"].as_str().expect("token").to_owned();
    // Same token while it is valid.
    let v = gettoken(&fake, &http, CORP, SECRET).await;
    assert_eq!(v["access_token"], first.as_str());
    let v = gettoken(&fake, &http, CORP, "nope").await;
    assert_eq!(v["errcode"], 40001);
    let v = gettoken(&fake, &http, "other", SECRET).await;
    assert_eq!(v["errcode"], 40013);
    assert!(
        v["errmsg"]
            .as_str()
            .expect("errmsg")
            .starts_with("invalid corpid")
    );
    assert_eq!(fake.calls("gettoken"), 4);
    fake.stop().await;
}

#[tokio::test]
async fn token_checks_41001_40014_42001() {
    let (fake, http) = started().await;
    fake.add_user(json!({"userid": "u1", "name": "One"}));
    let base = fake.base_url();
    let v = get(&http, format!("{base}/user/get?userid=u1")).await;
    assert_eq!(v["errcode"], 41001);
    let v = get(
        &http,
        format!("{base}/user/get?access_token=bogus&userid=u1"),
    )
    .await;
    assert_eq!(v["errcode"], 40014);
    let t = token(&fake, &http).await;
    let v = get(&http, format!("{base}/user/get?access_token={t}&userid=u1")).await;
    assert_eq!(v["errcode"], 0);
    assert_eq!(v["name"], "One");
    fake.expire_all_tokens();
    let v = get(&http, format!("{base}/user/get?access_token={t}&userid=u1")).await;
    assert_eq!(v["errcode"], 42001);
    let t2 = token(&fake, &http).await;
    assert_ne!(t, t2);
    assert_eq!(fake.calls("user/get"), 4);
    fake.stop().await;
}

#[tokio::test]
async fn token_ttl_is_returned_and_enforced() {
    let (fake, http) = started().await;
    fake.set_token_ttl(1);
    let base = fake.base_url();
    let v = gettoken(&fake, &http, CORP, SECRET).await;
    assert_eq!(v["expires_in"], 1);
    let t = v["access_token"].as_str().expect("token").to_owned();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let v = post(
        &http,
        format!("{base}/message/send?access_token={t}"),
        &json!({"touser": "a", "msgtype": "text", "agentid": 1, "text": {"content": "x"}}),
    )
    .await;
    assert_eq!(v["errcode"], 42001);
    assert!(fake.sent_messages().is_empty());
    fake.stop().await;
}

#[tokio::test]
async fn getapprovalinfo_pages_filters_and_limits_windows() {
    let (fake, http) = started().await;
    let base_t = 1_750_000_000;
    for i in 0..5 {
        fake.add_approval(json!({
            "sp_no": format!("A{i}"), "sp_status": 2, "template_id": "T1",
            "apply_time": base_t + i, "applyer": {"userid": "u", "partyid": "1"}
        }));
    }
    fake.add_approval(json!({
        "sp_no": "B", "sp_status": 1, "template_id": "T1",
        "apply_time": base_t, "applyer": {"userid": "u", "partyid": "1"}
    }));
    let t = token(&fake, &http).await;
    let url = format!("{}/oa/getapprovalinfo?access_token={t}", fake.base_url());
    let q = |cursor: &str| {
        json!({"starttime": base_t.to_string(), "endtime": (base_t + 100).to_string(),
               "new_cursor": cursor, "size": 2,
               "filters": [{"key": "sp_status", "value": "2"}]})
    };
    let mut all = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let v = post(&http, url.clone(), &q(&cursor)).await;
        assert_eq!(v["errcode"], 0, "{v}");
        pages += 1;
        for s in v["sp_no_list"].as_array().expect("list") {
            all.push(s.as_str().expect("str").to_owned());
        }
        match v.get("new_next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all, ["A0", "A1", "A2", "A3", "A4"]);
    // Unknown cursor, bad size, too-large window, unknown filter key.
    let v = post(&http, url.clone(), &q("not-a-cursor")).await;
    assert_eq!(v["errcode"], 301025);
    let v = post(
        &http,
        url.clone(),
        &json!({"starttime": "0", "endtime": "100", "size": 101}),
    )
    .await;
    assert_eq!(v["errcode"], 301025);
    let v = post(
        &http,
        url.clone(),
        &json!({"starttime": "0", "endtime": (31 * 86_400 + 1).to_string(), "size": 10}),
    )
    .await;
    assert_eq!(v["errcode"], 301112);
    let v = post(
        &http,
        url.clone(),
        &json!({"starttime": "0", "endtime": "10", "filters": [{"key": "colour", "value": "red"}]}),
    )
    .await;
    assert_eq!(v["errcode"], 301025);
    let v = http
        .post(url)
        .body("{not json")
        .send()
        .await
        .expect("send")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 47001);
    fake.stop().await;
}

#[tokio::test]
async fn injected_failures_and_rate_limits() {
    let (fake, http) = started().await;
    let base = fake.base_url();
    fake.fail_next("gettoken", -1, 1);
    let v = gettoken(&fake, &http, CORP, SECRET).await;
    assert_eq!(v["errcode"], -1);
    let t = token(&fake, &http).await;
    fake.fail_next("oa/getapprovaldetail", 60020, 1);
    let url = format!("{base}/oa/getapprovaldetail?access_token={t}");
    let v = post(&http, url.clone(), &json!({"sp_no": "1"})).await;
    assert_eq!(v["errcode"], 60020);
    let v = post(&http, url.clone(), &json!({"sp_no": "1"})).await;
    assert_eq!(v["errcode"], 301025);
    fake.set_rate_limit_per_minute("getapprovaldetail", 1);
    let v = post(&http, url.clone(), &json!({"sp_no": "1"})).await;
    assert_eq!(v["errcode"], 301025);
    let v = post(&http, url, &json!({"sp_no": "1"})).await;
    assert_eq!(v["errcode"], 45009);
    assert_eq!(fake.calls("getapprovaldetail"), 4);
    fake.stop().await;
}

#[tokio::test]
async fn serves_the_client_end_to_end() {
    let (fake, _) = started().await;
    fake.add_approval(json!({
        "sp_no": "202506050012", "sp_status": 2, "template_id": "T1",
        "apply_time": 1_750_000_000, "applyer": {"userid": "u", "partyid": "1"},
        "apply_data": money_form()
    }));
    let (api, c) = client(&fake);
    let q = ApprovalInfoQuery::new(1_749_999_999, 1_750_000_001)
        .with_filter(ApprovalFilter::template_id("T1"));
    let page = api.approval_info_page(&c, &q, "").await.expect("page");
    assert_eq!(page.sp_no_list, ["202506050012"]);
    assert_eq!(page.next_cursor, None);
    let info = api
        .approval_detail(&c, "202506050012")
        .await
        .expect("detail");
    assert_eq!(
        info["apply_data"]["contents"][0]["value"]["new_money"],
        "1280.50"
    );
    fake.fail_next("getapprovaldetail", 301055, 1);
    let e = api
        .approval_detail(&c, "202506050012")
        .await
        .expect_err("perm");
    assert!(matches!(
        e,
        ApiError::Permanent {
            errcode: 301055,
            ..
        }
    ));
    fake.stop().await;
}

#[tokio::test]
async fn message_send_checks_text_cards_and_drops_duplicates_like_wecom() {
    let (fake, http) = started().await;
    let t = token(&fake, &http).await;
    let url = format!("{}/message/send?access_token={t}", fake.base_url());
    let card = |title: &str, link: &str| {
        json!({"touser": "ZhangSan", "msgtype": "textcard", "agentid": 1000005,
            "textcard": {"title": title, "description": "<div>凭证号 JZ-1</div>", "url": link},
            "enable_duplicate_check": 1, "duplicate_check_interval": 1800})
    };
    // a card needs its link and a title within WeCom's limit
    assert_eq!(
        post(&http, url.clone(), &card("入账", "")).await["errcode"],
        40058
    );
    let long = "长".repeat(129);
    assert_eq!(
        post(&http, url.clone(), &card(&long, "https://x/1")).await["errcode"],
        45002
    );
    // the same body twice within the interval: ok both times, delivered once, same msgid
    let first = post(&http, url.clone(), &card("入账", "https://x/1")).await;
    let again = post(&http, url.clone(), &card("入账", "https://x/1")).await;
    assert_eq!(
        (first["errcode"].clone(), again["errcode"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(first["msgid"], again["msgid"]);
    // a different body is a different message
    let other = post(&http, url.clone(), &card("入账", "https://x/2")).await;
    assert_ne!(other["msgid"], first["msgid"]);
    assert_eq!(
        fake.sent_messages().len(),
        2,
        "the duplicate was not delivered"
    );
    assert_eq!(fake.received_messages().len(), 5, "every request is kept");
    assert_eq!(fake.received_messages()[0]["textcard"]["url"], "");
    fake.stop().await;
}

#[tokio::test]
async fn synthetic_approvals_answer_any_sp_no_and_fixtures_win() {
    let (fake, _) = started().await;
    fake.serve_synthetic_approvals(json!({
        "sp_no": "0", "sp_status": 2, "sp_name": "费用报销",
        "apply_data": money_form()
    }));
    fake.add_approval(json!({"sp_no": "202506050012", "sp_status": 1}));
    let (api, c) = client(&fake);
    for sp_no in ["202611300000000001", "202611300000000002"] {
        let info = api.approval_detail(&c, sp_no).await.expect("synthetic");
        assert_eq!(info["sp_no"], sp_no);
        assert_eq!(info["sp_status"], 2);
        assert_eq!(
            info["apply_data"]["contents"][0]["value"]["new_money"],
            "1280.50"
        );
    }
    let fixture = api
        .approval_detail(&c, "202506050012")
        .await
        .expect("fixture");
    assert_eq!(fixture["sp_status"], 1);
    assert_eq!(fake.calls("getapprovaldetail"), 3);
    fake.stop().await;
}
