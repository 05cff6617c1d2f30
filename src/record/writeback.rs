//! The ledger side of writeback: each job's WeCom notifications, recorded with the outcome
//! that causes them (one atomic write), then marked queued, sent or failed.
//!
//! The deliver stage calls [`Ledger::finish_and_notify`] instead of [`Ledger::finish`] when the
//! mapping has a notification for the outcome: the job's state and a *pending* notification are
//! one write, so a crash before the writeback job reaches the broker leaves it pending, and the
//! redelivered deliver job publishes it ([`Ledger::writebacks`] → [`Ledger::writeback_queued`]).
//! The writeback stage then records each send ([`Ledger::writeback_begin`],
//! [`Ledger::writeback_settle`]); a notification that was sent is never sent again.
//!
//! The message (names, amounts, the form's text) is sealed at rest with the store's sealer,
//! bound to its (job, kind), like attempt payloads; the ledger's readers get it opened.

use super::*;
use crate::store::Sealed;

fn message_aad(key: &str, kind: WritebackKind) -> Vec<u8> {
    format!("writeback:{key}:{}", kind.as_str()).into_bytes()
}

/// `sealed:<key id>:<nonce hex>:<ciphertext hex>`.
fn seal_message(cipher: &Sealer, key: &str, kind: WritebackKind, message: &str) -> String {
    let Sealed {
        key_id,
        nonce,
        ciphertext,
    } = cipher.seal(&message_aad(key, kind), message.as_bytes());
    format!(
        "sealed:{key_id}:{}:{}",
        hex::encode(nonce),
        hex::encode(ciphertext)
    )
}

fn open_message(cipher: &Sealer, key: &str, wb: &mut WritebackRecord) -> Result<(), LedgerError> {
    let bad =
        |what: &str| LedgerError::Seal(format!("writeback {} of {key}: {what}", wb.kind.as_str()));
    let Some(rest) = wb.message.strip_prefix("sealed:") else {
        return Err(bad("the message is not sealed"));
    };
    let mut parts = rest.rsplitn(3, ':');
    let (Some(ct), Some(nonce), Some(key_id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("malformed sealed message"));
    };
    let nonce: [u8; 12] = hex::decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("malformed nonce"))?;
    let ciphertext = hex::decode(ct).map_err(|_| bad("malformed ciphertext"))?;
    let sealed = Sealed {
        key_id: key_id.to_owned(),
        nonce,
        ciphertext,
    };
    let plain = cipher
        .open(&message_aad(key, wb.kind), &sealed)
        .map_err(|e| bad(&e.to_string()))?;
    wb.message = String::from_utf8(plain).map_err(|_| bad("not UTF-8"))?;
    Ok(())
}

/// How one send of a notification went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritebackResult {
    /// WeCom accepted it.
    Sent {
        /// WeCom's message id.
        msg_id: Option<String>,
        /// Recipients WeCom reported invalid.
        invalid: Vec<String>,
    },
    /// It failed; a retry is scheduled.
    Retrying {
        /// Why.
        reason: String,
    },
    /// Given up.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Whether `notice` belongs to a job in `state` (the applicant's to a delivered job, the
/// operators' to a dead one).
fn fits(kind: WritebackKind, state: JobState) -> bool {
    match kind {
        WritebackKind::Applicant => state.counts_as_delivered(),
        WritebackKind::Operator => state == JobState::Dead,
    }
}

impl Ledger {
    /// [`Ledger::finish`], and in the same write a pending `kind` notification when the job
    /// now is in the state it is for and has none of its kind yet (each kind is sent at most
    /// once per job). `render` builds WeCom's `message/send` body (without `agentid`) from the
    /// settled job (its captured values included); `None` records nothing. Returns the job and
    /// whether a notification is now pending.
    pub async fn finish_and_notify(
        &self,
        key: &str,
        outcome: Outcome,
        at_ms: i64,
        kind: WritebackKind,
        render: impl FnOnce(&JobRecord) -> Option<serde_json::Value> + Send + 'static,
    ) -> Result<(JobRecord, bool), LedgerError> {
        self.settle(key, None, outcome, at_ms, Some((kind, Box::new(render))))
            .await
    }

    /// The one settling write: `attempt` (if any) appended as [`Ledger::record_attempt`]
    /// does, the job settled with `outcome` as [`Ledger::finish`] does, and with `notify` a
    /// pending notification recorded as [`Ledger::finish_and_notify`] does; all or nothing.
    /// The deliver stage's path after a send: one commit where there were two. Returns the
    /// job and whether a notification is now pending.
    pub async fn settle(
        &self,
        key: &str,
        attempt: Option<AttemptRecord>,
        outcome: Outcome,
        at_ms: i64,
        notify: Option<(WritebackKind, Render)>,
    ) -> Result<(JobRecord, bool), LedgerError> {
        let k = key.to_string();
        let cipher = self.cipher.clone();
        let Some((kind, render)) = notify else {
            let decide: Decision<(JobRecord, bool)> = Box::new(move |old| {
                let (write, job) = decide_settle(&cipher, k, old, attempt, &outcome, at_ms)?;
                Ok((write, (job, false)))
            });
            return count_failure(self.backend.update(key.into(), decide).await);
        };
        let decide: WritebackDecision<(JobRecord, bool)> = Box::new(move |old, old_wb| {
            let (write, job) = decide_settle(&cipher, k, old, attempt, &outcome, at_ms)?;
            let message = match old_wb {
                None if fits(kind, job.state) => render(&job),
                _ => None,
            };
            let wb = message.map(|message| WritebackRecord {
                kind,
                state: WritebackState::Pending,
                message: seal_message(&cipher, &job.key, kind, &message.to_string()),
                attempts: 0,
                created_at_ms: at_ms,
                updated_at_ms: at_ms,
                msg_id: None,
                invalid: Vec::new(),
                last_error: None,
            });
            let pending = wb.is_some();
            Ok((write, wb, (job, pending)))
        });
        count_failure(
            self.backend
                .update_writeback(key.into(), kind, decide)
                .await,
        )
    }

    /// The writeback records of a job (applicant first), messages opened.
    pub async fn writebacks(&self, key: &str) -> Result<Vec<WritebackRecord>, LedgerError> {
        let mut records = count_failure(self.backend.writebacks(key.into()).await)?;
        for wb in &mut records {
            count_failure(open_message(&self.cipher, key, wb))?;
        }
        Ok(records)
    }

    /// Marks a pending notification as published to the `writeback` queue.
    pub async fn writeback_queued(
        &self,
        key: &str,
        kind: WritebackKind,
        at_ms: i64,
    ) -> Result<(), LedgerError> {
        self.update_writeback(key, kind, move |wb| {
            (wb.state == WritebackState::Pending).then(|| {
                wb.state = WritebackState::Queued;
                wb.updated_at_ms = wb.updated_at_ms.max(at_ms);
            })
        })
        .await
        .map(|_| ())
    }

    /// Before a send: counts the attempt unless the notification was sent already. Returns the
    /// record as it was (`None` if the job or the notification is unknown, e.g. pruned).
    pub async fn writeback_begin(
        &self,
        key: &str,
        kind: WritebackKind,
        at_ms: i64,
    ) -> Result<Option<WritebackRecord>, LedgerError> {
        let decide: WritebackDecision<Option<WritebackRecord>> = Box::new(move |_, old_wb| {
            let Some(before) = old_wb else {
                return Ok((None, None, None));
            };
            if before.state == WritebackState::Sent {
                return Ok((None, None, Some(before)));
            }
            let mut wb = before.clone();
            wb.attempts += 1;
            wb.state = WritebackState::Queued;
            wb.updated_at_ms = wb.updated_at_ms.max(at_ms);
            Ok((None, Some(wb), Some(before)))
        });
        count_failure(
            self.backend
                .update_writeback(key.into(), kind, decide)
                .await,
        )
    }

    /// Records how a send went.
    pub async fn writeback_settle(
        &self,
        key: &str,
        kind: WritebackKind,
        result: WritebackResult,
        at_ms: i64,
    ) -> Result<(), LedgerError> {
        self.update_writeback(key, kind, move |wb| {
            if wb.state == WritebackState::Sent {
                return None;
            }
            match result {
                WritebackResult::Sent { msg_id, invalid } => {
                    wb.state = WritebackState::Sent;
                    wb.msg_id = msg_id;
                    wb.invalid = invalid;
                    wb.last_error = None;
                }
                WritebackResult::Retrying { reason } => {
                    wb.state = WritebackState::Queued;
                    wb.last_error = Some(reason);
                }
                WritebackResult::Failed { reason } => {
                    wb.state = WritebackState::Failed;
                    wb.last_error = Some(reason);
                }
            }
            wb.updated_at_ms = wb.updated_at_ms.max(at_ms);
            Some(())
        })
        .await
        .map(|_| ())
    }

    /// Applies `change` to an existing writeback record (`None` from `change`: unchanged).
    async fn update_writeback(
        &self,
        key: &str,
        kind: WritebackKind,
        change: impl FnOnce(&mut WritebackRecord) -> Option<()> + Send + 'static,
    ) -> Result<bool, LedgerError> {
        let decide: WritebackDecision<bool> = Box::new(move |_, old_wb| {
            let Some(mut wb) = old_wb else {
                return Ok((None, None, false));
            };
            match change(&mut wb) {
                Some(()) => Ok((None, Some(wb), true)),
                None => Ok((None, None, false)),
            }
        });
        count_failure(
            self.backend
                .update_writeback(key.into(), kind, decide)
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Sealer;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("temp dir");
        let sealer = Arc::new(Sealer::with_key("t1", [7; 32]));
        let store = Store::open(&dir.path().join("s.redb"), sealer).expect("store");
        (dir, Ledger::embedded(store))
    }

    async fn begun(l: &Ledger, key: &str) {
        l.begin(crate::record::tests::start(key, 10))
            .await
            .expect("begin");
    }

    fn card(rec: &JobRecord) -> Option<serde_json::Value> {
        Some(serde_json::json!({"touser": "ZhangSan", "sp": rec.business_key}))
    }

    #[tokio::test]
    async fn a_notification_is_recorded_with_its_outcome_once_and_sent_once() {
        let (_d, l) = ledger();
        begun(&l, "job_a").await;
        let applicant = WritebackKind::Applicant;
        let (job, pending) = l
            .finish_and_notify("job_a", Outcome::Delivered, 20, applicant, card)
            .await
            .unwrap();
        assert_eq!((job.state, pending), (JobState::Delivered, true));
        let wbs = l.writebacks("job_a").await.unwrap();
        assert_eq!(wbs.len(), 1);
        assert_eq!(wbs[0].state, WritebackState::Pending);
        assert!(
            wbs[0].message.contains("202506050012"),
            "{}",
            wbs[0].message
        );
        // a second settling (a redelivery racing) records no second notification
        let (_, again) = l
            .finish_and_notify("job_a", Outcome::Duplicate, 30, applicant, card)
            .await
            .unwrap();
        assert!(!again);
        // a late "dead" for a delivered job keeps it delivered and notifies no operator
        let (job, op) = l
            .finish_and_notify(
                "job_a",
                Outcome::Dead {
                    reason: "late".into(),
                },
                40,
                WritebackKind::Operator,
                card,
            )
            .await
            .unwrap();
        assert_eq!((job.state, op), (JobState::Duplicate, false));

        l.writeback_queued("job_a", applicant, 50).await.unwrap();
        let before = l
            .writeback_begin("job_a", applicant, 60)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.state, WritebackState::Queued);
        let failed = WritebackResult::Retrying {
            reason: "45009".into(),
        };
        l.writeback_settle("job_a", applicant, failed, 61)
            .await
            .unwrap();
        l.writeback_begin("job_a", applicant, 70).await.unwrap();
        let sent = WritebackResult::Sent {
            msg_id: Some("m1".into()),
            invalid: vec![],
        };
        l.writeback_settle("job_a", applicant, sent, 71)
            .await
            .unwrap();
        let after = l
            .writeback_begin("job_a", applicant, 80)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            after.state,
            WritebackState::Sent,
            "sent: the next begin sends nothing"
        );
        let d = l.get("job_a", false).await.unwrap().unwrap();
        let wb = &d.writebacks[0];
        assert_eq!(
            (wb.state, wb.attempts, wb.msg_id.as_deref()),
            (WritebackState::Sent, 2, Some("m1"))
        );
        assert_eq!(wb.last_error, None);
        // a failure reported after the send does not undo it
        let late = WritebackResult::Failed { reason: "x".into() };
        l.writeback_settle("job_a", applicant, late, 90)
            .await
            .unwrap();
        assert_eq!(
            l.writebacks("job_a").await.unwrap()[0].state,
            WritebackState::Sent
        );

        // pruned with the job
        assert_eq!(l.prune(i64::MAX).await.unwrap(), 1);
        assert!(l.writebacks("job_a").await.unwrap().is_empty());
        assert_eq!(
            l.writeback_begin("job_a", applicant, 99).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn operators_are_notified_of_a_dead_job_and_an_unknown_job_is_an_error() {
        let (_d, l) = ledger();
        begun(&l, "job_b").await;
        let dead = Outcome::Dead {
            reason: "refused".into(),
        };
        let (job, pending) = l
            .finish_and_notify("job_b", dead, 20, WritebackKind::Operator, card)
            .await
            .unwrap();
        assert_eq!((job.state, pending), (JobState::Dead, true));
        assert_eq!(job.last_error.as_deref(), Some("refused"));
        // nothing rendered: nothing recorded
        let (_, none) = l
            .finish_and_notify(
                "job_b",
                Outcome::Delivered,
                30,
                WritebackKind::Applicant,
                |_| None,
            )
            .await
            .unwrap();
        assert!(!none);
        assert_eq!(l.writebacks("job_b").await.unwrap().len(), 1);
        let e = l
            .finish_and_notify(
                "job_x",
                Outcome::Delivered,
                1,
                WritebackKind::Applicant,
                card,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, LedgerError::UnknownJob { .. }), "{e}");
    }
}
