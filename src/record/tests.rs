//! Unit tests of the pure exactly-once decisions; the ledger on a real store is tested in
//! `tests/it/ledger.rs`.

use super::*;

pub(crate) fn start(key: &str, at_ms: i64) -> JobStart {
    JobStart {
        key: key.into(),
        connector: "finance".into(),
        mapping: "expense".into(),
        action: "approved".into(),
        business_key: "202506050012".into(),
        app: "demo".into(),
        event_id: "evt_1".into(),
        at_ms,
    }
}

fn in_state(state: JobState) -> JobRecord {
    let (Some(mut w), _) = decide_begin(None, &start("job_a", 10)) else {
        panic!("a new job is always written");
    };
    w.job.state = state;
    w.job
}

#[test]
fn a_new_job_is_written_in_flight() {
    let (write, begin) = decide_begin(None, &start("job_a", 10));
    let write = write.expect("written");
    assert_eq!(write.job.state, JobState::InFlight);
    assert_eq!(write.job.created_at_ms, 10);
    assert_eq!(write.attempt, None);
    assert_eq!(begin, Begin::Fresh(write.job));
}

#[test]
fn every_known_state_maps_to_one_begin() {
    for state in ALL_STATES {
        let (write, begin) = decide_begin(Some(in_state(state)), &start("job_a", 99));
        match state {
            JobState::Delivered | JobState::Duplicate | JobState::SkippedAlreadyDelivered => {
                assert!(write.is_none());
                assert!(matches!(begin, Begin::AlreadyDelivered(j) if j.state == state));
            }
            JobState::InFlight => {
                assert!(
                    write.is_none(),
                    "found in flight: re-send, nothing to write"
                );
                assert!(matches!(begin, Begin::InFlight(_)));
            }
            JobState::Retrying | JobState::Dead => {
                let w = write.expect("back in flight");
                assert_eq!(w.job.state, JobState::InFlight);
                assert_eq!(w.job.updated_at_ms, 99);
                assert_eq!(
                    w.job.created_at_ms, 10,
                    "identity and index time never change"
                );
                assert_eq!(
                    begin,
                    Begin::Resume {
                        job: w.job,
                        previous: state
                    }
                );
            }
            JobState::DryRun | JobState::RevokedWithoutApproval => {
                assert!(write.is_none());
                assert!(matches!(begin, Begin::Settled(_)));
            }
        }
    }
}

#[test]
fn state_names_round_trip_and_unknown_names_say_what_is_valid() {
    for s in ALL_STATES {
        assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::Value::String(s.as_str().into())
        );
    }
    let e = "deliverd".parse::<JobState>().unwrap_err().to_string();
    assert!(
        e.contains("deliverd") && e.contains("delivered, duplicate"),
        "{e}"
    );
}

#[test]
fn outcomes_name_their_state_and_reason() {
    assert_eq!(Outcome::Duplicate.state(), JobState::Duplicate);
    assert!(Outcome::Duplicate.state().counts_as_delivered());
    let dead = Outcome::Dead {
        reason: "E1001 invalid account".into(),
    };
    assert_eq!(dead.state(), JobState::Dead);
    assert_eq!(dead.error().as_deref(), Some("E1001 invalid account"));
    assert!(
        Outcome::RevokedWithoutApproval
            .error()
            .unwrap()
            .contains("never delivered")
    );
    assert_eq!(Outcome::Delivered.error(), None);
}

#[test]
fn cursors_round_trip_keys_with_dots() {
    let c = Cursor {
        created_at_ms: 1_700_000_000_123,
        key: "job_ab.cd".into(),
    };
    assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
    assert!("nonsense".parse::<Cursor>().is_err());
    assert!("x.job".parse::<Cursor>().is_err());
}

fn attempt(classification: Classification, reason: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        number: 0,
        started_at_ms: 50,
        duration_ms: 7,
        method: "POST".into(),
        url: "http://finance.local/vouchers".into(),
        status: Some(200),
        classification,
        reason: reason.map(Into::into),
        captured: [("voucher_id".to_string(), "V-1".to_string())].into(),
        payload: None,
    }
}

#[test]
fn an_attempt_and_its_outcome_are_one_write() {
    let cipher = crate::store::test_sealer();
    let old = in_state(JobState::InFlight);
    let delivered = attempt(Classification::Delivered, None);
    let (write, job) = decide_settle(
        &cipher,
        "job_a".into(),
        Some(old),
        Some(delivered),
        &Outcome::Delivered,
        60,
    )
    .unwrap();
    let write = write.expect("written");
    assert_eq!(write.job, job);
    assert_eq!((job.state, job.attempts), (JobState::Delivered, 1));
    assert_eq!(
        job.captured.get("voucher_id").map(String::as_str),
        Some("V-1")
    );
    let stored = write.attempt.expect("the attempt is in the same write");
    assert_eq!(stored.meta.number, 1);
}

#[test]
fn a_late_failure_of_a_delivered_job_records_the_attempt_and_keeps_it_delivered() {
    let cipher = crate::store::test_sealer();
    let old = in_state(JobState::Delivered);
    let late = attempt(Classification::Retryable, Some("timeout"));
    let outcome = Outcome::Retrying {
        reason: "timeout".into(),
    };
    let (write, job) =
        decide_settle(&cipher, "job_a".into(), Some(old), Some(late), &outcome, 60).unwrap();
    let write = write.expect("the attempt is still written");
    assert_eq!(
        (write.job.state, write.job.attempts),
        (JobState::Delivered, 1)
    );
    assert_eq!(job.state, JobState::Delivered);
    assert!(write.attempt.is_some());
    let unknown = decide_settle(
        &cipher,
        "job_b".into(),
        None,
        Some(attempt(Classification::Delivered, None)),
        &Outcome::Delivered,
        60,
    );
    assert!(matches!(unknown, Err(LedgerError::UnknownJob { .. })));
}
