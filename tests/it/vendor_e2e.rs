//! End to end into the ERP stand-ins, through the real pipeline: signed, encrypted WeCom
//! callbacks → ingress → the WeCom API stand-in → route → the shipped templates
//! (`templates/kingdee-expense`, `yonbip-expense`, `u8-purchase`) → the vendor connector → the
//! Kingdee, YonBIP and U8 EAI stand-ins, which verify signatures, sessions and tokens as the
//! real servers do. Counted AT THE STAND-INS: each bill saved exactly once, with the right
//! lines; and in the ledger: the bill number captured, duplicates counted as delivered,
//! business failures dead-lettered with the system's own message.

use std::path::Path;

use rust_decimal::Decimal;
use serde_json::Value;
use wecom_bridge::cli::demo::samples::{self, APPROVED, CLAIMS};
use wecom_bridge::config::Config;
use wecom_bridge::deliver::vendor::{kingdee, u8eai, yonbip};
use wecom_bridge::standins;
use wecom_bridge::standins::wecom::FakeWeCom;

use crate::expense::{bridge_toml, dead_letters, ledger_jobs, post_all};
use crate::support::*;
use crate::vendor_connectors::{KD_APP_SECRET, KD_PASSWORD, kingdee_creds};

/// Copies `templates/<name>/` into `dir` with `edits` applied to its connector file
/// `connector` (each edit must find its text) and the tests' retry tiers; secrets go into
/// files under `dir` (`{secrets}` in an edit is that folder). Returns the `[catalog]` section.
fn catalog_from_template(
    dir: &Path,
    name: &str,
    connector: &str,
    edits: &[(&str, &str)],
) -> String {
    let template = repo().join("templates").join(name);
    copy_dir(&template.join("mappings"), &dir.join("mappings"));
    copy_dir(&template.join("connectors"), &dir.join("connectors"));
    for (file, value) in [
        ("kd_app_secret", KD_APP_SECRET),
        ("kd_password", KD_PASSWORD),
        ("yb_app_secret", "yb-secret-e2e"),
    ] {
        std::fs::write(dir.join(file), format!("{value}\n")).unwrap();
    }
    let path = dir.join("connectors").join(connector);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{name}/{connector} has no `{from}`");
        text = text.replace(from, &to.replace("{secrets}", &dir.display().to_string()));
    }
    text.push_str("\n[retry]\nschedule_secs = [1, 2]\nmax_attempts = 3\n");
    std::fs::write(&path, text).unwrap();
    catalog_section(&dir.join("mappings"), &dir.join("connectors"))
}

/// A bridge for app `app` with `catalog` on `broker`, its WeCom stand-in, and the callback URL.
async fn bridge(app: &str, catalog: &str, broker: &str) -> (TestBridge, FakeWeCom, String) {
    let fake = FakeWeCom::start().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = bridge_toml(dir.path(), app, &fake, &format!("{catalog}{broker}"));
    let t = TestBridge::start_config(Config::from_toml(&toml).unwrap(), dir).await;
    let url = t.url(&TestApp::new(app).path);
    (t, fake, url)
}

/// Registers the demo's first expense claim as approved under each SpNo and posts its callback.
async fn approve_expenses(fake: &FakeWeCom, app: &str, url: &str, sp_nos: &[String]) {
    for sp in sp_nos {
        fake.add_approval(samples::detail(&CLAIMS[0], sp, APPROVED, 1_764_000_000));
    }
    let xmls = sp_nos
        .iter()
        .map(|sp| samples::callback(CORP_ID, sp, APPROVED, 2))
        .collect();
    let app = TestApp::new(app);
    post_all(url, xmls, |x| signed(&app, x)).await;
}

fn sp_nos(first: u64, n: u64) -> Vec<String> {
    (first..first + n).map(|i| i.to_string()).collect()
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .map_or_else(|| v.to_string(), str::to_owned)
        .parse()
        .unwrap()
}

/// Waits until the ledger has `n` jobs of `connector` in `state`; returns them.
async fn jobs_in(admin: &str, connector: &str, state: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let jobs = ledger_jobs(admin, connector).await;
        let matching: Vec<Value> = jobs
            .iter()
            .filter(|j| j["state"] == state)
            .cloned()
            .collect();
        if matching.len() == n {
            return matching;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waiting for {n} {connector} jobs {state}; the ledger has {jobs:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const KD_SAVE: &str =
    "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save.common.kdsvc";

/// The `kingdee-expense` template in `dir`, its connector pointed at the stand-in at `url`
/// with the tests' AppID and AppSecret, and `more` edits; the `[catalog]` section.
fn kingdee_catalog(dir: &Path, url: &str, more: &[(&str, &str)]) -> String {
    let k3cloud = format!("{url}/k3cloud");
    let mut edits = vec![
        ("env:KINGDEE_URL", k3cloud.as_str()),
        ("env:KINGDEE_APP_ID", crate::vendor_connectors::KD_APP_ID),
        ("env:KINGDEE_APP_SECRET", "file:{secrets}/kd_app_secret"),
    ];
    edits.extend_from_slice(more);
    catalog_from_template(dir, "kingdee-expense", "kingdee.toml", &edits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expense_claims_become_kingdee_vouchers_through_session_loss_duplicates_and_refusals() {
    let server = standins::kingdee::start(standins::kingdee::KingdeeState::new(
        kingdee_creds(),
        KD_PASSWORD,
    ))
    .await;
    let catalog_dir = tempfile::tempdir().unwrap();
    let catalog = kingdee_catalog(
        catalog_dir.path(),
        &server.base_url(),
        &[("auth = \"signed\"", "auth = \"login_by_sign\"")],
    );
    let (t, fake, url) = bridge("kd_e2e", &catalog, SHORT_TIERS).await;
    let admin = t.admin.to_string();

    // Phase 1: three claims, one login, three vouchers with the claim's lines, numbers captured.
    let first = sp_nos(202_611_300_001, 3);
    approve_expenses(&fake, "kd_e2e", &url, &first).await;
    let delivered = jobs_in(&admin, "kingdee", "delivered", 3).await;
    for sp in &first {
        let bill_no = format!("EXP-{sp}");
        let (status, model) = server
            .with(|s| s.bill("GL_VOUCHER", &bill_no))
            .expect("saved at Kingdee");
        assert_eq!(status, 'A');
        let lines = model["FEntity"].as_array().unwrap();
        let debit: Decimal = lines.iter().map(|l| dec(&l["FDEBIT"])).sum();
        let credit: Decimal = lines.iter().map(|l| dec(&l["FCREDIT"])).sum();
        assert_eq!(
            debit,
            CLAIMS[0].total.parse::<Decimal>().unwrap(),
            "{model}"
        );
        assert_eq!(debit, credit, "balanced: {model}");
        let travel = lines
            .iter()
            .find(|l| l["FACCOUNTID"]["FNumber"] == "6602.04")
            .expect("差旅费 line");
        assert_eq!(travel["FDEBIT"], "1999.99");
        let payable = lines
            .iter()
            .find(|l| l["FACCOUNTID"]["FNumber"] == "2241.01")
            .expect("credit line");
        assert_eq!(payable["FCREDIT"], CLAIMS[0].total);
        assert!(
            delivered
                .iter()
                .any(|j| j["captured"]["number"] == bill_no.as_str()),
            "bill number captured: {delivered:#?}"
        );
    }
    let logins = server.count(&kingdee::Op::LoginBySign.path("/k3cloud"));
    assert_eq!(logins, 1, "one session for the run");

    // Phase 2: the server drops every session mid-run; the bridge logs in again, nothing is
    // lost or doubled.
    server.with(standins::kingdee::KingdeeState::expire_sessions);
    let second = sp_nos(202_611_300_101, 3);
    approve_expenses(&fake, "kd_e2e", &url, &second).await;
    jobs_in(&admin, "kingdee", "delivered", 6).await;
    assert_eq!(
        server.count(&kingdee::Op::LoginBySign.path("/k3cloud")),
        2,
        "one re-login"
    );
    for sp in first.iter().chain(&second) {
        assert!(
            server
                .with(|s| s.bill("GL_VOUCHER", &format!("EXP-{sp}")))
                .is_some()
        );
    }

    // Phase 3: a voucher already in Kingdee (a lost reply, booked by hand): Kingdee's
    // "违反字段唯一性要求" answer counts as delivered, and there is still one bill.
    let dup = sp_nos(202_611_300_201, 1);
    let model = serde_json::json!({"FBillNo": format!("EXP-{}", dup[0]), "FEntity": []});
    let body = kingdee::envelope(
        "GL_VOUCHER",
        &kingdee::save_data(model, &[]),
        kingdee::Envelope::New,
    );
    let ts = jiff::Timestamp::now().as_second();
    let headers =
        kingdee::signed_headers(&kingdee_creds(), KD_SAVE, ts, kingdee::DEFAULT_SECRET_SEED)
            .unwrap();
    let mut req = reqwest::Client::new()
        .post(format!("{}{KD_SAVE}", server.base_url()))
        .json(&body);
    for (n, v) in headers {
        req = req.header(n, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    approve_expenses(&fake, "kd_e2e", &url, &dup).await;
    let dups = jobs_in(&admin, "kingdee", "duplicate", 1).await;
    assert!(
        dups[0]["business_key"]
            .as_str()
            .is_some_and(|k| k.contains(&dup[0])),
        "{dups:#?}"
    );

    // Phase 4: HTTP 200 with IsSuccess false: dead-lettered with Kingdee's own message.
    server.with(|s| {
        s.required.push((
            "GL_VOUCHER".into(),
            "FExternalNo".into(),
            "字段“外部单号”是必填项".into(),
        ))
    });
    let refused = sp_nos(202_611_300_301, 1);
    approve_expenses(&fake, "kd_e2e", &url, &refused).await;
    eventually(60, "the refused claim is dead-lettered", || async {
        dead_letters(&admin, "kingdee").await.len() == 1
    })
    .await;
    let parked = dead_letters(&admin, "kingdee").await;
    let reason = parked[0].to_string();
    assert!(
        reason.contains("FExternalNo: 字段“外部单号”是必填项"),
        "{reason}"
    );
    assert!(
        server
            .with(|s| s.bill("GL_VOUCHER", &format!("EXP-{}", refused[0])))
            .is_none()
    );
    assert_eq!(
        server.count(KD_SAVE),
        6 + 1 + 1 + 1 + 1,
        "one Save per claim, plus the re-sent one after the lost session and the hand-booked one"
    );

    t.stop().await;
    fake.stop().await;
    server.stop().await;
}

async fn kingdee_wrong_secret(app: &str, broker: &str) {
    let mut creds = kingdee_creds();
    creds.app_secret = "ffffffffffffffffffffffffffffffff".into();
    let server =
        standins::kingdee::start(standins::kingdee::KingdeeState::new(creds, KD_PASSWORD)).await;
    let catalog_dir = tempfile::tempdir().unwrap();
    let catalog = kingdee_catalog(catalog_dir.path(), &server.base_url(), &[]);
    let (t, fake, url) = bridge(app, &catalog, broker).await;
    let admin = t.admin.to_string();
    approve_expenses(&fake, app, &url, &sp_nos(202_611_300_401, 1)).await;
    let dead = jobs_in(&admin, "kingdee", "dead", 1).await;
    let reason = dead[0]["last_error"].to_string();
    assert!(
        reason.contains(kingdee::SESSION_LOST) && reason.contains("refused again"),
        "{reason}"
    );
    let reason = dead_letters(&admin, "kingdee").await[0].to_string();
    assert!(
        reason.contains(kingdee::SESSION_LOST) && reason.contains("refused again"),
        "{reason}"
    );
    assert_eq!(
        server.count(KD_SAVE),
        2,
        "signed, refused, re-signed once, refused: parked"
    );
    assert!(server.recorded().iter().all(|r| r.path == KD_SAVE));
    t.stop().await;
    fake.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kingdee_secret_is_refused_by_the_gateway_and_parked() {
    kingdee_wrong_secret("kd_wrong", SHORT_TIERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kingdee_secret_is_parked_on_rabbitmq_too() {
    let prefix = unique("wbkd");
    kingdee_wrong_secret("kd_wrong_rmq", &rabbit_section(&prefix)).await;
    let queues = [
        "route".to_string(),
        "deliver.kingdee".to_string(),
        "writeback".to_string(),
    ];
    delete_rabbit_queues(&prefix, &queues).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expense_claims_become_yonbip_vouchers_with_discovery_token_expiry_and_duplicates() {
    let mut state = standins::yonbip::YonbipState::default();
    state.apps.insert(
        "41832a3d2df94989b500da6a22268747".into(),
        "yb-secret-e2e".into(),
    );
    let server = standins::yonbip::start(state).await;
    let catalog_dir = tempfile::tempdir().unwrap();
    let catalog = catalog_from_template(
        catalog_dir.path(),
        "yonbip-expense",
        "yonbip.toml",
        &[
            ("https://apigateway.yonyoucloud.com", &server.base_url()),
            ("env:YONBIP_APP_SECRET", "file:{secrets}/yb_app_secret"),
            ("rate_per_sec = 0.5", "rate_per_sec = 50"),
        ],
    );
    let (t, fake, url) = bridge("yb_e2e", &catalog, SHORT_TIERS).await;
    let admin = t.admin.to_string();

    let first = sp_nos(202_611_310_001, 3);
    approve_expenses(&fake, "yb_e2e", &url, &first).await;
    let delivered = jobs_in(&admin, "yonbip", "delivered", 3).await;
    assert!(
        delivered.iter().all(|j| j["captured"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("2A4556F6-"))),
        "{delivered:#?}"
    );
    assert_eq!(
        server.count(yonbip::GATEWAY_PATH),
        1,
        "gateway discovered once"
    );
    assert_eq!(server.count(yonbip::TOKEN_PATH), 1, "one token for the run");
    let vouchers: Vec<Value> = server
        .recorded()
        .iter()
        .filter(|r| r.path == yonbip::ADD_VOUCHER_PATH)
        .filter_map(|r| r.json())
        .collect();
    assert_eq!(vouchers.len(), 3);
    for v in &vouchers {
        let bodies = v["bodies"].as_array().unwrap();
        let debit: Decimal = bodies
            .iter()
            .filter(|b| b.get("debitOrg").is_some())
            .map(|b| dec(&b["debitOrg"]))
            .sum();
        let credit: Decimal = bodies
            .iter()
            .filter(|b| b.get("creditOrg").is_some())
            .map(|b| dec(&b["creditOrg"]))
            .sum();
        assert_eq!(debit, credit, "{v}");
        assert_eq!(credit, CLAIMS[0].total.parse::<Decimal>().unwrap());
        assert!(v["businessId"].as_str().unwrap().starts_with("EXP-"));
    }

    // The token is revoked mid-run: one new token, nothing lost.
    server.with(standins::yonbip::YonbipState::expire_tokens);
    let second = sp_nos(202_611_310_101, 2);
    approve_expenses(&fake, "yb_e2e", &url, &second).await;
    jobs_in(&admin, "yonbip", "delivered", 5).await;
    assert_eq!(server.count(yonbip::TOKEN_PATH), 2);

    // The same businessId again (a voucher the bridge cannot know was saved): 100004 重复提交
    // counts as delivered; YonBIP keeps one voucher.
    let dup_sp = "202611310901".to_string();
    // Booked once by hand first, then sent by the bridge.
    let token_url = format!("{}{}", server.base_url(), yonbip::TOKEN_PATH);
    let now = jiff::Timestamp::now().as_millisecond();
    let tok: Value = reqwest::Client::new()
        .get(&token_url)
        .query(&yonbip::token_query(
            "41832a3d2df94989b500da6a22268747",
            "yb-secret-e2e",
            now,
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tok["data"]["access_token"].as_str().unwrap().to_owned();
    let hand = serde_json::json!({"accbookCode": "BOOK01", "businessId": format!("EXP-{dup_sp}"), "bodies": []});
    reqwest::Client::new()
        .post(format!("{}{}", server.base_url(), yonbip::ADD_VOUCHER_PATH))
        .query(&[("access_token", token)])
        .json(&hand)
        .send()
        .await
        .unwrap();
    approve_expenses(&fake, "yb_e2e", &url, std::slice::from_ref(&dup_sp)).await;
    jobs_in(&admin, "yonbip", "duplicate", 1).await;

    t.stop().await;
    fake.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_requests_become_u8_purchase_orders_with_gbk_answers_and_duplicates() {
    let mut state = standins::u8::U8State::default();
    state.senders.push("999".into());
    state.answer_gbk = true;
    let server = standins::u8::start(state).await;
    let catalog_dir = tempfile::tempdir().unwrap();
    let eai = format!("{}/U8EAI/import.asp", server.base_url());
    let catalog = catalog_from_template(
        catalog_dir.path(),
        "u8-purchase",
        "u8.toml",
        &[("env:U8_EAI_URL", &eai)],
    );
    let (t, fake, url) = bridge("u8_e2e", &catalog, SHORT_TIERS).await;
    let admin = t.admin.to_string();
    let raw: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("mappings/purchase-order.cases/three-items.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let forms = sp_nos(202_611_320_001, 2);
    for sp in &forms {
        let mut info = raw["info"].clone();
        info["sp_no"] = sp.clone().into();
        fake.add_approval(info);
    }
    // The first order is in U8 already (entered by hand): U8 answers succeed="101" in GBK.
    let root = u8eai::Root {
        roottag: "purchaseorder".into(),
        billtype: "purchaseorder".into(),
        sender: "999".into(),
        receiver: "u8".into(),
        proc_: "add".into(),
        codeexchanged: "N".into(),
    };
    let hand = u8eai::envelope(
        &root,
        &serde_json::json!({"purchaseorder": {"header": {"code": format!("PO-{}", forms[0])}}}),
    )
    .unwrap();
    reqwest::Client::new()
        .post(&eai)
        .body(hand)
        .send()
        .await
        .unwrap();
    // WeCom's callback names the form's template (采购申请), which routes it to the mapping.
    let xmls = forms
        .iter()
        .map(|sp| {
            samples::callback(CORP_ID, sp, APPROVED, 2)
                .replace("费用报销", "采购申请")
                .replace(
                    "C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT",
                    "3WLJF6naF5wpfHgbcvSgkSp9Zr2TpL6uRzLbDKxd",
                )
        })
        .collect();
    let app = TestApp::new("u8_e2e");
    post_all(&url, xmls, |x| signed(&app, x)).await;
    jobs_in(&admin, "u8", "duplicate", 1).await;
    let delivered = jobs_in(&admin, "u8", "delivered", 1).await;
    assert!(
        delivered[0]["captured"]["number"] == format!("PO-{}", forms[1]).as_str(),
        "{delivered:#?}"
    );
    let received: Vec<String> = server
        .recorded()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        received.len(),
        3,
        "the hand-entered order and one per approved request"
    );
    let order = &received[2];
    assert!(
        order.contains(
            r#"<ufinterface roottag="purchaseorder" billtype="purchaseorder" sender="999""#
        ),
        "{order}"
    );
    assert!(
        order.contains("<inventory_name>显示器</inventory_name>")
            && order.contains("<money>5999.97</money>"),
        "{order}"
    );
    t.stop().await;
    fake.stop().await;
    server.stop().await;
}
