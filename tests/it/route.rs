//! The route stage against the WeCom API test server: enrichment, lifecycle, fan-out to the
//! deliver queue, and reconciliation of missed callbacks, on both broker back ends.

use std::time::Duration;

use serde_json::Value;
use wecom_bridge::broker::{AnyBroker, Broker, Delivery};
use wecom_bridge::map::input::MapInput;
use wecom_bridge::stage::{DeliveryJob, Message};
use wecom_bridge::standins::wecom::FakeWeCom;

use crate::support::*;

/// The API secret of the apps that [`start_bridge`] starts.
pub(crate) const SECRET: &str = "fake-app-secret-for-tests";
const EXPENSE: &str = include_str!("../fixtures/wecom/approval_detail_expense.json");

pub(crate) fn detail(sp_no: &str, status: u32) -> Value {
    let mut info = serde_json::from_str::<Value>(EXPENSE).unwrap()["info"].clone();
    info["sp_no"] = sp_no.into();
    info["sp_status"] = status.into();
    info
}

/// The approval callback of the sample, for `sp_no` with `status` and change event `change`.
pub(crate) fn callback(sp_no: &str, status: u32, change: u32) -> String {
    wecom_bridge::cli::demo::samples::callback(CORP_ID, sp_no, status, change)
}

fn extra(fake: &FakeWeCom, broker: &str) -> String {
    format!(
        "[wecom]\napi_base_url = \"{}\"\n[reconcile]\nenabled = false\n{broker}",
        fake.base_url()
    )
}

/// Collects the delivery jobs on `deliver.<connector>` for up to `wait`.
pub(crate) async fn jobs(
    broker: &AnyBroker,
    connector: &str,
    want: usize,
    wait: Duration,
) -> Vec<DeliveryJob> {
    async fn take<B: Broker>(b: &B, q: &str, want: usize, wait: Duration) -> Vec<DeliveryJob> {
        let mut c = b.consume(q).await.unwrap();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < want {
            match tokio::time::timeout_at(deadline, c.next()).await {
                Ok(Some(Ok(d))) => {
                    assert_eq!(d.envelope().kind, "delivery_job");
                    assert_eq!(d.envelope().v, wecom_bridge::broker::ENVELOPE_VERSION);
                    match Message::decode(d.envelope()).unwrap() {
                        Message::DeliveryJob(job) => out.push(job),
                        other => panic!("not a job: {other:?}"),
                    }
                    d.ack().await.unwrap();
                }
                Ok(other) => panic!("consumer ended: {:?}", other.map(|r| r.err())),
                Err(_) => break,
            }
        }
        out
    }
    let q = format!("deliver.{connector}");
    match broker {
        AnyBroker::Embedded(b) => take(b, &q, want, wait).await,
        AnyBroker::Rabbitmq(b) => take(b, &q, want, wait).await,
    }
}

/// On RabbitMQ, deletes the route and `deliver.finance` queues the test's bridge declared.
pub(crate) async fn remove_rabbit_queues(broker: &AnyBroker) {
    if let AnyBroker::Rabbitmq(b) = broker {
        b.delete_queues(&["route".into(), "deliver.finance".into(), "writeback".into()])
            .await
            .unwrap();
    }
}

pub(crate) async fn broker_of(t: &TestBridge) -> AnyBroker {
    for _ in 0..200 {
        if let Some(b) = t.bridge.as_ref().unwrap().broker() {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("broker did not come up (RabbitMQ running? `rabbitmq-server -detached`)");
}

/// A catalog of one mapping `mapping` (with this `[match]` body) feeding connector
/// `connector`; returns it and the `[catalog]` section pointing at it.
pub(crate) fn one_mapping_catalog(
    connector: &str,
    mapping: &str,
    match_body: &str,
) -> (tempfile::TempDir, String) {
    let catalog = tempfile::tempdir().unwrap();
    let (m, c) = (
        catalog.path().join("mappings"),
        catalog.path().join("connectors"),
    );
    std::fs::create_dir_all(&m).unwrap();
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join(format!("{connector}.toml")),
        format!(
            "kind = \"http\"\nurl = \"env:{}_URL\"\n",
            connector.to_uppercase()
        ),
    )
    .unwrap();
    std::fs::write(
        m.join(format!("{mapping}.toml")),
        format!("connector = \"{connector}\"\n[match]\n{match_body}\n"),
    )
    .unwrap();
    let section = catalog_section(&m, &c);
    (catalog, section)
}

/// Starts a bridge serving app `name` with an API secret, talking to `fake`; `broker_section`
/// is more configuration (a `[broker]`, `[stages.*]` or `[catalog]` section).
pub(crate) async fn start_bridge(
    name: &str,
    fake: &FakeWeCom,
    broker_section: &str,
) -> (TestBridge, TestApp) {
    fake.add_credentials(CORP_ID, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n{}",
        config_with_secret(dir.path(), name),
        extra(fake, broker_section)
    );
    let config = wecom_bridge::config::Config::from_toml(&toml).unwrap();
    let t = TestBridge::start_config(config, dir).await;
    (t, TestApp::new(name))
}

/// [`config_toml`] for app `name`, with the API secret that [`start_bridge`] gives the fake
/// WeCom; `config_toml` writes the app section, the secret goes into it.
pub(crate) fn config_with_secret(dir: &std::path::Path, name: &str) -> String {
    with_api_secret(
        &config_toml(dir, &[TestApp::new(name)]),
        name,
        SECRET,
        1_000_005,
    )
}

/// Starts a bridge `name` with one mapping `mapping` (matching `match_body`) that feeds
/// `connector`, posts the callback of test vector `vector`, and returns the one job it makes
/// (and the catalog folder, which must outlive the bridge).
pub(crate) async fn one_job_from_vector(
    fake: &FakeWeCom,
    name: &str,
    (connector, mapping, match_body): (&str, &str, &str),
    vector_id: &str,
) -> (TestBridge, DeliveryJob, tempfile::TempDir) {
    let (catalog, section) = one_mapping_catalog(connector, mapping, match_body);
    let (t, app) = start_bridge(name, fake, &section).await;
    let xml = vector(vector_id)["expected"]["plaintext"]
        .as_str()
        .unwrap()
        .to_string();
    t.post_callback(&app, &xml).await;
    let broker = broker_of(&t).await;
    let mut got = jobs(&broker, connector, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    (t, got.remove(0), catalog)
}

async fn approval_produces_a_job_with_the_normalised_instance(name: &str, broker_section: &str) {
    let fake = FakeWeCom::start().await;
    fake.add_approval(detail("202506050012", 2));
    let (t, app) = start_bridge(name, &fake, broker_section).await;
    let broker = broker_of(&t).await;
    t.post_callback(&app, &callback("202506050012", 2, 2)).await;
    let jobs = jobs(&broker, "finance", 1, Duration::from_secs(30)).await;
    assert_eq!(jobs.len(), 1, "one job for the one matching mapping");
    let job = &jobs[0];
    assert_eq!(job.mapping, "expense-voucher");
    assert_eq!(job.connector, "finance");
    assert_eq!(job.business_key, "202506050012");
    assert!(job.key.as_str().starts_with("job_"));
    assert!(
        matches!(job.input, MapInput::Approval(_)),
        "a typed approval input"
    );
    let doc = &job.input.to_value();
    assert_eq!(doc["sp_no"], "202506050012");
    assert_eq!(doc["status_name"], "approved");
    assert!(
        doc["apply_time"].as_str().unwrap().ends_with("+08:00"),
        "{}",
        doc["apply_time"]
    );
    assert!(
        doc["form_by_title"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(!doc.to_string().contains("e+"), "no floats in the document");
    assert_eq!(fake.calls("getapprovaldetail"), 1);
    assert_eq!(fake.calls("gettoken"), 1);
    remove_rabbit_queues(&broker).await;
    t.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_approval_becomes_a_delivery_job() {
    approval_produces_a_job_with_the_normalised_instance("route_emb", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_approval_becomes_a_delivery_job() {
    let prefix = unique("wbroute");
    approval_produces_a_job_with_the_normalised_instance("route_rmq", &rabbit_section(&prefix))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_forwards_exactly_one_approved_and_one_revoked_job() {
    let fake = FakeWeCom::start().await;
    let sp = "202506059999";
    let (t, app) = start_bridge("lifecycle", &fake, "").await;
    let broker = broker_of(&t).await;
    let send = |status: u32, change: u32| {
        let (q, body) = signed(&app, &callback(sp, status, change));
        let url = t.url(&app.path);
        async move { assert_eq!(post(&url, &q, body).await.0, 200) }
    };
    fake.add_approval(detail(sp, 1));
    send(1, 1).await; // submitted
    send(1, 2).await; // approver 1 agreed, form still in progress
    t.route_settled().await;
    fake.add_approval(detail(sp, 2));
    send(2, 2).await; // approved
    let first = jobs(&broker, "finance", 1, Duration::from_secs(30)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].action.as_str(), "approved");
    fake.add_approval(detail(sp, 10));
    send(2, 10).await; // comment added on the approved form
    send(10, 2).await; // paid
    t.route_settled().await;
    fake.add_approval(detail(sp, 6));
    send(6, 8).await; // revoked after approval
    send(6, 10).await; // another event on the revoked form
    let rest = jobs(&broker, "finance", 3, Duration::from_secs(8)).await;
    assert_eq!(rest.len(), 1, "exactly one more job: {rest:?}");
    assert_eq!(rest[0].action.as_str(), "revoked");
    assert_ne!(rest[0].key, first[0].key);
    assert_eq!(
        t.events("").await.len(),
        7,
        "every event is journaled, only two are forwarded"
    );
    t.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_lagging_behind_the_callback_is_retried_until_it_catches_up() {
    let fake = FakeWeCom::start().await;
    let sp = "202506058888";
    fake.add_approval(detail(sp, 1)); // the detail still says "in progress"
    let (t, app) = start_bridge("lagging", &fake, "").await;
    let broker = broker_of(&t).await;
    t.post_callback(&app, &callback(sp, 2, 2)).await;
    eventually(20, "a first detail fetch", || async {
        fake.calls("getapprovaldetail") >= 1
    })
    .await;
    assert!(
        jobs(&broker, "finance", 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "no job while the detail lags"
    );
    fake.add_approval(detail(sp, 2));
    let got = jobs(&broker, "finance", 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert!(fake.calls("getapprovaldetail") >= 2);
    t.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_without_an_api_secret_is_parked_with_the_fix_in_the_reason() {
    let t = TestBridge::start(&[TestApp::new("nosecret")]).await;
    let app = TestApp::new("nosecret");
    t.post_callback(&app, &callback("202506057777", 2, 2)).await;
    eventually(30, "the event parked as a dead letter", || async {
        t.dead_letters("route")
            .await
            .contains("apps.nosecret.secret is not configured")
    })
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_injects_exactly_the_missed_approvals_once() {
    let fake = FakeWeCom::start().await;
    let (t, app) = start_bridge("recon", &fake, "").await;
    let base_time = 1_750_000_000i64;
    for i in 0..250 {
        let mut info = detail(&format!("2025070{i:05}"), 2);
        info["apply_time"] = (base_time + i as i64 * 60).into();
        info["sp_name"] = "请假".into(); // no mapping routes leave, so the route stage only records
        fake.add_approval(info);
    }
    // 240 of them arrived as callbacks; 10 were dropped by WeCom
    let missed: Vec<usize> = (0..250).filter(|i| i % 25 == 7).collect();
    assert_eq!(missed.len(), 10);
    let client = reqwest::Client::new();
    for i in (0..250).filter(|i| !missed.contains(i)) {
        let xml = callback(&format!("2025070{i:05}"), 2, 2).replace("费用报销", "请假");
        let (q, body) = signed(&app, &xml);
        let resp = client
            .post(format!("{}?{q}", t.url(&app.path)))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let since = jiff::Timestamp::from_second(base_time - 3600).unwrap();
    let until = jiff::Timestamp::from_second(base_time + 250 * 60 + 3600).unwrap();
    let url = format!(
        "http://{}/admin/reconcile?since={since}&until={until}",
        t.admin
    );
    let report = post_json(&url).await;
    assert_eq!(report["checked"], 250, "{report}");
    assert_eq!(report["missing"], 10, "{report}");
    assert_eq!(report["injected"], 10, "{report}");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    assert!(
        fake.calls("getapprovalinfo") >= 3,
        "250 forms take three pages of 100"
    );
    let injected: Vec<Value> = t
        .events("")
        .await
        .into_iter()
        .filter(|e| e["source"] == "reconcile")
        .collect();
    assert_eq!(injected.len(), 10);
    let mut keys: Vec<String> = injected
        .iter()
        .map(|e| e["business_key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    let mut want: Vec<String> = missed.iter().map(|i| format!("2025070{i:05}:2")).collect();
    want.sort();
    assert_eq!(keys, want);
    let again = post_json(&url).await;
    assert_eq!(
        (again["missing"].as_u64(), again["injected"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    t.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_cli_injects_missed_approvals_without_a_running_bridge() {
    let fake = FakeWeCom::start().await;
    fake.add_credentials(CORP_ID, SECRET);
    let base_time = 1_751_000_000i64;
    for i in 0..5 {
        let mut info = detail(&format!("2025080{i:05}"), 2);
        info["apply_time"] = (base_time + i as i64).into();
        fake.add_approval(info);
    }
    let dir = tempfile::tempdir().unwrap();
    let toml = config_with_secret(dir.path(), "recli");
    let config = config_file(dir.path(), &format!("{toml}\n{}", extra(&fake, "")));
    let cfg = config.to_str().unwrap();
    let since = jiff::Timestamp::from_second(base_time - 60)
        .unwrap()
        .to_string();
    let until = jiff::Timestamp::from_second(base_time + 60)
        .unwrap()
        .to_string();
    let args = [
        "--config",
        cfg,
        "reconcile",
        "--since",
        since.as_str(),
        "--until",
        until.as_str(),
    ];
    let cwd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (ok, out, err) = run_cli_async(&args, cwd).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("5 approved form(s) checked, 5 missing, 5 injected"),
        "{out}"
    );
    let (ok, out, err) = run_cli_async(&args, cwd).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("5 approved form(s) checked, 0 missing, 0 injected"),
        "{out}"
    );
    let (ok, out, _) = run_cli(&["--config", cfg, "events", "--json"], cwd, &[]);
    assert!(ok);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("\"source\":\"reconcile\""))
            .count(),
        5,
        "{out}"
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_events_route_to_crm_with_the_customer_record() {
    let fake = FakeWeCom::start().await;
    fake.add_credentials(CORP_ID, SECRET);
    fake.add_external_contact(serde_json::json!({
        "external_contact": {"external_userid": "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw", "name": "李客户", "type": 1},
        "follow_user": [{"userid": "ZhangSan", "state": "expo2025_booth_b12"}]
    }));
    let (t, job, _catalog) = one_job_from_vector(
        &fake,
        "crm_app",
        (
            "crm",
            "new-customers",
            "event = \"external_contact\"\nchange_types = [\"add_external_contact\"]",
        ),
        "external_contact_add",
    )
    .await;
    assert_eq!(job.action.as_str(), "changed");
    let MapInput::Customer(customer) = &job.input else {
        panic!("not a typed customer input: {:?}", job.input)
    };
    assert!(customer.customer_fetched);
    let doc = job.input.to_value();
    assert_eq!(doc["name"], "李客户", "{doc}");
    assert_eq!(
        doc["external_user_id"], "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw",
        "{doc}"
    );
    assert_eq!(doc["change_type"], "add_external_contact");
    assert_eq!(
        doc["follow_users"][0]["state"], "expo2025_booth_b12",
        "{doc}"
    );
    t.stop().await;
    fake.stop().await;
}
