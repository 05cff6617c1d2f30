//! The fault matrix: 500 approved expense claims through the real pipeline (signed, encrypted
//! callbacks into ingress → WeCom API stand-in → route → the shipped `expense-voucher`
//! mapping → the shipped finance connector) into a finance stand-in that fails in every way
//! real targets do, while a second target (another connector) gets every claim too:
//!
//! - 10% 500s, 5% committed-then-500 (the retry is answered "already exists" and counts as
//!   delivered), 5% answers slower than the connector's timeout (committed first), 429 with
//!   `Retry-After` (honoured: the next request for that document comes no sooner), every
//!   OAuth token expired mid-run (refreshed on the 401);
//! - "200 with an error code" for some documents: dead-lettered with the target's code and
//!   message; after the target is fixed, `wecom-bridge replay` delivers them;
//! - a full outage of the finance system, longer than several retry tiers (shortened to 1 s
//!   and 2 s), during which the second connector keeps delivering and the finance connector's
//!   circuit opens instead of burning retries.
//!
//! Counted AT THE TARGETS: vouchers = approved forms, each document exactly once; and the
//! bridge's own books (ledger states and attempts, attempt metrics, dead letters) agree with
//! what the target saw, request by request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wecom_bridge::config::Config;
use wecom_bridge::standins::finance::{FinanceStandIn, Outcome};
use wecom_bridge::standins::wecom::FakeWeCom;

use crate::expense::*;
use crate::support::*;

/// Approved forms in all.
const FORMS: usize = 500;
/// Of those, sent while the finance system is down.
const DURING_OUTAGE: usize = 100;
/// Every n-th form of the first phase is refused by the target with a business error code.
const REFUSE_EVERY: usize = 40;
/// The shortest the outage lasts: several of the shortened retry tiers (1 s, 2 s).
const OUTAGE_AT_LEAST: Duration = Duration::from_secs(8);
/// Slow answers: they outlast the connector's timeout (1 s, set in [`EDITS`]).
const SLOW: Duration = Duration::from_millis(1500);
/// The refusal: HTTP 200 with a business error code in the body.
const REFUSAL_CODE: &str = "E_ACCOUNT_FROZEN";
const REFUSAL_MESSAGE: &str = "费用科目 6602.03 已冻结 (account frozen for period close)";
/// `Retry-After` of the rate-limited answers, seconds: longer than the first scheduled delay.
const RETRY_AFTER_SECS: u64 = 2;

/// The shipped finance connector with the test's short timeout, retry tiers and circuit
/// cool-down; its attempts (8) and circuit threshold (5) stay as shipped.
const EDITS: &[(&str, &str)] = &[
    ("connect_ms = 2000", "connect_ms = 500"),
    ("total_ms = 10000", "total_ms = 1000"),
    SHORT_RETRIES,
    ("cool_down_secs = 30", "cool_down_secs = 1"),
];

fn outcome_counts(finance: &FinanceStandIn) -> HashMap<Outcome, usize> {
    let mut n = HashMap::new();
    for r in finance.requests() {
        *n.entry(r.outcome).or_default() += 1;
    }
    n
}

async fn fault_matrix(name: &str, first_sp: u64, broker_section: &str) {
    let fake = FakeWeCom::start().await;
    let (finance, oauth) = start_target().await;
    let (archive, archive_oauth) = start_target().await;
    let (fin, arc) = (format!("{name}_fin"), format!("{name}_arc"));
    let catalog_dir = tempfile::tempdir().unwrap();
    let section = write_catalog(
        catalog_dir.path(),
        &[
            Target {
                name: &fin,
                finance: &finance,
                oauth: &oauth,
            },
            Target {
                name: &arc,
                finance: &archive,
                oauth: &archive_oauth,
            },
        ],
        EDITS,
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = bridge_toml(
        dir.path(),
        name,
        &fake,
        &format!("{section}{broker_section}"),
    );
    let t = TestBridge::start_config(Config::from_toml(&toml).unwrap(), dir).await;
    let app = TestApp::new(name);
    let admin = t.admin.to_string();
    let url = t.url(&app.path);
    let sign = |xml: &str| signed(&app, xml);

    let forms = approved_forms(&fake, first_sp, FORMS);
    let (before, during) = forms.split_at(FORMS - DURING_OUTAGE);
    let refused: Vec<String> = before.iter().step_by(REFUSE_EVERY).cloned().collect();
    finance.set_seed(first_sp);
    finance.set_server_error_percent(10);
    finance.set_commit_then_500_percent(5);
    finance.set_slow(5, SLOW);
    finance.set_rate_limited(3, &RETRY_AFTER_SECS.to_string());
    for sp in &refused {
        finance.refuse_with_code(&document_no(sp), REFUSAL_CODE, REFUSAL_MESSAGE);
    }
    let started = Instant::now();

    // Phase 1: 400 forms into the faulty target; every token expires once a third is booked.
    let xmls: Vec<String> = before
        .iter()
        .map(|sp| approved_callback(CORP_ID, sp))
        .collect();
    let posting = {
        let (url, app) = (url.clone(), TestApp::new(name));
        tokio::spawn(async move { post_all(&url, xmls, |x| signed(&app, x)).await })
    };
    eventually(120, "a third of the first phase booked", || async {
        finance.voucher_count() >= before.len() / 3
    })
    .await;
    oauth.expire_all_tokens();
    archive_oauth.expire_all_tokens();
    let tokens_before = oauth.token_requests();
    posting.await.unwrap();
    let booked = before.len() - refused.len();
    eventually(120, "the first phase settled at the target", || async {
        finance.voucher_count() == booked
            && dead_letters(&admin, &fin).await.len() == refused.len()
            && archive.voucher_count() == before.len()
    })
    .await;
    assert!(
        finance.count(Outcome::Unauthorized) >= 1 && oauth.token_requests() > tokens_before,
        "the expired token was refused and a new one fetched: {} 401s, {} token requests",
        finance.count(Outcome::Unauthorized),
        oauth.token_requests()
    );
    let dead = dead_letters(&admin, &fin).await;
    let mut dead_keys: Vec<String> = dead
        .iter()
        .map(|d| d["envelope"]["business_key"].as_str().unwrap().to_string())
        .collect();
    dead_keys.sort();
    assert_eq!(dead_keys, refused, "exactly the refused forms are parked");
    for d in &dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains(REFUSAL_CODE) && reason.contains(REFUSAL_MESSAGE),
            "a parked job says what the target said: {reason}"
        );
    }
    let phase1 = started.elapsed();

    // Phase 2: the finance system goes down for longer than several retry tiers; the other
    // connector keeps delivering, the finance connector's circuit opens.
    finance.set_outage(true);
    let outage_began = Instant::now();
    let xmls: Vec<String> = during
        .iter()
        .map(|sp| approved_callback(CORP_ID, sp))
        .collect();
    post_all(&url, xmls, sign).await;
    eventually(
        60,
        "the other target gets every form during the outage",
        || async { archive.voucher_count() == FORMS },
    )
    .await;
    eventually(30, "the finance connector's circuit opens", || async {
        counter_gauge("wecom_bridge_deliver_circuit_state", &fin) == Some(2.0)
    })
    .await;
    while outage_began.elapsed() < OUTAGE_AT_LEAST {
        assert_eq!(
            finance.voucher_count(),
            booked,
            "nothing is booked while down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outage = outage_began.elapsed();
    let refused_during_outage = finance.count(Outcome::Outage);
    finance.set_outage(false);
    assert!(
        (1..=40).contains(&refused_during_outage),
        "the open circuit spares the target: {refused_during_outage} requests in {outage:?} \
         (5 failures open it, then one probe a second)"
    );
    assert_eq!(
        dead_letters(&admin, &fin).await.len(),
        refused.len(),
        "the outage parked nothing"
    );
    eventually(60, "the backlog delivered after the outage", || async {
        finance.voucher_count() == FORMS - refused.len()
    })
    .await;

    // Phase 3: the operator fixes the cause at the target and replays the parked jobs.
    finance.accept_all_documents();
    let cli_dir = tempfile::tempdir().unwrap();
    let cli_config = cli_dir.path().join("bridge.toml");
    let toml = config_toml(cli_dir.path(), &[TestApp::new(name)]).replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"{admin}\""),
    );
    std::fs::write(&cli_config, toml).unwrap();
    let queue = format!("deliver.{fin}");
    let (ok, out, err) = run_cli_async(
        &[
            "--config",
            cli_config.to_str().unwrap(),
            "replay",
            "--queue",
            &queue,
            "--all",
        ],
        cli_dir.path(),
    )
    .await;
    assert!(ok, "replay failed: {out}{err}");
    assert!(
        out.contains(&format!(
            "replayed {n} of {n} dead letters from `{queue}`",
            n = refused.len()
        )),
        "{out}"
    );
    eventually(60, "the replayed jobs are delivered", || async {
        finance.voucher_count() == FORMS && dead_letters(&admin, &fin).await.is_empty()
    })
    .await;
    // a booked voucher whose answer was lost is settled by the retry's "already exists"
    ledger_settled(&admin, &fin, FORMS).await;

    // Exactly once at both targets.
    assert_eq!(not_exactly_once(&finance, &forms), vec![]);
    assert_eq!(not_exactly_once(&archive, &forms), vec![]);
    assert_eq!(finance.duplicate_vouchers(), 0);

    // The bridge's books agree with the target, request by request.
    let n = outcome_counts(&finance);
    let count = |o: Outcome| n.get(&o).copied().unwrap_or(0);
    for fault in [
        Outcome::ServerError,
        Outcome::CommittedThen500,
        Outcome::CommittedSlowly,
        Outcome::RateLimited,
        Outcome::RefusedWithCode,
        Outcome::Unauthorized,
        Outcome::Outage,
        Outcome::Duplicate,
    ] {
        assert!(count(fault) >= 1, "the run exercised {fault:?}: {n:?}");
    }
    assert_eq!(count(Outcome::RefusedWithCode), refused.len(), "{n:?}");
    assert_eq!(count(Outcome::Invalid), 0, "{n:?}");
    let committed = count(Outcome::Committed)
        + count(Outcome::CommittedThen500)
        + count(Outcome::CommittedSlowly);
    assert_eq!(committed, FORMS, "one commit per form: {n:?}");
    // a commit whose answer was lost (500 or too slow) is retried and answered "already exists"
    assert!(
        count(Outcome::Duplicate)
            >= count(Outcome::CommittedThen500) + count(Outcome::CommittedSlowly),
        "{n:?}"
    );
    let last: HashMap<String, Outcome> = finance
        .requests()
        .into_iter()
        .filter_map(|r| Some((r.document_no?, r.outcome)))
        .collect();
    let jobs = ledger_jobs(&admin, &fin).await;
    assert_eq!(jobs.len(), FORMS);
    let state_of: HashMap<String, String> = jobs
        .iter()
        .map(|j| {
            (
                j["business_key"].as_str().unwrap().to_string(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for sp in &forms {
        let want = match last.get(&document_no(sp)) {
            Some(Outcome::Committed) => "delivered",
            Some(Outcome::Duplicate) => "duplicate",
            other => panic!("{sp}: the last answer of the target was {other:?}"),
        };
        assert_eq!(state_of.get(sp).map(String::as_str), Some(want), "{sp}");
    }
    // every request is one recorded attempt, except a 401 re-sent at once with a new token
    let attempts: u64 = jobs.iter().map(|j| j["attempts"].as_u64().unwrap()).sum();
    let requests = finance.requests().len();
    assert_eq!(
        attempts as usize,
        requests - count(Outcome::Unauthorized),
        "ledger attempts vs requests at the target: {n:?}"
    );
    let verdicts = |v: &str| {
        counter(
            "wecom_bridge_deliver_attempts_total",
            &[("connector", &fin), ("verdict", v)],
        ) as usize
    };
    let classified = ["delivered", "duplicate", "permanent", "retryable"].map(verdicts);
    assert_eq!(classified.iter().sum::<usize>(), attempts as usize);
    assert_eq!(verdicts("permanent"), refused.len());
    // The faults are retryable; so is an answer the bridge did not get within its timeout:
    // always the slow ones, and on a loaded machine rarely a plain one (`unseen`).
    let faults = count(Outcome::ServerError)
        + count(Outcome::CommittedThen500)
        + count(Outcome::CommittedSlowly)
        + count(Outcome::RateLimited)
        + count(Outcome::Outage);
    let unseen = verdicts("retryable")
        .checked_sub(faults)
        .unwrap_or_else(|| {
            panic!("fewer retryable attempts than faults at the target: {classified:?} {n:?}")
        });
    assert!(unseen <= 5, "{unseen} answers lost to the timeout: {n:?}");
    assert_eq!(
        verdicts("delivered") + verdicts("duplicate") + unseen,
        count(Outcome::Committed) + count(Outcome::Duplicate),
        "{classified:?} {n:?}"
    );
    let jobs_counted = |o: &str| {
        counter(
            "wecom_bridge_deliver_jobs_total",
            &[("connector", &fin), ("outcome", o)],
        )
    };
    let in_state = |s: &str| state_of.values().filter(|v| *v == s).count() as u64;
    assert_eq!(jobs_counted("delivered"), in_state("delivered"));
    assert_eq!(jobs_counted("duplicate"), in_state("duplicate"));
    assert_eq!(jobs_counted("dead_lettered"), refused.len() as u64);
    assert_retry_after_honoured(&finance);

    eprintln!(
        "fault matrix {name}: {FORMS} forms; first phase {phase1:?}, outage {outage:?} \
         ({refused_during_outage} requests refused), total {:?}; target answers {n:?}",
        started.elapsed()
    );
    t.stop().await;
    for f in [finance, archive] {
        f.stop().await;
    }
    oauth.stop().await;
    archive_oauth.stop().await;
    fake.stop().await;
}

/// After a 429 the next request for that document came no sooner than `Retry-After`.
fn assert_retry_after_honoured(finance: &FinanceStandIn) {
    let requests = finance.requests();
    let mut checked = 0;
    for (i, r) in requests.iter().enumerate() {
        if r.outcome != Outcome::RateLimited {
            continue;
        }
        let next = requests[i + 1..]
            .iter()
            .find(|n| n.document_no == r.document_no)
            .expect("a rate-limited document is sent again");
        let waited = next.received_at - r.received_at;
        assert!(
            waited >= Duration::from_secs(RETRY_AFTER_SECS),
            "{:?} was sent again {waited:?} after a 429 with Retry-After: {RETRY_AFTER_SECS}",
            r.document_no
        );
        checked += 1;
    }
    assert!(checked >= 1);
}

/// The value of a gauge labelled with `connector` (None when never set).
fn counter_gauge(name: &str, connector: &str) -> Option<f64> {
    let text = wecom_bridge::telemetry::metrics_handle().render();
    let prefix = format!("{name}{{connector=\"{connector}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// A document the target keeps failing is parked once its attempts are used up, and the
/// ledger says so (not "retrying" for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_out_of_attempts_is_parked_and_dead_in_the_ledger() {
    let stands = Stands::start().await;
    let connector = "fm_attempts";
    stands.finance.set_server_error_percent(100);
    let dir = tempfile::tempdir().unwrap();
    let toml = stands.bridge_toml(
        dir.path(),
        connector,
        connector,
        &[("max_attempts = 8", "max_attempts = 3")],
        SHORT_TIERS,
    );
    let t = TestBridge::start_config(Config::from_toml(&toml).unwrap(), dir).await;
    let app = TestApp::new(connector);
    let forms = approved_forms(&stands.fake, 202_612_050_000, 1);
    let xmls = vec![approved_callback(CORP_ID, &forms[0])];
    post_all(&t.url(&app.path), xmls, |x| signed(&app, x)).await;
    let admin = t.admin.to_string();
    eventually(30, "the job parked", || async {
        dead_letters(&admin, connector).await.len() == 1
    })
    .await;
    let reason = dead_letters(&admin, connector).await[0]["reason"].to_string();
    assert!(
        reason.contains("HTTP 500") && reason.contains("after 3 attempts"),
        "{reason}"
    );
    assert_eq!(stands.finance.count(Outcome::ServerError), 3);
    let jobs = ledger_jobs(&admin, connector).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (&jobs[0]["state"], &jobs[0]["attempts"]),
        (&"dead".into(), &3.into()),
        "{:#}",
        jobs[0]
    );
    t.stop().await;
    stands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_fault_matrix_books_every_voucher_exactly_once() {
    fault_matrix("fm_embedded", 202_612_010_000, SHORT_TIERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_fault_matrix_books_every_voucher_exactly_once() {
    let prefix = unique("wbfm");
    let name = "fm_rabbit";
    fault_matrix(name, 202_612_020_000, &rabbit_section(&prefix)).await;
    let queues = [
        "route".to_string(),
        format!("deliver.{name}_fin"),
        format!("deliver.{name}_arc"),
        "writeback".to_string(),
    ];
    delete_rabbit_queues(&prefix, &queues).await;
}
