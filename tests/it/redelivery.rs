//! Nothing is sent twice for a form that reached the finance system: after 25 expense claims
//! are booked (20 by callback, 5 that WeCom "dropped" and reconciliation injected), none of
//! these sends a single request more to the target:
//! - WeCom re-delivering the same callbacks (journal dedup);
//! - new callbacks for the same SpNo and status (another `CreateTime`: journaled, routed, and
//!   recognised by the form's lifecycle as forwarded already);
//! - the dropped callbacks arriving late, after reconciliation delivered their forms;
//! - another reconciliation run over the same window (nothing missing, nothing injected).
//!
//! `e2e` covers the plain re-delivery of one callback; this covers the rest at scale, counted
//! at the target in requests, not only vouchers.

use serde_json::Value;
use wecom_bridge::config::Config;

use crate::expense::*;
use crate::support::*;

const BY_CALLBACK: usize = 20;
const DROPPED: usize = 5;
/// `apply_time` of the claims of [`approved_forms`].
const APPLIED: i64 = 1_764_000_000;

/// Outbox, route and the connector's queue are empty: everything journaled was handled.
async fn quiet(t: &TestBridge, connector: &str) {
    let deliver = format!("deliver.{connector}");
    eventually(30, "outbox, route and deliver queues drained", || async {
        let q = t.queues().await;
        let Some(list) = q["queues"].as_array() else {
            return false;
        };
        let empty = |name: &str| {
            list.iter().any(|x| {
                x["queue"] == name
                    && x["ready"] == 0
                    && x["unacked"] == 0
                    && x["delayed"] == 0
                    && x["dead"] == 0
            })
        };
        q["outbox_backlog"] == 0 && empty("route") && empty(&deliver)
    })
    .await;
}

async fn reconcile(t: &TestBridge) -> Value {
    let since = jiff::Timestamp::from_second(APPLIED - 3600).unwrap();
    let until = jiff::Timestamp::from_second(APPLIED + 3600).unwrap();
    let url = format!("http://{}/admin/reconcile", t.admin);
    let (status, body) = post(&url, &format!("since={since}&until={until}"), "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_callbacks_and_reconciliation_send_nothing_more() {
    let stands = Stands::start().await;
    let (fake, finance) = (&stands.fake, &stands.finance);
    let connector = "redeliv_fin";
    let dir = tempfile::tempdir().unwrap();
    let toml = stands.bridge_toml(dir.path(), "redeliv", connector, &[], SHORT_TIERS);
    let t = TestBridge::start_config(Config::from_toml(&toml).unwrap(), dir).await;
    let app = TestApp::new("redeliv");
    let url = t.url(&app.path);
    let sign = |xml: &str| signed(&app, xml);

    let forms = approved_forms(fake, 202_612_030_000, BY_CALLBACK + DROPPED);
    let (by_callback, _) = forms.split_at(BY_CALLBACK);
    let callbacks: Vec<String> = by_callback
        .iter()
        .map(|sp| approved_callback(CORP_ID, sp))
        .collect();
    post_all(&url, callbacks.clone(), sign).await;
    let report = reconcile(&t).await;
    assert_eq!(
        (&report["checked"], &report["missing"], &report["injected"]),
        (
            &Value::from(forms.len()),
            &Value::from(DROPPED),
            &Value::from(DROPPED)
        ),
        "{report}"
    );
    eventually(60, "every form booked once", || async {
        finance.voucher_count() == forms.len()
    })
    .await;
    quiet(&t, connector).await;
    assert_eq!(not_exactly_once(finance, &forms), vec![]);
    let requests = finance.requests().len();
    let journaled = t.events("").await.len();
    assert_eq!(journaled, forms.len());

    // WeCom re-delivers every callback as it was: answered 200, journaled once
    post_all(&url, callbacks.clone(), sign).await;
    // new callbacks for the same SpNo and status (another CreateTime), and the dropped
    // callbacks arriving late
    let later: Vec<String> = forms
        .iter()
        .map(|sp| {
            approved_callback(CORP_ID, sp).replace(
                "<CreateTime>1749106583</CreateTime>",
                "<CreateTime>1749106999</CreateTime>",
            )
        })
        .collect();
    assert!(
        later.iter().all(|x| x.contains("1749106999")),
        "the sample's CreateTime changed"
    );
    post_all(&url, later, sign).await;
    let again = reconcile(&t).await;
    assert_eq!(
        (&again["checked"], &again["missing"], &again["injected"]),
        (&Value::from(forms.len()), &Value::from(0), &Value::from(0)),
        "{again}"
    );
    assert_eq!(
        t.events("").await.len(),
        journaled + forms.len(),
        "the new callbacks were journaled (and so routed), the re-deliveries were not"
    );
    quiet(&t, connector).await;

    assert_eq!(
        finance.requests().len(),
        requests,
        "not one request more reached the target"
    );
    assert_eq!(not_exactly_once(finance, &forms), vec![]);
    let jobs = ledger_jobs(&t.admin.to_string(), connector).await;
    assert_eq!(jobs.len(), forms.len(), "one job per form");
    assert!(jobs.iter().all(|j| j["state"] == "delivered"), "{jobs:#?}");
    t.stop().await;
    stands.stop().await;
}
