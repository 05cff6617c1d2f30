//! End to end, on both brokers: a signed, encrypted approval callback posted to the ingress,
//! enriched from the WeCom API stand-in, mapped by the shipped `expense-voucher` mapping and
//! delivered by the shipped `finance` connector to the finance stand-in (OAuth2 included).
//! Vouchers are counted AT THE TARGET and WeCom notifications (writeback) at the WeCom
//! stand-in; the ledger is checked through the admin API.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
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
    let dir = tempfile::tempdir().unwrap();
    let (m, c) = (dir.path().join("mappings"), dir.path().join("connectors"));
    copy_dir(&repo().join("mappings/tables"), &m.join("tables"));
    std::fs::create_dir_all(&c).unwrap();
    for f in ["expense-voucher.toml", "expense-voucher-reversal.toml"] {
        std::fs::copy(repo().join("mappings").join(f), m.join(f)).unwrap();
    }
    let secret = secret_file(dir.path(), "client", CLIENT_SECRET);
    // the tests' broker tiers (1 s, 2 s)
    let text = edited(
        &shipped_finance(finance, oauth, &secret),
        &[(
            "schedule_secs = [5, 30, 120, 600, 3600]",
            "schedule_secs = [1, 2]",
        )],
        "finance.toml",
    );
    std::fs::write(c.join("finance.toml"), text).unwrap();
    (dir, catalog_section(&m, &c))
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

/// The route, deliver and writeback queues are empty (nothing ready, in flight or dead on
/// finance except `dead_finance`, nothing delayed or dead on writeback).
async fn drained(t: &TestBridge, dead_finance: u64) {
    eventually(
        30,
        "route, deliver.finance and writeback drained",
        || async {
            let q = t.queues().await;
            let Some(list) = q["queues"].as_array() else {
                return false;
            };
            let by = |name: &str| list.iter().find(|x| x["queue"] == name).cloned();
            let (Some(route), Some(fin), Some(wb)) =
                (by("route"), by("deliver.finance"), by("writeback"))
            else {
                return false;
            };
            let idle = |x: &Value| x["ready"] == 0 && x["unacked"] == 0 && x["delayed"] == 0;
            q["outbox_backlog"] == 0
                && route["ready"] == 0
                && route["unacked"] == 0
                && idle(&fin)
                && fin["dead"] == dead_finance
                && idle(&wb)
                && wb["dead"] == 0
        },
    )
    .await;
}

/// Messages WeCom delivered (or, with `received`, was asked to send) whose card or text
/// mentions `sp` and that go to `to`.
fn notes(fake: &FakeWeCom, to: &str, sp: &str, received: bool) -> Vec<Value> {
    let all = if received {
        fake.received_messages()
    } else {
        fake.sent_messages()
    };
    all.into_iter()
        .filter(|m| m["touser"] == to && m.to_string().contains(sp))
        .collect()
}

/// The ledger's notifications of the job of `sp` with `action`, from `deliveries show`.
async fn writebacks_of(t: &TestBridge, sp: &str, action: &str) -> Vec<Value> {
    let found = admin_json(t, &format!("/admin/deliveries/{sp}")).await;
    found
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["job"]["action"] == action)
        .flat_map(|d| d["writebacks"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The WeCom API, OAuth and finance stand-ins, with the shipped catalog pointed at them.
struct StandIns {
    fake: FakeWeCom,
    oauth: OAuthStandIn,
    finance: FinanceStandIn,
    _catalog: tempfile::TempDir,
    /// The `[catalog]` section.
    section: String,
}

impl StandIns {
    async fn start() -> StandIns {
        let fake = FakeWeCom::start().await;
        let oauth = OAuthStandIn::start().await;
        oauth.add_client("wecom-bridge", CLIENT_SECRET);
        let finance = FinanceStandIn::start(Some(oauth.authority())).await;
        let (_catalog, section) = catalog(&finance, &oauth);
        StandIns {
            fake,
            oauth,
            finance,
            _catalog,
            section,
        }
    }

    /// Starts a bridge `name` (see [`start_bridge`]) on the catalog and `broker_section`.
    async fn bridge(&self, name: &str, broker_section: &str) -> (TestBridge, TestApp) {
        let section = &self.section;
        start_bridge(name, &self.fake, &format!("{section}{broker_section}")).await
    }

    async fn stop(self) {
        self.finance.stop().await;
        self.oauth.stop().await;
        self.fake.stop().await;
    }
}

async fn expense_lifecycle(name: &str, broker_section: &str) {
    let stand_ins = StandIns::start().await;
    let (fake, finance) = (&stand_ins.fake, &stand_ins.finance);
    let (t, app) = stand_ins.bridge(name, broker_section).await;
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
    // … and the applicant is told in WeCom, with the captured voucher number
    eventually(30, "the applicant's card reaches WeCom", || async {
        !notes(fake, "ZhangSan", sp, false).is_empty()
    })
    .await;

    // the same callback again (WeCom re-delivers) sends nothing more: no voucher, no card
    send(sp, 2, 2).await;
    drained(&t, 0).await;
    assert_eq!(finance.voucher_count(), 1);
    let cards = notes(fake, "ZhangSan", sp, true);
    assert_eq!(cards.len(), 1, "one card asked of WeCom: {cards:?}");
    let card = &cards[0];
    assert_eq!(card["msgtype"], "textcard");
    assert_eq!(card["agentid"], 1000005);
    assert_eq!(card["enable_duplicate_check"], 1);
    assert_eq!(card["textcard"]["title"], "报销单已入账");
    let text = card["textcard"]["description"].as_str().unwrap();
    assert!(text.contains(&format!("凭证号 {voucher_no}")), "{text}");
    let total = vouchers[0].document["total"].as_str().unwrap();
    assert_eq!(dec(&total.into()), claimed);
    assert!(text.contains(&format!("¥{total}")), "{text}");
    let voucher_id = &vouchers[0].voucher_id;
    assert_eq!(
        card["textcard"]["url"],
        format!("https://finance.example.com/vouchers/{voucher_id}")
    );
    let wbs = writebacks_of(&t, sp, "approved").await;
    assert_eq!(wbs.len(), 1, "{wbs:?}");
    assert_eq!(
        (&wbs[0]["kind"], &wbs[0]["state"]),
        (&"applicant".into(), &"sent".into())
    );
    assert_eq!(wbs[0]["attempts"], 1);
    assert!(wbs[0]["msg_id"].is_string(), "{wbs:?}");

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
    // the operators are told, once, with the reason; the applicant is not
    let ops = notes(fake, "FinanceOps", bad, true);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(notes(fake, "FinanceOps", bad, false).len(), 1);
    assert!(ops[0].to_string().contains("total_mismatch"), "{}", ops[0]);
    assert!(notes(fake, "ZhangSan", bad, true).is_empty());
    let wbs = writebacks_of(&t, bad, "approved").await;
    assert_eq!(
        (&wbs[0]["kind"], &wbs[0]["state"]),
        (&"operator".into(), &"sent".into())
    );

    // WeCom rate-limits the notification (45009): it is retried on the writeback queue and
    // arrives once; the voucher is booked once and never sent again
    let limited = "202511300003";
    fake.add_approval(detail(limited, 2));
    fake.fail_next("message/send", 45009, 1);
    send(limited, 2, 2).await;
    eventually(
        60,
        "the rate-limited card arrives after a retry",
        || async { !notes(fake, "ZhangSan", limited, false).is_empty() },
    )
    .await;
    drained(&t, 1).await;
    assert_eq!(
        notes(fake, "ZhangSan", limited, true).len(),
        2,
        "asked twice"
    );
    assert_eq!(
        notes(fake, "ZhangSan", limited, false).len(),
        1,
        "delivered once"
    );
    assert_eq!(finance.vouchers_for(&format!("EXP-{limited}")), 1);
    assert_eq!(finance.voucher_count(), 3);
    assert_eq!(finance.duplicate_vouchers(), 0);
    let sent = finance
        .requests()
        .iter()
        .filter(|r| r.document_no.as_deref() == Some(&format!("EXP-{limited}")))
        .count();
    assert_eq!(sent, 1, "the document was sent once");
    let wbs = writebacks_of(&t, limited, "approved").await;
    assert_eq!(
        (&wbs[0]["state"], &wbs[0]["attempts"]),
        (&"sent".into(), &2.into())
    );

    t.stop().await;
    stand_ins.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_expense_claims_book_exactly_one_voucher_and_one_reversal() {
    expense_lifecycle("e2e_embedded", SHORT_TIERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_expense_claims_book_exactly_one_voucher_and_one_reversal() {
    let prefix = unique("wbe2e");
    expense_lifecycle("e2e_rabbit", &rabbit_section(&prefix)).await;
    let queues = ["route", "deliver.finance", "writeback"].map(String::from);
    delete_rabbit_queues(&prefix, &queues).await;
}

/// The bridge died after recording a delivery (with its pending notification) and before the
/// writeback job reached the broker: the redelivered job finds the document delivered, sends
/// nothing to the target, and queues the notification, which WeCom receives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_left_pending_by_a_crash_is_sent_once_and_the_voucher_not_again() {
    use wecom_bridge::catalog::Action;
    use wecom_bridge::record::{JobStart, Ledger, Outcome, WritebackKind};
    use wecom_bridge::stage::JobKey;

    let stand_ins = StandIns::start().await;
    let (fake, finance) = (&stand_ins.fake, &stand_ins.finance);
    let (t, app) = stand_ins.bridge("e2e_crash", SHORT_TIERS).await;
    let config = t.config.clone();
    let dir = t.stop().await;

    // what the ledger holds after the crash: delivered, the applicant's card pending
    let sp = "202511300009";
    let key = JobKey::derive("e2e_crash", sp, "expense-voucher", Action::Approved);
    // the stopped bridge's last blocking store calls may still be finishing: poll the lock
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let store = loop {
        match wecom_bridge::store::Store::open(&config.store.path, test_sealer()) {
            Err(wecom_bridge::store::StoreError::Locked { .. })
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other.unwrap(),
        }
    };
    let ledger = Ledger::embedded(store);
    let start = JobStart {
        key: key.to_string(),
        connector: "finance".into(),
        mapping: "expense-voucher".into(),
        action: "approved".into(),
        business_key: sp.into(),
        app: "e2e_crash".into(),
        event_id: "evt_crash".into(),
        at_ms: now() * 1000,
    };
    ledger.begin(start).await.unwrap();
    let card = serde_json::json!({"touser": "ZhangSan", "msgtype": "textcard",
        "textcard": {"title": "报销单已入账", "description": format!("审批单号 {sp} 凭证号 JZ-9"),
                     "url": "https://finance.example.com/vouchers/9"},
        "enable_duplicate_check": 1, "duplicate_check_interval": 14400});
    let sent = card.clone();
    let (_, pending) = ledger
        .finish_and_notify(
            key.as_str(),
            Outcome::Delivered,
            now() * 1000,
            WritebackKind::Applicant,
            move |_| Some(sent),
        )
        .await
        .unwrap();
    assert!(pending);
    drop(ledger);

    let t = TestBridge::start_config(config, dir).await;
    fake.add_approval(detail(sp, 2));
    t.post_callback(&app, &callback(sp, 2, 2)).await;
    eventually(60, "the pending card reaches WeCom", || async {
        !notes(fake, "ZhangSan", sp, false).is_empty()
    })
    .await;
    drained(&t, 0).await;
    let got = notes(fake, "ZhangSan", sp, true);
    assert_eq!(got.len(), 1, "{got:?}");
    let mut expected = card;
    expected["agentid"] = 1000005.into();
    assert_eq!(got[0], expected);
    assert_eq!(
        finance.requests().len(),
        0,
        "the delivered document was not sent again"
    );
    let wbs = writebacks_of(&t, sp, "approved").await;
    assert_eq!(
        (&wbs[0]["state"], &wbs[0]["attempts"]),
        (&"sent".into(), &1.into())
    );

    t.stop().await;
    stand_ins.stop().await;
}

/// The finance system is down for longer than the connector's attempts: the job is parked,
/// the ledger says dead and the operators are told; after the outage an operator replays it,
/// the voucher is booked once and the applicant is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_out_of_attempts_is_dead_notified_and_after_replay_delivered_and_notified() {
    let stand_ins = StandIns::start().await;
    let (fake, finance) = (&stand_ins.fake, &stand_ins.finance);
    let connector = stand_ins._catalog.path().join("connectors/finance.toml");
    let text = std::fs::read_to_string(&connector).unwrap();
    assert!(text.contains("max_attempts = 8"));
    std::fs::write(
        &connector,
        text.replace("max_attempts = 8", "max_attempts = 2"),
    )
    .unwrap();
    let (t, app) = stand_ins.bridge("e2e_outage", SHORT_TIERS).await;

    finance.set_outage(true);
    let sp = "202511300020";
    fake.add_approval(detail(sp, 2));
    t.post_callback(&app, &callback(sp, 2, 2)).await;
    eventually(60, "the operators are told the job is parked", || async {
        !notes(fake, "FinanceOps", sp, false).is_empty()
    })
    .await;
    drained(&t, 1).await;
    let jobs = jobs_of(&t, sp).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["state"], "dead", "the ledger matches the parking");
    assert_eq!(jobs[0]["attempts"], 2);
    let ops = notes(fake, "FinanceOps", sp, true);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(
        ops[0].to_string().contains("(after 2 attempts"),
        "{}",
        ops[0]
    );
    assert!(notes(fake, "ZhangSan", sp, true).is_empty());
    assert_eq!(finance.voucher_count(), 0);

    // the outage ends; the operator replays the parked job
    finance.set_outage(false);
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/admin/replay?queue=deliver.finance&all=true",
            t.admin
        ))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    eventually(60, "the applicant is told after the replay", || async {
        !notes(fake, "ZhangSan", sp, false).is_empty()
    })
    .await;
    drained(&t, 0).await;
    assert_eq!(finance.vouchers_for(&format!("EXP-{sp}")), 1);
    assert_eq!(finance.duplicate_vouchers(), 0);
    assert_eq!(notes(fake, "ZhangSan", sp, true).len(), 1);
    assert_eq!(notes(fake, "FinanceOps", sp, true).len(), 1, "told once");
    let mut kinds: Vec<(String, String)> = writebacks_of(&t, sp, "approved")
        .await
        .iter()
        .map(|w| (w["kind"].to_string(), w["state"].to_string()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("\"applicant\"".into(), "\"sent\"".into()),
            ("\"operator\"".into(), "\"sent\"".into())
        ]
    );

    t.stop().await;
    stand_ins.stop().await;
}
