//! End to end, on both brokers: a signed, encrypted approval callback posted to the ingress,
//! enriched from the WeCom API stand-in, mapped by the shipped `expense-voucher` mapping and
//! delivered by the shipped `finance` connector to the finance stand-in (OAuth2 included).
//! Vouchers are counted AT THE TARGET; the ledger is checked through the admin API.

use std::path::Path;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitOptions};
use wecom_bridge::standins::finance::FinanceStandIn;
use wecom_bridge::standins::oauth::OAuthStandIn;
use wecom_bridge::standins::wecom::FakeWeCom;

use crate::route::{callback, detail, start_bridge};
use crate::support::*;

const CLIENT_SECRET: &str = "cs-e2e-0a1b2c3d4e5f-client-secret";

/// The shipped expense mappings and finance connector, pointed at the stand-ins with retry
/// delays of the tests' broker tiers; returns the
/// folder and the `[catalog]` section.
fn catalog(finance: &FinanceStandIn, oauth: &OAuthStandIn) -> (tempfile::TempDir, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let (m, c) = (dir.path().join("mappings"), dir.path().join("connectors"));
    std::fs::create_dir_all(m.join("tables")).unwrap();
    std::fs::create_dir_all(&c).unwrap();
    for f in ["expense-voucher.toml", "expense-voucher-reversal.toml"] {
        std::fs::copy(repo.join("mappings").join(f), m.join(f)).unwrap();
    }
    for entry in std::fs::read_dir(repo.join("mappings/tables")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), m.join("tables").join(entry.file_name())).unwrap();
    }
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let mut text = std::fs::read_to_string(repo.join("connectors/finance.toml")).unwrap();
    for (from, to) in [
        ("env:FINANCE_VOUCHER_URL", finance.vouchers_url()),
        ("env:FINANCE_TOKEN_URL", oauth.token_url()),
        (
            "env:FINANCE_CLIENT_SECRET",
            format!("file:{}", secret.display()),
        ),
        // the tests' broker tiers (1 s, 2 s)
        (
            "schedule_secs = [5, 30, 120, 600, 3600]",
            "schedule_secs = [1, 2]".to_string(),
        ),
    ] {
        assert!(text.contains(from), "finance.toml has no `{from}`");
        text = text.replace(from, &to);
    }
    std::fs::write(c.join("finance.toml"), text).unwrap();
    let section = format!(
        "[catalog]\nmappings_dir = \"{}\"\nconnectors_dir = \"{}\"\n",
        m.display(),
        c.display()
    );
    (dir, section)
}

async fn admin_json(t: &TestBridge, path: &str) -> Value {
    let resp = reqwest::get(format!("http://{}{path}", t.admin))
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// The ledger's jobs of one SpNo.
async fn jobs_of(t: &TestBridge, sp: &str) -> Vec<Value> {
    let v = admin_json(t, &format!("/admin/deliveries?sp_no={sp}")).await;
    v["jobs"].as_array().cloned().unwrap_or_default()
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.to_string().parse().unwrap(),
    }
}

/// Sums debit and credit of a voucher's lines.
fn sums(doc: &Value) -> (Decimal, Decimal) {
    let lines = doc["lines"].as_array().expect("voucher lines");
    assert!(lines.len() >= 2, "{doc}");
    lines
        .iter()
        .fold((Decimal::ZERO, Decimal::ZERO), |(d, c), l| {
            assert!(l["account"].is_string(), "{l}");
            (d + dec(&l["debit"]), c + dec(&l["credit"]))
        })
}

/// Both deliver and route queues are empty (nothing ready, in flight or dead on finance
/// except `dead_finance`).
async fn drained(t: &TestBridge, dead_finance: u64) {
    eventually(30, "route and deliver.finance drained", || async {
        let q = t.queues().await;
        let Some(list) = q["queues"].as_array() else {
            return false;
        };
        let by = |name: &str| list.iter().find(|x| x["queue"] == name).cloned();
        let (Some(route), Some(fin)) = (by("route"), by("deliver.finance")) else {
            return false;
        };
        q["outbox_backlog"] == 0
            && route["ready"] == 0
            && route["unacked"] == 0
            && fin["ready"] == 0
            && fin["unacked"] == 0
            && fin["delayed"] == 0
            && fin["dead"] == dead_finance
    })
    .await;
}

async fn expense_lifecycle(name: &str, broker_section: &str) {
    let fake = FakeWeCom::start().await;
    let oauth = OAuthStandIn::start().await;
    oauth.add_client("wecom-bridge", CLIENT_SECRET);
    let finance = FinanceStandIn::start(Some(oauth.authority())).await;
    let (_catalog, section) = catalog(&finance, &oauth);
    let (t, app) = start_bridge(name, &fake, &format!("{section}{broker_section}")).await;
    let send = |sp: &str, status: u32, change: u32| {
        let (q, body) = signed(&app, &callback(sp, status, change));
        let url = t.url(&app.path);
        async move { assert_eq!(post(&url, &q, body).await.0, 200) }
    };

    // approved → exactly one balanced voucher at the target, its number in the ledger
    let sp = "202511300001";
    let info = detail(sp, 2);
    let claimed = info["apply_data"]["contents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"][0]["text"] == "报销总额")
        .map(|c| dec(&c["value"]["new_money"]))
        .unwrap();
    fake.add_approval(info);
    send(sp, 2, 2).await;
    let doc_no = format!("EXP-{sp}");
    eventually(60, "the voucher reaches the finance stand-in", || async {
        finance.vouchers_for(&doc_no) == 1
    })
    .await;
    let vouchers = finance.vouchers();
    assert_eq!(vouchers.len(), 1);
    let (debit, credit) = sums(&vouchers[0].document);
    assert_eq!(debit, credit, "balanced: {}", vouchers[0].document);
    assert_eq!(debit, claimed, "the voucher books the claimed total");
    let voucher_no = vouchers[0].voucher_no.clone();
    eventually(30, "the ledger records the delivery", || async {
        jobs_of(&t, sp).await.iter().any(|j| {
            j["state"] == "delivered" && j["captured"]["voucher_no"] == voucher_no.as_str()
        })
    })
    .await;

    // the same callback again (WeCom re-delivers) sends nothing more
    send(sp, 2, 2).await;
    drained(&t, 0).await;
    assert_eq!(finance.voucher_count(), 1);

    // revoked after approval → exactly one reversing voucher, beside the original
    fake.add_approval(detail(sp, 6));
    send(sp, 6, 8).await;
    let reversal = format!("EXP-R-{sp}");
    eventually(60, "the reversing voucher arrives", || async {
        finance.vouchers_for(&reversal) == 1
    })
    .await;
    send(sp, 6, 10).await;
    drained(&t, 0).await;
    assert_eq!(finance.voucher_count(), 2);
    assert_eq!(finance.duplicate_vouchers(), 0);
    let rev = finance
        .vouchers()
        .into_iter()
        .find(|v| v.document_no == reversal)
        .unwrap();
    assert_eq!(sums(&rev.document), (claimed, claimed));

    // a form whose rows do not add up to its total: refused by the mapping, parked with the
    // refusal code, nothing sent
    let bad = "202511300002";
    let mut info = detail(bad, 2);
    for c in info["apply_data"]["contents"].as_array_mut().unwrap() {
        if c["title"][0]["text"] == "报销总额" {
            c["value"]["new_money"] = "1.00".into();
        }
    }
    fake.add_approval(info);
    send(bad, 2, 2).await;
    eventually(30, "the refused job is dead in the ledger", || async {
        jobs_of(&t, bad).await.iter().any(|j| {
            j["state"] == "dead"
                && j["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("total_mismatch"))
        })
    })
    .await;
    drained(&t, 1).await;
    let dead = admin_json(&t, "/admin/dead-letters?queue=deliver.finance").await;
    assert!(dead.to_string().contains("total_mismatch"), "{dead}");
    assert_eq!(finance.vouchers_for(&format!("EXP-{bad}")), 0);
    assert_eq!(
        finance.voucher_count(),
        2,
        "nothing more reached the target"
    );

    t.stop().await;
    finance.stop().await;
    oauth.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_expense_claims_book_exactly_one_voucher_and_one_reversal() {
    expense_lifecycle("e2e_embedded", "[broker]\nretry_tiers_secs = [1, 2]\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_expense_claims_book_exactly_one_voucher_and_one_reversal() {
    let prefix = format!("wbe2e-{:08x}", rand::random::<u32>());
    expense_lifecycle("e2e_rabbit", &rabbit_section(&prefix)).await;
    let own = RabbitBroker::connect(
        &amqp_url(),
        RabbitOptions {
            prefix: prefix.clone(),
            prefetch: 8,
            retry_tiers: vec![Duration::from_secs(1)],
            delivery_limit: 20,
            queues: vec![],
        },
    )
    .await
    .unwrap();
    own.delete_queues(&["route".to_string(), "deliver.finance".to_string()])
        .await
        .unwrap();
    own.close().await;
}
