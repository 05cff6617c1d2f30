//! Tests of the queue tables on a real database file.

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    crate::store::test_store()
}

fn publish(s: &Store, q: &str, body: &str) -> u64 {
    let out = s
        .queue_apply(
            &[QueueOp::Publish {
                queue: q.into(),
                body: body.as_bytes().to_vec(),
            }],
            false,
        )
        .unwrap();
    assert!(out.durable, "publish must commit durably");
    assert_eq!(out.woken, vec![q.to_string()]);
    match out.results[0] {
        QueueOpResult::Published { id } => id,
        ref other => panic!("{other:?}"),
    }
}

fn lease(s: &Store, q: &str, max: usize, until_ms: i64) -> Vec<LeasedMessage> {
    let out = s
        .queue_apply(
            &[QueueOp::Lease {
                queue: q.into(),
                max,
                until_ms,
            }],
            false,
        )
        .unwrap();
    assert!(!out.durable, "a lease alone needs no fsync");
    match &out.results[0] {
        QueueOpResult::Leased(m) => m.clone(),
        other => panic!("{other:?}"),
    }
}

fn apply1(s: &Store, op: QueueOp) -> QueueBatchOutcome {
    s.queue_apply(&[op], false).unwrap()
}

fn ack(s: &Store, id: u64, lease: u64) -> QueueBatchOutcome {
    apply1(s, QueueOp::Ack { id, lease })
}

fn counts(s: &Store, q: &str) -> (u64, u64, u64, u64) {
    let c = s.queue_counts(&[q.to_string()]).unwrap()[0];
    (c.ready, c.leased, c.delayed, c.dead)
}

fn bodies(m: &[LeasedMessage]) -> Vec<String> {
    m.iter()
        .map(|m| String::from_utf8(m.body.clone()).unwrap())
        .collect()
}

#[test]
fn fifo_per_queue_and_lease_limits() {
    let (_d, s) = store();
    for i in 0..5 {
        publish(&s, "a", &format!("a{i}"));
        publish(&s, "b", &format!("b{i}"));
    }
    assert_eq!(counts(&s, "a"), (5, 0, 0, 0));
    let first = lease(&s, "a", 3, 1_000);
    assert_eq!(bodies(&first), ["a0", "a1", "a2"]);
    assert!(first.iter().all(|m| m.attempt == 1));
    let rest = lease(&s, "a", 10, 1_000);
    assert_eq!(bodies(&rest), ["a3", "a4"]);
    assert!(lease(&s, "a", 10, 1_000).is_empty());
    assert_eq!(counts(&s, "a"), (0, 5, 0, 0));
    assert_eq!(counts(&s, "b"), (5, 0, 0, 0));
    // lease tokens are unique
    let mut tokens: Vec<u64> = first.iter().chain(&rest).map(|m| m.lease).collect();
    tokens.dedup();
    assert_eq!(tokens.len(), 5);
}

#[test]
fn ack_removes_and_stale_lease_changes_nothing() {
    let (_d, s) = store();
    publish(&s, "q", "x");
    let m = lease(&s, "q", 1, 1_000).remove(0);
    let out = ack(&s, m.id, m.lease + 1);
    assert_eq!(out.results[0], QueueOpResult::Settled { applied: false });
    assert!(!out.durable, "an ack alone needs no fsync");
    let out = ack(&s, m.id, m.lease);
    assert_eq!(out.results[0], QueueOpResult::Settled { applied: true });
    assert_eq!(counts(&s, "q"), (0, 0, 0, 0));
    assert_eq!(
        out.next_due_ms, None,
        "the lease expiry is gone with the message"
    );
    // acking twice is harmless
    let out = ack(&s, m.id, m.lease);
    assert_eq!(out.results[0], QueueOpResult::Settled { applied: false });
}

#[test]
fn expired_lease_comes_back_with_next_attempt_then_dies_at_the_limit() {
    let (_d, s) = store();
    publish(&s, "q", "x");
    let m = lease(&s, "q", 1, 100);
    assert_eq!(m[0].attempt, 1);
    let promote = |now| QueueOp::Promote {
        now_ms: now,
        delivery_limit: 2,
    };
    // not yet due
    let out = apply1(&s, promote(99));
    assert_eq!(
        out.results[0],
        QueueOpResult::Promoted { ready: 0, dead: 0 }
    );
    assert_eq!(out.next_due_ms, Some(100));
    let out = apply1(&s, promote(100));
    assert_eq!(
        out.results[0],
        QueueOpResult::Promoted { ready: 1, dead: 0 }
    );
    assert_eq!(out.woken, vec!["q".to_string()]);
    assert_eq!(out.next_due_ms, None);
    // the old lease can no longer settle
    let out = ack(&s, m[0].id, m[0].lease);
    assert_eq!(out.results[0], QueueOpResult::Settled { applied: false });
    let m2 = lease(&s, "q", 1, 200);
    assert_eq!(m2[0].attempt, 2);
    assert_ne!(m2[0].lease, m[0].lease);
    // a third delivery would exceed the limit of 2: parked
    let out = apply1(&s, promote(300));
    assert_eq!(
        out.results[0],
        QueueOpResult::Promoted { ready: 0, dead: 1 }
    );
    assert_eq!(counts(&s, "q"), (0, 0, 0, 1));
    let dead = s.queue_dead_letters("q", 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "delivery limit exceeded (2 attempts)");
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(
        (dead[0].first_failure_ms, dead[0].last_failure_ms),
        (100, 300)
    );
    assert_eq!(dead[0].body, b"x");
}

#[test]
fn retry_is_delayed_then_ready_with_next_attempt_and_is_durable() {
    let (_d, s) = store();
    publish(&s, "q", "x");
    let m = lease(&s, "q", 1, 10_000).remove(0);
    let out = apply1(
        &s,
        QueueOp::Retry {
            id: m.id,
            lease: m.lease,
            due_ms: 500,
            now_ms: 400,
            counts: true,
        },
    );
    assert_eq!(out.results[0], QueueOpResult::Settled { applied: true });
    assert!(
        out.durable,
        "a retry must be durable before the lease is released"
    );
    assert_eq!(
        out.next_due_ms,
        Some(500),
        "the lease deadline was replaced by the due time"
    );
    assert_eq!(counts(&s, "q"), (0, 0, 1, 0));
    assert!(lease(&s, "q", 1, 10_000).is_empty(), "delayed is not ready");
    let out = apply1(
        &s,
        QueueOp::Promote {
            now_ms: 500,
            delivery_limit: 5,
        },
    );
    assert_eq!(
        out.results[0],
        QueueOpResult::Promoted { ready: 1, dead: 0 }
    );
    let m = lease(&s, "q", 1, 10_000).remove(0);
    assert_eq!(m.attempt, 2);
    assert_eq!(m.body, b"x");
    // dead-letter after a retry keeps the first failure
    let out = apply1(
        &s,
        QueueOp::DeadLetter {
            id: m.id,
            lease: m.lease,
            reason: "refused".into(),
            now_ms: 900,
        },
    );
    assert!(out.durable);
    let dead = s.queue_dead_letters("q", 10).unwrap();
    assert_eq!(
        (
            dead[0].attempts,
            dead[0].first_failure_ms,
            dead[0].last_failure_ms
        ),
        (2, 400, 900)
    );
    assert_eq!(counts(&s, "q"), (0, 0, 0, 1));
}

#[test]
fn dead_letters_list_oldest_first_and_redrive_selects() {
    let (_d, s) = store();
    for b in ["one", "two", "three"] {
        publish(&s, "q", b);
    }
    let ms = lease(&s, "q", 3, 10_000);
    // park in reverse order: "three" is parked first
    for (i, m) in ms.iter().rev().enumerate() {
        apply1(
            &s,
            QueueOp::DeadLetter {
                id: m.id,
                lease: m.lease,
                reason: format!("reason {i}"),
                now_ms: 1_000 + i as i64,
            },
        );
    }
    let dead = s.queue_dead_letters("q", 10).unwrap();
    let names: Vec<_> = dead.iter().map(|d| d.body.clone()).collect();
    assert_eq!(names, [b"three".to_vec(), b"two".to_vec(), b"one".to_vec()]);
    assert_eq!(s.queue_dead_letters("q", 1).unwrap().len(), 1);
    assert!(s.queue_dead_letters("other", 10).unwrap().is_empty());
    // listing does not consume
    assert_eq!(counts(&s, "q"), (0, 0, 0, 3));

    let n = s.queue_redrive("q", &mut |body, _| body == b"two").unwrap();
    assert_eq!(n, 1);
    assert_eq!(counts(&s, "q"), (1, 0, 0, 2));
    let n = s
        .queue_redrive("q", &mut |_, reason| reason.contains("reason 2"))
        .unwrap();
    assert_eq!(n, 1);
    // redriven messages start at attempt 1, FIFO by publish order
    let ms = lease(&s, "q", 10, 10_000);
    assert_eq!(bodies(&ms), ["one", "two"]);
    assert!(ms.iter().all(|m| m.attempt == 1));
    assert_eq!(s.queue_redrive("q", &mut |_, _| true).unwrap(), 1);
    assert_eq!(counts(&s, "q"), (1, 2, 0, 0));
}

#[test]
fn recovery_expires_every_lease_and_keeps_delays() {
    let (dir, s) = store();
    for b in ["a", "b", "c"] {
        publish(&s, "q", b);
    }
    let ms = lease(&s, "q", 3, i64::MAX - 1);
    apply1(
        &s,
        QueueOp::Retry {
            id: ms[2].id,
            lease: ms[2].lease,
            due_ms: 1_000_000,
            now_ms: 1,
            counts: true,
        },
    );
    drop(s);
    let s = crate::store::test_store_in(dir.path());
    // the leases were committed without fsync, then made durable by the retry's commit
    assert_eq!(counts(&s, "q"), (0, 2, 1, 0));
    let out = s.queue_recover(10, 5).unwrap();
    assert_eq!(
        out.results[0],
        QueueOpResult::Promoted { ready: 2, dead: 0 }
    );
    assert_eq!(out.next_due_ms, Some(1_000_000));
    assert_eq!(counts(&s, "q"), (2, 0, 1, 0));
    let ms = lease(&s, "q", 10, 100);
    assert_eq!(bodies(&ms), ["a", "b"]);
    assert!(ms.iter().all(|m| m.attempt == 2));
    // ids keep increasing across reopen
    let id = publish(&s, "q", "d");
    assert_eq!(id, 4);
}

#[test]
fn batch_applies_in_order_in_one_transaction() {
    let (_d, s) = store();
    let out = s
        .queue_apply(
            &[
                QueueOp::Publish {
                    queue: "q".into(),
                    body: b"1".to_vec(),
                },
                QueueOp::Lease {
                    queue: "q".into(),
                    max: 5,
                    until_ms: 50,
                },
                QueueOp::Publish {
                    queue: "q".into(),
                    body: b"2".to_vec(),
                },
            ],
            false,
        )
        .unwrap();
    assert!(out.durable);
    assert_eq!(out.results.len(), 3);
    let QueueOpResult::Leased(ms) = &out.results[1] else {
        panic!("{:?}", out.results[1]);
    };
    assert_eq!(bodies(ms), ["1"]);
    assert_eq!(out.next_due_ms, Some(50));
    assert_eq!(counts(&s, "q"), (1, 1, 0, 0));
}

#[test]
fn bodies_are_sealed_at_rest_and_plain_bodies_of_older_versions_still_read() {
    let (_d, s) = store();
    let id = publish(&s, "q", "secret-body");
    let raw = s
        .read(|tx| {
            let t = tx.open_table(BODY)?;
            Ok(t.get(id)?.map(|v| v.value().to_vec()))
        })
        .unwrap()
        .unwrap();
    assert!(Sealer::is_sealed(&raw));
    assert!(!raw.windows(6).any(|w| w == b"secret"));
    // a body stored in plain text by an older version is still delivered
    s.with_db(|db| {
        let tx = db.begin_write()?;
        tx.open_table(BODY)?.insert(id, b"legacy".as_slice())?;
        tx.commit()?;
        Ok(())
    })
    .unwrap();
    assert_eq!(bodies(&lease(&s, "q", 1, 1_000)), ["legacy"]);
}

#[test]
fn a_body_that_does_not_open_is_parked_with_the_reason_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    {
        let s = Store::open(&path, std::sync::Arc::new(Sealer::with_key("k1", [1; 32]))).unwrap();
        publish(&s, "q", "x");
    }
    let s = Store::open(&path, std::sync::Arc::new(Sealer::with_key("k2", [2; 32]))).unwrap();
    assert!(lease(&s, "q", 1, 1_000).is_empty());
    assert_eq!(counts(&s, "q"), (0, 0, 0, 1));
    let dead = s.queue_dead_letters("q", 10).unwrap();
    assert!(dead[0].reason.contains("does not open"), "{:?}", dead[0]);
    assert!(
        dead[0].unreadable.as_deref().unwrap().contains("`k1`"),
        "{:?}",
        dead[0]
    );
    // with the key configured again, it reads and can be redriven
    drop(s);
    let s = Store::open(
        &path,
        std::sync::Arc::new(
            Sealer::new([("k1".into(), [1; 32]), ("k2".into(), [2; 32])], "k2").unwrap(),
        ),
    )
    .unwrap();
    assert_eq!(s.queue_dead_letters("q", 10).unwrap()[0].body, b"x");
    assert_eq!(s.queue_redrive("q", &mut |_, _| true).unwrap(), 1);
    assert_eq!(bodies(&lease(&s, "q", 1, 1_000)), ["x"]);
}

fn journal_record(hash: u8, quarantine: Option<&str>) -> JournalRecord {
    JournalRecord {
        quarantine: quarantine.map(str::to_string),
        ..crate::store::test_record(hash, 10)
    }
}

fn append(hash: u8, quarantine: Option<&str>, body: &str) -> QueueOp {
    QueueOp::AppendJournal {
        record: Box::new(journal_record(hash, quarantine)),
        queue: "route".into(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn a_journal_append_enqueues_a_new_event_once_in_the_same_durable_commit() {
    let (_d, s) = store();
    let out = s
        .queue_apply(
            &[
                append(1, None, "one"),
                append(1, None, "one again"),
                append(2, Some("bad xml"), ""),
                append(3, None, "three"),
            ],
            false,
        )
        .unwrap();
    assert!(out.durable, "an append must commit durably");
    assert_eq!(out.woken, vec!["route".to_string()]);
    assert_eq!(
        out.results,
        vec![
            QueueOpResult::Appended(AppendOutcome::Appended(1)),
            QueueOpResult::Appended(AppendOutcome::Duplicate(1)),
            QueueOpResult::Appended(AppendOutcome::Appended(2)),
            QueueOpResult::Appended(AppendOutcome::Appended(3)),
        ]
    );
    // a re-delivery in a later batch is a duplicate too, and enqueues nothing
    let again = apply1(&s, append(3, None, "three again"));
    assert_eq!(
        again.results,
        vec![QueueOpResult::Appended(AppendOutcome::Duplicate(3))]
    );
    // new, unquarantined events only, in order; nothing is left for the outbox relay
    assert_eq!(counts(&s, "route"), (2, 0, 0, 0));
    assert_eq!(bodies(&lease(&s, "route", 10, 1_000)), vec!["one", "three"]);
    let journal = s.journal_counts().unwrap();
    assert_eq!((journal.entries, journal.unpublished), (3, 0));
    assert!(s.journal_has_key("demo", "sp1:2").unwrap());
}
