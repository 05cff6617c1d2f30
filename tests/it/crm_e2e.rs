//! End to end on the embedded broker, with the shipped templates: a signed WeCom callback
//! posted to the ingress, enriched from the WeCom API stand-in, mapped by the template's
//! mapping and delivered by its vendor connector to the HR / CRM stand-in, counted AT THE
//! STAND-IN. Leave → Beisen (the batch polled to its final state; an unknown employee
//! dead-lettered with Beisen's message; an expired token refreshed); a new customer →
//! FxiaoKe and Salesforce (fan-out; FxiaoKe's HTTP 200 business refusal dead-lettered with
//! its message, Salesforce's "already there" counted as delivered; also on RabbitMQ); 100
//! customers to FxiaoKe, 50 at once, on one token (and one more after it expires).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wecom_bridge::deliver::{Connector, Verdict, spec};
use wecom_bridge::standins::{self, wecom::FakeWeCom};

use crate::route::{callback, start_bridge};
use crate::support::*;

const LEAVE: &str = include_str!("../../mappings/leave-hr.cases/sick-leave-hours.json");

/// Copies `templates/<name>` into `dir` with `replace` applied to its connector file, and
/// returns the `[catalog]` section pointing at it.
fn install(dir: &Path, name: &str, connector: &str, replace: &[(&str, String)]) -> String {
    let from = repo().join("templates").join(name);
    let (m, c) = (dir.join("mappings"), dir.join("connectors"));
    copy_dir(&from.join("mappings"), &m);
    std::fs::create_dir_all(&c).unwrap();
    let file = format!("{connector}.toml");
    let text = std::fs::read_to_string(from.join("connectors").join(&file)).unwrap();
    std::fs::write(c.join(&file), edited(&text, replace, &file)).unwrap();
    catalog_section(&m, &c)
}

/// The replacements that point the FxiaoKe template's connector at the stand-in at `base`,
/// with its app secret and permanent code in files under `dir`.
fn fxiaoke_replace(dir: &Path, base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("https://open.fxiaoke.com", base.to_string()),
        ("env:FXIAOKE_APP_SECRET", secret_file(dir, "fx", "fx-e2e")),
        (
            "env:FXIAOKE_PERMANENT_CODE",
            secret_file(dir, "fxp", "perm-e2e"),
        ),
    ]
}

/// Whether `queue` has nothing ready, in flight or delayed, and `dead` dead letters.
async fn idle(t: &TestBridge, queue: &str, dead: u64) -> bool {
    let q = t.queues().await;
    q["queues"].as_array().is_some_and(|l| {
        l.iter().any(|x| {
            x["queue"] == queue
                && x["ready"] == 0
                && x["unacked"] == 0
                && x["delayed"] == 0
                && x["dead"] == dead
        })
    })
}

fn leave_detail(sp_no: &str, user: &str) -> Value {
    let mut info = serde_json::from_str::<Value>(LEAVE).unwrap()["info"].clone();
    info["sp_no"] = sp_no.into();
    info["applyer"]["userid"] = user.into();
    info
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_leave_reaches_beisen_and_an_unknown_employee_is_dead_lettered() {
    let mut state = standins::beisen::BeisenState::default();
    state.app = ("1001".into(), "204402".into(), "bs-e2e-secret".into());
    state.staff.insert(115_000_335); // ZhangSan in the template's staff table; LiSi is not
    let beisen = standins::beisen::start(state).await;
    let dir = tempfile::tempdir().unwrap();
    let section = install(
        dir.path(),
        "beisen-leave",
        "beisen",
        &[
            ("https://openapi.italent.cn", beisen.base_url()),
            (
                "env:BEISEN_SECRET",
                secret_file(dir.path(), "bs", "bs-e2e-secret"),
            ),
            ("poll_interval_ms = 1000", "poll_interval_ms = 50".into()),
        ],
    );
    let fake = FakeWeCom::start().await;
    let (t, app) = start_bridge("beisen_e2e", &fake, &section).await;
    let send = |sp: &'static str| {
        let (q, body) = signed(&app, &callback(sp, 2, 2).replace("费用报销", "请假"));
        let url = t.url(&app.path);
        async move { assert_eq!(post(&url, &q, body).await.0, 200) }
    };

    fake.add_approval(leave_detail("202506090011", "ZhangSan"));
    send("202506090011").await;
    eventually(60, "the leave record reaches Beisen", || async {
        beisen.with(|s| s.records.len()) == 1
    })
    .await;
    // the async batch is polled until final ("Running" first, then "AllSuccess") before the
    // job settles
    eventually(30, "deliver.beisen settles the job", || async {
        beisen.count(wecom_bridge::deliver::vendor::beisen::ASYNC_RESULT_PATH) >= 2
            && idle(&t, "deliver.beisen", 0).await
    })
    .await;
    let record = beisen.with(|s| s.records[0].clone());
    assert_eq!(record["StaffId"], 115_000_335, "{record}");
    assert_eq!(record["VacationType"], "病假");
    assert_eq!(record["StartDateTime"], "2025-06-10 09:00:00");
    assert_eq!(record["StopDateTime"], "2025-06-11 18:00:00");
    assert!(record["Reason"].as_str().unwrap().contains("202506090011"));

    // Beisen accepts the push (HTTP 200, Code 200) and fails the batch: dead-lettered with
    // Beisen's message, nothing recorded at Beisen
    fake.add_approval(leave_detail("202506090012", "LiSi"));
    send("202506090012").await;
    eventually(60, "the refused leave is dead-lettered", || async {
        t.dead_letters("deliver.beisen")
            .await
            .contains("员工不存在")
    })
    .await;
    assert_eq!(beisen.with(|s| s.records.len()), 1);
    assert_eq!(
        beisen.count(wecom_bridge::deliver::vendor::beisen::VACATION_PATH),
        2
    );
    assert_eq!(
        beisen.count(wecom_bridge::deliver::vendor::beisen::TOKEN_PATH),
        1
    );

    // the token expires: the next leave gets 401, a new token, and is pushed once more
    beisen.with(standins::beisen::BeisenState::expire_tokens);
    fake.add_approval(leave_detail("202506090013", "ZhangSan"));
    send("202506090013").await;
    eventually(
        60,
        "the third leave reaches Beisen on a new token",
        || async { beisen.with(|s| s.records.len()) == 2 },
    )
    .await;
    assert_eq!(
        beisen.count(wecom_bridge::deliver::vendor::beisen::TOKEN_PATH),
        2
    );
    assert_eq!(
        beisen.count(wecom_bridge::deliver::vendor::beisen::VACATION_PATH),
        4
    );

    // WeCom re-delivers the first callback: nothing is pushed again
    send("202506090011").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        beisen.count(wecom_bridge::deliver::vendor::beisen::VACATION_PATH),
        4
    );
    assert_eq!(beisen.with(|s| s.records.len()), 2);
    t.stop().await;
    fake.stop().await;
}

fn customer_xml(external_user_id: &str) -> String {
    vector("external_contact_add")["expected"]["plaintext"]
        .as_str()
        .unwrap()
        .replace("wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw", external_user_id)
}

fn contact(external_user_id: &str, name: &str, corp: Option<&str>) -> Value {
    let mut c = json!({"external_userid": external_user_id, "name": name, "type": 1});
    if let Some(corp) = corp {
        c["type"] = 2.into();
        c["corp_full_name"] = corp.into();
        c["corp_name"] = corp.into();
    }
    json!({"external_contact": c,
        "follow_user": [{"userid": "ZhangSan", "remark_mobiles": ["13900000000"], "state": "expo"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_new_customers_reach_fxiaoke_and_salesforce_with_refusals_and_duplicates_settled()
{
    customer_fanout("crm_e2e", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_new_customers_reach_fxiaoke_and_salesforce_with_refusals_and_duplicates_settled()
{
    let prefix = unique("wbcrm");
    customer_fanout("crm_rabbit", &rabbit_section(&prefix)).await;
    let queues = [
        "route",
        "deliver.fxiaoke",
        "deliver.salesforce",
        "writeback",
    ]
    .map(String::from);
    delete_rabbit_queues(&prefix, &queues).await;
}

async fn customer_fanout(name: &str, broker_section: &str) {
    let mut fx_state = standins::fxiaoke::FxiaokeState::default();
    fx_state.app = ("FSAID_0000000".into(), "fx-e2e".into(), "perm-e2e".into());
    fx_state.ea = "fxxxx1".into();
    // the first create is refused in FxiaoKe's way: HTTP 200, a business errorCode
    fx_state
        .reject_next
        .push((43_002, "客户名称已存在，不允许重复".into()));
    let fx = standins::fxiaoke::start(fx_state).await;
    let mut sf_state = standins::salesforce::SalesforceState::default();
    sf_state.client = (
        "3MVG9_replace_with_the_consumer_key".into(),
        "sf-e2e".into(),
    );
    let sf = standins::salesforce::start(sf_state).await;

    let dir = tempfile::tempdir().unwrap();
    let fx_section = install(
        &dir.path().join("fx"),
        "fxiaoke-customer",
        "fxiaoke",
        &fxiaoke_replace(dir.path(), &fx.base_url()),
    );
    let sf_replace = [
        ("https://your-company.my.salesforce.com", sf.base_url()),
        (
            "env:SALESFORCE_CLIENT_SECRET",
            secret_file(dir.path(), "sf", "sf-e2e"),
        ),
    ];
    install(
        &dir.path().join("sf"),
        "salesforce-customer",
        "salesforce",
        &sf_replace,
    );
    // one catalog with both templates: the customer fans out to both CRMs
    let (m, c) = (
        dir.path().join("fx/mappings"),
        dir.path().join("fx/connectors"),
    );
    copy_dir(&dir.path().join("sf/mappings"), &m);
    copy_dir(&dir.path().join("sf/connectors"), &c);
    let section = fx_section;

    // the second customer's Account was already created in Salesforce (by hand, or by an
    // attempt whose answer was lost): its upsert answers 200, which counts as delivered
    let sf_text = std::fs::read_to_string(c.join("salesforce.toml")).unwrap();
    let by_hand = Connector::build(
        spec::parse(Path::new("salesforce.toml"), &sf_text, "salesforce").unwrap(),
    )
    .unwrap();
    let doc = json!({"WeCom_External_Id__c": "wmCustomer2", "Name": "北京示例有限公司"});
    let a = send(&by_hand, &doc, "by-hand").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");

    let fake = FakeWeCom::start().await;
    fake.add_external_contact(contact("wmCustomer1", "李雷", Some("上海某某科技有限公司")));
    fake.add_external_contact(contact("wmCustomer2", "韩梅梅", Some("北京示例有限公司")));
    let (t, app) = start_bridge(name, &fake, &format!("{section}{broker_section}")).await;
    for ext in ["wmCustomer1", "wmCustomer2"] {
        t.post_callback(&app, &customer_xml(ext)).await;
    }

    // FxiaoKe: the first create refused and dead-lettered with FxiaoKe's message; the second
    // created, on one token
    eventually(60, "FxiaoKe's refusal is dead-lettered", || async {
        t.dead_letters("deliver.fxiaoke")
            .await
            .contains("客户名称已存在")
    })
    .await;
    eventually(60, "the second customer reaches FxiaoKe", || async {
        fx.with(|s| s.created().len()) == 1
    })
    .await;
    // which customer's create comes first depends on the broker's scheduling (RabbitMQ may
    // hand the second callback's job over first): the other one is the created one
    let created = fx.with(|s| s.created());
    let names: Vec<Value> = fx
        .recorded()
        .iter()
        .filter(|r| r.path == wecom_bridge::deliver::vendor::fxiaoke::CREATE_PATH)
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["object_data"]["name"].clone()
        })
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_ne!(names[0], names[1], "each customer once: {names:?}");
    assert_eq!(
        created[0]["name"], names[1],
        "the refused first, the other created: {created:?}"
    );
    assert_eq!(created[0]["dataObjectApiName"], "AccountObj");
    assert_eq!(
        fx.count(wecom_bridge::deliver::vendor::fxiaoke::CREATE_PATH),
        2
    );
    assert_eq!(fx.with(|s| s.token_requests()), 1);

    // Salesforce: the first Account created, the second already there (200 → duplicate);
    // two Accounts in all, nothing dead
    eventually(60, "both customers settled at Salesforce", || async {
        sf.recorded().iter().filter(|r| r.method == "PATCH").count() == 3
    })
    .await;
    assert_eq!(sf.with(|s| s.record_count()), 2);
    eventually(
        30,
        "deliver.salesforce drained with nothing dead",
        || async { idle(&t, "deliver.salesforce", 0).await },
    )
    .await;
    assert!(
        !t.dead_letters("deliver.salesforce")
            .await
            .contains("wmCustomer")
    );
    t.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_fxiaoke_deliveries_share_one_token_even_when_it_expires_mid_run() {
    let mut fx_state = standins::fxiaoke::FxiaokeState::default();
    fx_state.app = ("FSAID_0000000".into(), "fx-e2e".into(), "perm-e2e".into());
    fx_state.ea = "fxxxx1".into();
    let fx = standins::fxiaoke::start(fx_state).await;
    // a slow token endpoint: overlapping token requests would show at the stand-in
    fx.set_latency(
        wecom_bridge::deliver::vendor::fxiaoke::TOKEN_PATH,
        Duration::from_millis(300),
    );
    fx.set_latency(
        wecom_bridge::deliver::vendor::fxiaoke::CREATE_PATH,
        Duration::from_millis(50),
    );
    let dir = tempfile::tempdir().unwrap();
    let section = install(
        dir.path(),
        "fxiaoke-customer",
        "fxiaoke",
        &[
            fxiaoke_replace(dir.path(), &fx.base_url()).as_slice(),
            &[
                ("concurrency = 4", "concurrency = 50".into()),
                ("rate_per_sec = 4", "rate_per_sec = 1000".into()),
            ],
        ]
        .concat(),
    );
    let fake = FakeWeCom::start().await;
    for i in 0..100 {
        fake.add_external_contact(contact(&format!("wmBulk{i:03}"), &format!("客户{i}"), None));
    }
    let (t, app) = start_bridge("crm_bulk", &fake, &section).await;
    let post_range = |range: std::ops::Range<usize>| {
        let bodies: Vec<_> = range
            .map(|i| signed(&app, &customer_xml(&format!("wmBulk{i:03}"))))
            .collect();
        let url = t.url(&app.path);
        async move {
            for (q, body) in bodies {
                assert_eq!(post(&url, &q, body).await.0, 200);
            }
        }
    };

    post_range(0..50).await;
    eventually(90, "50 accounts at FxiaoKe", || async {
        fx.with(|s| s.created().len()) == 50
    })
    .await;
    assert_eq!(
        fx.with(|s| s.token_requests()),
        1,
        "one token for 50 deliveries"
    );
    let creating = fx.max_concurrent(wecom_bridge::deliver::vendor::fxiaoke::CREATE_PATH);
    assert!(creating > 1, "deliveries ran concurrently: {creating}");

    // the token expires mid-run: the next deliveries get 20016, one new token serves them all
    fx.with(standins::fxiaoke::FxiaokeState::expire_tokens);
    post_range(50..100).await;
    eventually(90, "100 accounts at FxiaoKe", || async {
        fx.with(|s| s.created().len()) == 100
    })
    .await;
    assert_eq!(fx.with(|s| s.token_requests()), 2);
    assert_eq!(
        fx.max_concurrent(wecom_bridge::deliver::vendor::fxiaoke::TOKEN_PATH),
        1,
        "never two token requests at once"
    );
    assert!(
        !fx.with(|s| s.token_overuse()),
        "≤ 10 token requests a minute"
    );
    eventually(30, "deliver.fxiaoke drained, nothing dead", || async {
        idle(&t, "deliver.fxiaoke", 0).await
    })
    .await;
    let names: std::collections::BTreeSet<String> = fx
        .with(|s| s.created())
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 100, "each customer once");
    t.stop().await;
    fake.stop().await;
}
