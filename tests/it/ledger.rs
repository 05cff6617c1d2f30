//! The delivery ledger on a real store on disk: the exactly-once protocol across a crash,
//! retention, paging and filters, sealing at rest, and the operator surfaces (CLI and admin
//! API). The protocol tests take a [`LedgerUnderTest`] so that the PostgreSQL back end can run
//! the same suite when it arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use tempfile::TempDir;
use wecom_bridge::record::{
    AttemptPayload, AttemptRecord, Begin, Classification, JobRecord, JobStart, JobState, Ledger,
    LedgerQuery, Outcome,
};
use wecom_bridge::store::{Sealer, Store};

use crate::support::*;

/// A ledger on a fresh back end that can be closed and opened again (a simulated crash).
struct LedgerUnderTest {
    _dir: TempDir,
    path: PathBuf,
    ledger: Option<Ledger>,
}

impl LedgerUnderTest {
    fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.redb");
        let mut l = LedgerUnderTest {
            _dir: dir,
            path,
            ledger: None,
        };
        l.reopen();
        l
    }

    fn ledger(&self) -> &Ledger {
        self.ledger.as_ref().expect("open")
    }

    /// Drops every handle (nothing is flushed beyond what was committed) and opens again.
    fn reopen(&mut self) {
        self.ledger = None;
        let store = Store::open(&self.path, test_sealer()).unwrap();
        self.ledger = Some(Ledger::embedded(store));
    }
}

pub(crate) fn start(key: &str, sp_no: &str, connector: &str, at_ms: i64) -> JobStart {
    JobStart {
        key: key.into(),
        connector: connector.into(),
        mapping: "expense_voucher".into(),
        action: "approved".into(),
        business_key: sp_no.into(),
        app: "demo".into(),
        event_id: "evt_test".into(),
        at_ms,
    }
}

pub(crate) fn attempt(class: Classification, at_ms: i64, body_marker: &str) -> AttemptRecord {
    let (status, reason, captured) = match class {
        Classification::Delivered | Classification::Duplicate => (
            Some(200),
            None,
            BTreeMap::from([("voucher_no".to_string(), "V-0042".to_string())]),
        ),
        Classification::Retryable => (Some(503), Some("HTTP 503".to_string()), BTreeMap::new()),
        Classification::Permanent => (
            Some(200),
            Some("body code E1001: invalid account".to_string()),
            BTreeMap::new(),
        ),
        Classification::DryRun => (None, None, BTreeMap::new()),
    };
    AttemptRecord {
        number: 0,
        started_at_ms: at_ms,
        duration_ms: 12,
        method: "POST".into(),
        url: "http://finance.test/api/vouchers".into(),
        status,
        classification: class,
        reason,
        captured,
        payload: Some(AttemptPayload {
            request_headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-marker".into(), format!("hdr-{body_marker}")),
            ],
            request_body: Some(format!(
                "{{\"memo\":\"{body_marker}\",\"amount\":\"12.30\"}}"
            )),
            response_headers: vec![("content-type".into(), "application/json".into())],
            response_body: Some(format!("{{\"echo\":\"{body_marker}\"}}")),
        }),
    }
}

#[tokio::test]
async fn a_job_found_in_flight_after_a_crash_is_resent_and_settled_by_the_duplicate_answer() {
    let mut t = LedgerUnderTest::embedded();
    let begin = t
        .ledger()
        .begin(start("job_crash", "202506050012", "finance", 1_000))
        .await
        .unwrap();
    assert!(matches!(&begin, Begin::Fresh(j) if j.state == JobState::InFlight));
    let n = t
        .ledger()
        .record_attempt(
            "job_crash",
            attempt(Classification::Retryable, 1_001, "first"),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);

    // the process dies before `finish`: reopen the store as a restart would
    t.reopen();
    let Begin::InFlight(job) = t
        .ledger()
        .begin(start("job_crash", "202506050012", "finance", 5_000))
        .await
        .unwrap()
    else {
        panic!("a job begun before the crash is found in flight");
    };
    assert_eq!(job.attempts, 1);
    assert_eq!(job.created_at_ms, 1_000);
    assert_eq!(job.last_error.as_deref(), Some("HTTP 503"));

    // re-sent with the same key; the target answers "already exists"
    let n = t
        .ledger()
        .record_attempt(
            "job_crash",
            attempt(Classification::Duplicate, 5_001, "second"),
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let done = t
        .ledger()
        .finish("job_crash", Outcome::Duplicate, 5_020)
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Duplicate);
    assert_eq!(done.last_error, None);
    assert_eq!(done.captured["voucher_no"], "V-0042");
    assert_eq!(
        (done.first_attempt_at_ms, done.last_attempt_at_ms),
        (Some(1_001), Some(5_001))
    );

    t.reopen();
    assert!(matches!(
        t.ledger().begin(start("job_crash", "202506050012", "finance", 9_000)).await.unwrap(),
        Begin::AlreadyDelivered(j) if j.state == JobState::Duplicate
    ));
    let d = t.ledger().get("job_crash", true).await.unwrap().unwrap();
    assert_eq!(
        d.attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        d.attempts[0]
            .payload
            .as_ref()
            .unwrap()
            .request_body
            .as_deref(),
        Some("{\"memo\":\"first\",\"amount\":\"12.30\"}")
    );
    let without = t.ledger().get("job_crash", false).await.unwrap().unwrap();
    assert!(without.attempts.iter().all(|a| a.payload.is_none()));
    assert_eq!(
        without.attempts[1].classification,
        Classification::Duplicate
    );
}

#[tokio::test]
async fn a_delivered_job_short_circuits_and_is_never_downgraded() {
    let t = LedgerUnderTest::embedded();
    let l = t.ledger();
    l.begin(start("job_ok", "sp-1", "finance", 10))
        .await
        .unwrap();
    l.record_attempt("job_ok", attempt(Classification::Delivered, 11, "m"))
        .await
        .unwrap();
    l.finish("job_ok", Outcome::Delivered, 12).await.unwrap();

    // a broker redelivery or a second route worker: nothing to send
    let again = l
        .begin(start("job_ok", "sp-1", "finance", 20))
        .await
        .unwrap();
    assert!(
        matches!(again, Begin::AlreadyDelivered(ref j) if j.attempts == 1),
        "{again:?}"
    );
    // a racing worker that failed reports late: the job stays delivered
    let kept = l
        .finish(
            "job_ok",
            Outcome::Dead {
                reason: "late".into(),
            },
            30,
        )
        .await
        .unwrap();
    assert_eq!(kept.state, JobState::Delivered);
    assert_eq!(
        l.job("job_ok").await.unwrap().unwrap().state,
        JobState::Delivered
    );

    // unknown jobs are typed errors, not silent inserts, and counted
    wecom_bridge::telemetry::metrics_handle();
    let failures = || {
        counter(
            "wecom_bridge_ledger_failures_total",
            &[("kind", "unknown_job")],
        )
    };
    let before = failures();
    let e = l
        .record_attempt(
            "job_never_begun",
            attempt(Classification::Delivered, 1, "x"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("job_never_begun"), "{e}");
    assert!(
        l.finish("job_never_begun", Outcome::Delivered, 1)
            .await
            .is_err()
    );
    assert!(l.job("job_never_begun").await.unwrap().is_none());
    assert!(failures() >= before + 2, "ledger failures are counted");
}

#[tokio::test]
async fn retrying_and_dead_jobs_resume_while_pilot_runs_stay_settled() {
    let t = LedgerUnderTest::embedded();
    let l = t.ledger();
    for (key, outcome) in [
        (
            "job_retry",
            Outcome::Retrying {
                reason: "HTTP 503".into(),
            },
        ),
        (
            "job_dead",
            Outcome::Dead {
                reason: "E1001".into(),
            },
        ),
        ("job_pilot", Outcome::DryRun),
        ("job_nothing", Outcome::RevokedWithoutApproval),
    ] {
        l.begin(start(key, "sp-2", "finance", 10)).await.unwrap();
        l.finish(key, outcome, 11).await.unwrap();
    }
    let resumed = l
        .begin(start("job_retry", "sp-2", "finance", 20))
        .await
        .unwrap();
    assert!(
        matches!(resumed, Begin::Resume { previous: JobState::Retrying, ref job } if job.state == JobState::InFlight)
    );
    let replayed = l
        .begin(start("job_dead", "sp-2", "finance", 20))
        .await
        .unwrap();
    assert!(matches!(
        replayed,
        Begin::Resume {
            previous: JobState::Dead,
            ..
        }
    ));
    assert_eq!(
        l.job("job_dead").await.unwrap().unwrap().state,
        JobState::InFlight
    );
    for key in ["job_pilot", "job_nothing"] {
        let b = l.begin(start(key, "sp-2", "finance", 20)).await.unwrap();
        assert!(matches!(b, Begin::Settled(_)), "{key}: {b:?}");
    }
    let revoked = l.job("job_nothing").await.unwrap().unwrap();
    assert!(revoked.last_error.unwrap().contains("never delivered"));

    let counts: BTreeMap<String, u64> = l
        .counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (format!("{}/{}", c.connector, c.state), c.count))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("finance/dry_run".to_string(), 1),
            ("finance/in_flight".to_string(), 2),
            ("finance/revoked_without_approval".to_string(), 1),
        ])
    );
}

#[tokio::test]
async fn retention_prunes_old_jobs_with_their_attempts_and_keeps_new_ones() {
    let t = LedgerUnderTest::embedded();
    let l = t.ledger();
    for (key, at) in [("job_old1", 1_000), ("job_old2", 2_000), ("job_new", 9_000)] {
        l.begin(start(key, "sp-3", "finance", at)).await.unwrap();
        l.record_attempt(key, attempt(Classification::Retryable, at + 1, key))
            .await
            .unwrap();
        l.record_attempt(key, attempt(Classification::Delivered, at + 2, key))
            .await
            .unwrap();
        l.finish(key, Outcome::Delivered, at + 3).await.unwrap();
    }
    assert_eq!(l.prune(5_000).await.unwrap(), 2);
    assert_eq!(l.prune(5_000).await.unwrap(), 0);
    assert!(l.get("job_old1", false).await.unwrap().is_none());
    let kept = l.get("job_new", true).await.unwrap().unwrap();
    assert_eq!(kept.attempts.len(), 2);
    assert!(kept.attempts.iter().all(|a| a.payload.is_some()));
    let listed = l
        .list(LedgerQuery {
            business_key: Some("sp-3".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed
            .jobs
            .iter()
            .map(|j| j.key.as_str())
            .collect::<Vec<_>>(),
        ["job_new"]
    );
    assert_eq!(l.counts().await.unwrap()[0].count, 1);
    // the attempts went with the job: the same key begins afresh with none
    assert!(matches!(
        l.begin(start("job_old1", "sp-3", "finance", 10_000))
            .await
            .unwrap(),
        Begin::Fresh(_)
    ));
    assert!(
        l.get("job_old1", false)
            .await
            .unwrap()
            .unwrap()
            .attempts
            .is_empty()
    );
}

/// Jobs with varied fields; several share a creation time, so the cursor must break ties.
async fn seeded(l: &Ledger, n: usize) -> Vec<JobRecord> {
    let states = [
        JobState::Delivered,
        JobState::Dead,
        JobState::Retrying,
        JobState::Duplicate,
    ];
    let connectors = ["finance", "erp", "hr"];
    let mut jobs = Vec::new();
    let mut batch = Vec::new();
    for i in 0..n {
        let key = format!("job_{i:05}");
        let job = JobRecord {
            key: key.clone(),
            state: states[i % states.len()],
            connector: connectors[i % connectors.len()].into(),
            mapping: "m".into(),
            action: "approved".into(),
            business_key: format!("sp{}", i % 97),
            app: "demo".into(),
            event_id: format!("evt_{i}"),
            attempts: 1,
            created_at_ms: 1_000 + (i as i64 / 3),
            updated_at_ms: 1_000 + (i as i64 / 3),
            first_attempt_at_ms: None,
            last_attempt_at_ms: None,
            captured: BTreeMap::new(),
            last_error: None,
        };
        let mut a = attempt(Classification::Delivered, 1_000, &key);
        a.number = 1;
        batch.push((job.clone(), vec![l.seal_attempt(&key, a).unwrap()]));
        jobs.push(job);
    }
    l.import(batch).await.unwrap();
    jobs
}

async fn all_pages(l: &Ledger, q: LedgerQuery) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut pages = 0;
    let mut q = q;
    loop {
        let page = l.list(q.clone()).await.unwrap();
        pages += 1;
        assert!(page.jobs.len() <= q.limit);
        keys.extend(page.jobs.iter().map(|j| j.key.clone()));
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => return (keys, pages),
        }
    }
}

#[tokio::test]
async fn paging_over_1000_jobs_returns_each_exactly_once_newest_first() {
    let t = LedgerUnderTest::embedded();
    let l = t.ledger();
    let jobs = seeded(l, 1_000).await;
    let (keys, pages) = all_pages(
        l,
        LedgerQuery {
            limit: 37,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys.len(), 1_000);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 1_000);
    assert_eq!(pages, 1_000usize.div_ceil(37));
    let mut expected: Vec<&JobRecord> = jobs.iter().collect();
    expected.sort_by(|a, b| (b.created_at_ms, &b.key).cmp(&(a.created_at_ms, &a.key)));
    assert_eq!(
        keys,
        expected.iter().map(|j| j.key.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn every_filter_combination_agrees_with_a_brute_force_filter() {
    let t = LedgerUnderTest::embedded();
    let l = t.ledger();
    let jobs = seeded(l, 600).await;
    let queries = [
        LedgerQuery {
            business_key: Some("sp5".into()),
            ..Default::default()
        },
        LedgerQuery {
            business_key: Some("sp5".into()),
            state: Some(JobState::Dead),
            ..Default::default()
        },
        LedgerQuery {
            connector: Some("erp".into()),
            ..Default::default()
        },
        LedgerQuery {
            connector: Some("erp".into()),
            state: Some(JobState::Delivered),
            since_ms: Some(1_050),
            until_ms: Some(1_150),
            ..Default::default()
        },
        LedgerQuery {
            state: Some(JobState::Retrying),
            ..Default::default()
        },
        LedgerQuery {
            since_ms: Some(1_100),
            until_ms: Some(1_101),
            ..Default::default()
        },
        LedgerQuery {
            connector: Some("nobody".into()),
            ..Default::default()
        },
    ];
    for q in queries {
        let (got, _) = all_pages(
            l,
            LedgerQuery {
                limit: 7,
                ..q.clone()
            },
        )
        .await;
        let mut want: Vec<&JobRecord> = jobs
            .iter()
            .filter(|j| {
                q.business_key.as_ref().is_none_or(|b| *b == j.business_key)
                    && q.connector.as_ref().is_none_or(|c| *c == j.connector)
                    && q.state.is_none_or(|s| s == j.state)
                    && q.since_ms.is_none_or(|s| j.created_at_ms >= s)
                    && q.until_ms.is_none_or(|u| j.created_at_ms < u)
            })
            .collect();
        want.sort_by(|a, b| (b.created_at_ms, &b.key).cmp(&(a.created_at_ms, &a.key)));
        let want: Vec<String> = want.iter().map(|j| j.key.clone()).collect();
        assert_eq!(got, want, "{q:?}");
    }
}

#[tokio::test]
async fn attempt_headers_and_bodies_are_not_in_plain_text_in_the_store_file() {
    let mut t = LedgerUnderTest::embedded();
    let marker = "PLAINTEXT-MARKER-7c1f";
    {
        let l = t.ledger();
        l.begin(start("job_secret", "SPNO-VISIBLE-4242", "finance", 10))
            .await
            .unwrap();
        l.record_attempt("job_secret", attempt(Classification::Delivered, 11, marker))
            .await
            .unwrap();
        l.finish("job_secret", Outcome::Delivered, 12)
            .await
            .unwrap();
    }
    t.ledger = None; // close the store so every page is on disk
    let bytes = std::fs::read(&t.path).unwrap();
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    // the search works on this file: the business key is metadata, stored in the clear
    assert!(contains("SPNO-VISIBLE-4242"));
    assert!(
        !contains(marker),
        "an attempt body or header is readable in the store file"
    );
    assert!(!contains("12.30"));
    t.reopen();
    let d = t.ledger().get("job_secret", true).await.unwrap().unwrap();
    let p = d.attempts[0].payload.as_ref().unwrap();
    assert!(p.response_body.as_ref().unwrap().contains(marker));
    assert!(p.request_headers.iter().any(|(_, v)| v.contains(marker)));
}

#[tokio::test]
async fn oversized_bodies_are_capped_and_payloads_do_not_open_with_another_key() {
    let mut t = LedgerUnderTest::embedded();
    let l = t.ledger();
    l.begin(start("job_big", "sp-9", "finance", 10))
        .await
        .unwrap();
    let mut a = attempt(Classification::Permanent, 11, "big");
    a.payload.as_mut().unwrap().response_body = Some("x".repeat(1_000_000));
    l.record_attempt("job_big", a).await.unwrap();
    let d = l.get("job_big", true).await.unwrap().unwrap();
    let body = d.attempts[0]
        .payload
        .as_ref()
        .unwrap()
        .response_body
        .clone()
        .unwrap();
    assert!(
        body.len() <= wecom_bridge::record::MAX_BODY_BYTES + 64,
        "{}",
        body.len()
    );
    assert!(body.ends_with("bytes cut by the ledger]"));

    t.ledger = None;
    let other_key = Arc::new(Sealer::with_key("t1", [0x55; 32]));
    let wrong_key = Ledger::embedded(Store::open(&t.path, other_key).unwrap());
    // metadata is readable; the payload does not open with other key material
    assert!(wrong_key.get("job_big", false).await.unwrap().is_some());
    assert!(matches!(
        wrong_key.get("job_big", true).await,
        Err(wecom_bridge::record::LedgerError::Seal(_))
    ));
}
