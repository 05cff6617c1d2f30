//! Delivery ledger queries with 100,000 jobs stored (each with one sealed ~1 KB attempt), as
//! the console and `deliveries` ask them: the first page, a filtered page, a page deep in the
//! listing (by cursor), every job of an SpNo with its attempts, and one job by key.
//!
//! Run: `cargo bench --bench ledger`. Prints the time to load the jobs, then per query the
//! median and p99 over 500 runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wecom_bridge::record::{
    AttemptPayload, AttemptRecord, Classification, JobRecord, JobState, Ledger, LedgerQuery,
};
use wecom_bridge::store::{Sealer, Store};

const JOBS: usize = 100_000;
const BATCH: usize = 5_000;
const RUNS: usize = 500;
const CONNECTORS: [&str; 4] = ["finance", "erp", "hr", "crm"];
const STATES: [JobState; 4] = [
    JobState::Delivered,
    JobState::Duplicate,
    JobState::Dead,
    JobState::Retrying,
];

fn job(i: usize) -> JobRecord {
    let t = 1_749_106_583_000 + i as i64 * 10;
    JobRecord {
        key: format!("job_{i:08}_approved_expense"),
        state: STATES[(i / CONNECTORS.len()) % STATES.len()],
        connector: CONNECTORS[i % CONNECTORS.len()].into(),
        mapping: "expense_voucher".into(),
        action: "approved".into(),
        // two jobs (two connectors) per form
        business_key: format!("2025060500{:06}", i / 2),
        app: "bench".into(),
        event_id: format!("evt_{i:08}"),
        attempts: 1,
        created_at_ms: t,
        updated_at_ms: t + 40,
        first_attempt_at_ms: Some(t + 1),
        last_attempt_at_ms: Some(t + 1),
        captured: BTreeMap::from([("voucher_no".into(), format!("V-{i:08}"))]),
        last_error: None,
    }
}

fn attempt(i: usize) -> AttemptRecord {
    AttemptRecord {
        number: 1,
        started_at_ms: 1_749_106_583_001 + i as i64 * 10,
        duration_ms: 38,
        method: "POST".into(),
        url: "https://finance.example/api/vouchers".into(),
        status: Some(200),
        classification: Classification::Delivered,
        reason: None,
        captured: BTreeMap::from([("voucher_no".into(), format!("V-{i:08}"))]),
        payload: Some(AttemptPayload {
            request_headers: vec![
                ("content-type".into(), "application/json".into()),
                ("idempotency-key".into(), format!("job_{i:08}")),
            ],
            request_body: Some(format!(
                "{{\"bill_no\":\"{i}\",\"lines\":[{}]}}",
                "{\"account\":\"6602\",\"amount\":\"1234.56\"},".repeat(12)
            )),
            response_headers: vec![("content-type".into(), "application/json".into())],
            response_body: Some(format!("{{\"code\":0,\"voucher_no\":\"V-{i:08}\"}}")),
        }),
    }
}

fn measure<F: FnMut()>(name: &str, mut f: F) {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{name:<44} median {:>8.1} µs   p99 {:>8.1} µs",
        times[RUNS / 2].as_secs_f64() * 1e6,
        times[RUNS * 99 / 100].as_secs_f64() * 1e6
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &dir.path().join("bench.redb"),
        Arc::new(Sealer::with_key("bench", [9; 32])),
    )
    .expect("store");
    let ledger = Ledger::embedded(store);
    let started = Instant::now();
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(BATCH) {
        let batch = chunk
            .iter()
            .map(|&i| {
                let j = job(i);
                let a = ledger.seal_attempt(&j.key, attempt(i)).expect("seal");
                (j, vec![a])
            })
            .collect();
        rt.block_on(ledger.import(batch)).expect("import");
    }
    let size = std::fs::metadata(dir.path().join("bench.redb")).map_or(0, |m| m.len());
    println!(
        "loaded {JOBS} jobs in {:.1} s; store file {} MB",
        started.elapsed().as_secs_f64(),
        size / 1_000_000
    );

    let page = |q: LedgerQuery| rt.block_on(ledger.list(q)).expect("list");
    measure("list: first page of 50, newest first", || {
        assert_eq!(
            page(LedgerQuery {
                limit: 50,
                ..Default::default()
            })
            .jobs
            .len(),
            50
        );
    });
    measure("list: connector=erp state=dead, page of 50", || {
        let p = page(LedgerQuery {
            connector: Some("erp".into()),
            state: Some(JobState::Dead),
            limit: 50,
            ..Default::default()
        });
        assert_eq!(p.jobs.len(), 50);
    });
    measure("list: state=retrying, page of 50", || {
        let p = page(LedgerQuery {
            state: Some(JobState::Retrying),
            limit: 50,
            ..Default::default()
        });
        assert_eq!(p.jobs.len(), 50);
    });
    let mut deep = LedgerQuery {
        limit: 50,
        ..Default::default()
    };
    for _ in 0..1_000 {
        deep.cursor = page(deep.clone()).next;
    }
    measure("list: page 1,001 (by cursor), 50", || {
        assert_eq!(page(deep.clone()).jobs.len(), 50);
    });
    let mut n = 0usize;
    measure("show <SpNo>: 2 jobs with attempts", || {
        n = (n + 7919) % (JOBS / 2);
        let sp = format!("2025060500{n:06}");
        let found = rt.block_on(ledger.find(&sp, false)).expect("find");
        assert_eq!(found.len(), 2);
    });
    measure("show <SpNo> --payload (decrypts)", || {
        n = (n + 7919) % (JOBS / 2);
        let sp = format!("2025060500{n:06}");
        let found = rt.block_on(ledger.find(&sp, true)).expect("find");
        assert!(found[0].attempts[0].payload.is_some());
    });
    measure("show <key>: one job with attempts", || {
        n = (n + 7919) % JOBS;
        let key = format!("job_{n:08}_approved_expense");
        assert!(rt.block_on(ledger.get(&key, false)).expect("get").is_some());
    });
    measure("counts per (connector, state)", || {
        assert_eq!(rt.block_on(ledger.counts()).expect("counts").len(), 16);
    });
}
