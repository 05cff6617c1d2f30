//! `wecom-bridge reroute`: an approval that arrived before its mapping existed is routed
//! again from the journal once the mapping is added, in-process when no bridge runs and
//! through the admin API when one does, and never twice.

use std::time::Duration;

use wecom_bridge::broker::{AnyBroker, Broker, Delivery};
use wecom_bridge::config::Config;
use wecom_bridge::stage::{DeliveryJob, Message};
use wecom_bridge::standins::wecom::FakeWeCom;

use crate::route::{SECRET, config_with_secret, detail};
use crate::support::*;

const SP_NO: &str = "202511300001";
const MAPPING: &str = "connector = \"finance\"\n[match]\nevent = \"approval\"\ntemplate_names = [\"费用报销\"]\nactions = [\"approved\", \"revoked\"]\n";

/// The sample's callback for [`SP_NO`] with `status` (2 approved, 6 revoked after approval).
fn callback(status: u32) -> String {
    crate::route::callback(SP_NO, status, status)
}

async fn start(config: &Config) -> TestBridge {
    TestBridge::start_config(config.clone(), tempfile::tempdir().unwrap()).await
}

async fn embedded(t: &TestBridge) -> wecom_bridge::broker::embedded::EmbeddedBroker {
    for _ in 0..200 {
        if let Some(AnyBroker::Embedded(b)) = t.bridge.as_ref().unwrap().broker() {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the embedded broker did not come up");
}

/// Depth of a queue as (ready, unacked, delayed, dead).
async fn depth<B: Broker>(b: &B, queue: &str) -> (u64, u64, u64, u64) {
    let d = b.depths(&[queue.to_string()]).await.unwrap().remove(0);
    (d.ready, d.unacked, d.delayed, d.dead)
}

/// Waits until every journaled event is in the broker and the route queue is empty (every
/// event routed and acknowledged; its jobs, if any, are published by then).
async fn route_drained<B: Broker>(t: &TestBridge, b: &B) {
    eventually(30, "outbox relayed and route queue drained", || async {
        t.queues().await["outbox_backlog"] == 0 && depth(b, "route").await == (0, 0, 0, 0)
    })
    .await;
}

/// Takes the `n` jobs waiting on `deliver.finance`.
async fn take_jobs<B: Broker>(b: &B, n: usize) -> Vec<DeliveryJob> {
    let mut c = b.consume("deliver.finance").await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("a job that the queue depth counted")
            .unwrap()
            .unwrap();
        match Message::decode(d.envelope()).unwrap() {
            Message::DeliveryJob(job) => out.push(job),
            other => panic!("not a job: {other:?}"),
        }
        d.ack().await.unwrap();
    }
    out
}

fn cli(config: &std::path::Path, cwd: &std::path::Path, env: &[(&str, &str)]) -> String {
    let args = ["reroute", "--since", "1h", "--template", "费用报销"];
    let (ok, out, err) = run_config(config, &args, cwd, env);
    assert!(ok, "reroute failed: {out}{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrouted_approval_and_its_revocation_are_rerouted_once_after_the_mapping_is_added() {
    let fake = FakeWeCom::start().await;
    fake.add_credentials(CORP_ID, SECRET);
    // the detail as it is now: approved, then revoked
    fake.add_approval(detail(SP_NO, 6));

    // The configuration file with relative catalog folders; the CLI runs from elsewhere.
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let toml = config_with_secret(dir.path(), "rr");
    let toml = format!(
        "{toml}\n[wecom]\napi_base_url = \"{}\"\n[reconcile]\nenabled = false\n[catalog]\nmappings_dir = \"mappings\"\nconnectors_dir = \"connectors\"\n",
        fake.base_url()
    );
    let path = config_file(dir.path(), &toml);
    finance_connector(dir.path());
    let config = Config::load(&path).unwrap();
    let app = TestApp::new("rr");

    // 1. No mapping yet: the approval and its revocation are acknowledged and journaled,
    // but not forwarded.
    let t = start(&config).await;
    for status in [2, 6] {
        t.post_callback(&app, &callback(status)).await;
    }
    let broker = embedded(&t).await;
    route_drained(&t, &broker).await;
    assert_eq!(
        depth(&broker, "deliver.finance").await,
        (0, 0, 0, 0),
        "nothing matched, nothing forwarded"
    );
    t.stop().await;

    // 2. The mapping is added; no bridge runs: reroute works on the store in-process.
    std::fs::write(dir.path().join("mappings/expense.toml"), MAPPING).unwrap();
    let out = tokio::task::spawn_blocking({
        let (path, cwd) = (path.clone(), elsewhere.path().to_path_buf());
        move || cli(&path, &cwd, &[])
    })
    .await
    .unwrap();
    assert!(out.contains("re-routed 2 of 2 approval event(s)"), "{out}");

    // 3. The bridge starts and routes them through the lifecycle, in order: the approval,
    // then its compensating revocation; one job each.
    let t = start(&config).await;
    let broker = embedded(&t).await;
    route_drained(&t, &broker).await;
    assert_eq!(depth(&broker, "deliver.finance").await.0, 2, "two jobs");
    let got = take_jobs(&broker, 2).await;
    assert!(got.iter().all(|j| j.business_key == SP_NO), "{got:?}");
    let actions: Vec<&str> = got.iter().map(|j| j.action.as_str()).collect();
    assert_eq!(actions, ["approved", "revoked"]);

    // 4. Again, through the running bridge: both actions are forwarded, nothing is sent.
    let admin = t.admin.to_string();
    let out = tokio::task::spawn_blocking({
        let (path, cwd) = (path.clone(), elsewhere.path().to_path_buf());
        move || cli(&path, &cwd, &[("BRIDGE_ADMIN__LISTEN", admin.as_str())])
    })
    .await
    .unwrap();
    assert!(
        out.contains("re-routed 0 of 2 approval event(s)") && out.contains("2 already forwarded"),
        "{out}"
    );
    route_drained(&t, &broker).await;
    assert_eq!(
        depth(&broker, "deliver.finance").await,
        (0, 0, 0, 0),
        "a forwarded form is not sent twice"
    );
    t.stop().await;
    fake.stop().await;
}
