//! The deliver stage: one [`Handler`] per connector, consuming `deliver.<connector>`.
//!
//! Per job, ledger first: [`Ledger::begin`] says whether to send at all (already delivered →
//! done, nothing sent; in flight after a crash → re-send with the same keys, the target's
//! duplicate answer settles it). Then the job's mapping builds the document (a [`Refusal`]
//! parks the job at once: the same input always refuses the same way), the connector's
//! [`Circuit`] is asked, the connector sends, the attempt is recorded in the ledger, and only
//! then is the broker delivery settled by the returned [`Disposition`] (the stage loop owns
//! retries: a retryable verdict becomes a broker delay through the connector's retry
//! schedule). A revocation whose approved document never reached the target is recorded as
//! `revoked_without_approval` and nothing is sent.
//!
//! Writeback: when the job's mapping has `[writeback]`, the outcome that calls for a WeCom
//! notification (delivered → the applicant, dead → operators) is recorded together with the
//! rendered notification, pending ([`Ledger::finish_and_notify`]); then every pending
//! notification of the job is published to the `writeback` queue and marked queued. A
//! redelivered job (found delivered after a crash between the two) publishes what is still
//! pending, so a notification is neither lost nor published for nothing; the document is not
//! sent again. On its last attempt (by the same [`RetryPolicy`] the stage loop applies) a job
//! that still fails is recorded dead, so the ledger and the notification match the parking.
//!
//! It must not settle deliveries itself, keep its own retry counters, or talk to the target
//! other than through [`Connector::send`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::circuit::{Circuit, Permission};
use super::{Attempt, Connector, Outgoing, Verdict};
use crate::broker::{Broker, WRITEBACK_QUEUE};
use crate::catalog::{Action, Catalog, Mapping};
use crate::map::Refusal;
use crate::map::input::MapInput;
use crate::record::{
    AttemptPayload, AttemptRecord, Begin, Classification, JobRecord, JobStart, Ledger, LedgerQuery,
    Outcome, Render, WritebackKind, WritebackState,
};
use crate::stage::{DeliveryJob, Disposition, Handler, Message, Retry, RetryPolicy, WritebackJob};
use crate::writeback::spec::{Facts, Recipients};

/// Jobs handled by the deliver stage, by `connector` and `outcome`.
pub const DELIVER_JOBS: &str = "wecom_bridge_deliver_jobs_total";
/// The circuit of each connector: 0 closed, 1 half-open, 2 open.
pub const DELIVER_CIRCUIT: &str = "wecom_bridge_deliver_circuit_state";
/// Time per request to a target, seconds, by `connector`.
pub const DELIVER_REQUEST_SECONDS: &str = "wecom_bridge_deliver_request_seconds";

/// The longest a handler waits for an open circuit before handing the job back to the broker
/// as a retry. Waiting holds the job's concurrency slot, which pauses consumption of the
/// connector's queue; the job stays unacknowledged (safe) in the broker.
pub const MAX_CIRCUIT_WAIT: Duration = Duration::from_secs(60);

/// The retry policy of `connector`: its own `[retry]` schedule when it has one, else
/// `fallback` (`[stages.deliver]`). Delays must be broker tiers (checked here as well as when
/// the catalog is loaded).
pub fn retry_policy(
    connector: &Connector,
    tiers_secs: &[u64],
    fallback: &RetryPolicy,
) -> Result<RetryPolicy, String> {
    let retry = &connector.spec().retry;
    if retry.position == (0, 0) {
        return Ok(fallback.clone());
    }
    let schedule: Vec<u64> = retry.schedule.iter().map(Duration::as_secs).collect();
    RetryPolicy::new(
        &format!("connector `{}` [retry]", connector.name()),
        &schedule,
        tiers_secs,
        retry.max_attempts,
        None,
    )
    .map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The deliver stage of one connector; it publishes writeback jobs through `B`.
#[derive(Debug)]
pub struct DeliverStage<B> {
    connector: Arc<Connector>,
    catalog: Arc<Catalog>,
    ledger: Ledger,
    circuit: std::sync::Mutex<Circuit>,
    policy: RetryPolicy,
    broker: B,
}

impl<B: Broker> DeliverStage<B> {
    /// The stage delivering to `connector`, with mappings from `catalog`, retried by `policy`
    /// (the one the stage loop applies: see [`retry_policy`]), publishing writeback jobs
    /// through `broker`.
    pub fn new(
        connector: Arc<Connector>,
        catalog: Arc<Catalog>,
        ledger: Ledger,
        policy: RetryPolicy,
        broker: B,
    ) -> Self {
        let circuit = std::sync::Mutex::new(Circuit::new(connector.spec().circuit));
        DeliverStage {
            connector,
            catalog,
            ledger,
            circuit,
            policy,
            broker,
        }
    }

    fn name(&self) -> &str {
        self.connector.name()
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!(DELIVER_JOBS, "connector" => self.name().to_string(), "outcome" => outcome)
            .increment(1);
    }

    fn gauge(&self, circuit: &Circuit) {
        metrics::gauge!(DELIVER_CIRCUIT, "connector" => self.name().to_string())
            .set(circuit.gauge());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Circuit> {
        // A poisoned lock only means a panic elsewhere while holding it; the state machine
        // itself is always consistent between calls, so keep using it.
        self.circuit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits while the circuit is open (up to [`MAX_CIRCUIT_WAIT`]); `Err` with the
    /// remaining wait when it stays open longer.
    async fn permit(&self) -> Result<(), Duration> {
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let permission = {
                let mut c = self.lock();
                let p = c.permit(now);
                self.gauge(&c);
                p
            };
            match permission {
                Permission::Send | Permission::Probe => return Ok(()),
                Permission::WaitUntil(until) => {
                    let left = until.saturating_duration_since(now);
                    if now + left > started + MAX_CIRCUIT_WAIT {
                        return Err(left.max(Duration::from_secs(1)));
                    }
                    tokio::time::sleep(left.min(Duration::from_millis(500))).await;
                }
            }
        }
    }

    /// A ledger failure: nothing was decided, so the job is retried (the ledger is the
    /// record of what was sent; we never send without it).
    fn ledger_failed(&self, job: &DeliveryJob, e: &crate::record::LedgerError) -> Disposition {
        self.count("ledger_failed");
        tracing::error!(connector = %self.name(), job = %job.key, sp_no = %job.business_key, error = %e,
            "the delivery ledger failed; the job will be retried (check the store's disk: `wecom-bridge status`)");
        Disposition::retry(format!("delivery ledger: {e}"))
    }

    /// Whether the approved document of this business key reached this connector.
    async fn approval_delivered(
        &self,
        job: &DeliveryJob,
    ) -> Result<bool, crate::record::LedgerError> {
        let page = self
            .ledger
            .list(LedgerQuery {
                business_key: Some(job.business_key.clone()),
                connector: Some(job.connector.clone()),
                limit: crate::store::LEDGER_MAX_PAGE,
                ..Default::default()
            })
            .await?;
        Ok(page.jobs.iter().any(|j| {
            j.action == Action::Approved.as_str()
                && j.app == job.app
                && j.state.counts_as_delivered()
        }))
    }

    fn mapping(&self, name: &str) -> Option<&Mapping> {
        self.catalog.mappings.iter().find(|m| m.name == name)
    }

    /// Settles the job in the ledger with `outcome` and the `attempt` that led to it (if
    /// any), recording the notification the job's mapping asks for with it (rendered from the
    /// job, its captured values and `document`), in one write.
    async fn finish(
        &self,
        job: &DeliveryJob,
        attempt: Option<AttemptRecord>,
        outcome: Outcome,
        document: Option<&Value>,
    ) -> Result<(), crate::record::LedgerError> {
        let now = crate::broker::now_ms();
        let notify = self.notification(job, &outcome, document);
        self.ledger
            .settle(job.key.as_str(), attempt, outcome, now, notify)
            .await
            .map(|_| ())
    }

    /// The notification the job's mapping asks for on `outcome`, if any, with its renderer.
    fn notification(
        &self,
        job: &DeliveryJob,
        outcome: &Outcome,
        document: Option<&Value>,
    ) -> Option<(WritebackKind, Render)> {
        let wb = self
            .mapping(&job.mapping)
            .and_then(|m| m.compiled.writeback().cloned());
        let kind = match outcome {
            Outcome::Delivered | Outcome::Duplicate
                if wb.as_ref().is_some_and(|w| w.delivered.is_some()) =>
            {
                WritebackKind::Applicant
            }
            Outcome::Dead { .. } if wb.as_ref().is_some_and(|w| w.dead.is_some()) => {
                WritebackKind::Operator
            }
            _ => return None,
        };
        let reason = match outcome {
            Outcome::Dead { reason } => reason.clone(),
            _ => String::new(),
        };
        let (applicant, action) = (applicant(&job.input), job.action.as_str());
        let document = document.cloned();
        let render = move |rec: &JobRecord| -> Option<Value> {
            let wb = wb?;
            let facts = Facts {
                sp_no: &rec.business_key,
                applicant: &applicant,
                mapping: &rec.mapping,
                connector: &rec.connector,
                action,
                reason: &reason,
                captured: &rec.captured,
                document: document.as_ref(),
            };
            match kind {
                WritebackKind::Applicant if applicant.is_empty() => None,
                WritebackKind::Applicant => {
                    let users = [applicant.clone()];
                    let to = Recipients {
                        users: &users,
                        parties: &[],
                        tags: &[],
                    };
                    wb.delivered.as_ref().map(|c| c.message(to, &facts))
                }
                WritebackKind::Operator => wb.dead.as_ref().map(|d| {
                    let to = Recipients {
                        users: &d.to_users,
                        parties: &d.to_parties,
                        tags: &d.to_tags,
                    };
                    d.card.message(to, &facts)
                }),
            }
        };
        Some((kind, Box::new(render)))
    }

    /// Publishes the job's pending notifications to the writeback queue and marks them queued.
    /// `Err` (a retry of the deliver job; the document is not sent again) when the ledger or
    /// the broker failed.
    async fn publish_writebacks(&self, job: &DeliveryJob) -> Result<(), Disposition> {
        if self
            .mapping(&job.mapping)
            .is_none_or(|m| m.compiled.writeback().is_none())
        {
            return Ok(());
        }
        let key = job.key.as_str();
        let records = self
            .ledger
            .writebacks(key)
            .await
            .map_err(|e| self.ledger_failed(job, &e))?;
        for r in records
            .into_iter()
            .filter(|r| r.state == WritebackState::Pending)
        {
            let message = serde_json::from_str(&r.message).unwrap_or(Value::Null);
            let wb = WritebackJob {
                key: job.key.clone(),
                kind: r.kind,
                app: job.app.clone(),
                business_key: job.business_key.clone(),
                message,
            };
            let now = crate::broker::now_ms();
            let published = match wb.to_envelope(now) {
                Ok(env) => self
                    .broker
                    .publish(WRITEBACK_QUEUE, &env)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = published {
                self.count("writeback_unpublished");
                tracing::warn!(connector = %self.name(), job = %key, kind = r.kind.as_str(), error = %e,
                    "the notification could not be queued; the job is retried to queue it (the document is not sent again)");
                return Err(Disposition::retry(format!("writeback job not queued: {e}")));
            }
            self.ledger
                .writeback_queued(key, r.kind, now)
                .await
                .map_err(|e| self.ledger_failed(job, &e))?;
        }
        Ok(())
    }

    /// The job's outcome (with the attempt that led to it, if any) in the ledger, its
    /// notifications queued, then `disposition`.
    async fn conclude(
        &self,
        job: &DeliveryJob,
        attempt: Option<AttemptRecord>,
        outcome: Outcome,
        document: Option<&Value>,
        disposition: Disposition,
    ) -> Disposition {
        if let Err(e) = self.finish(job, attempt, outcome, document).await {
            return self.ledger_failed(job, &e);
        }
        match self.publish_writebacks(job).await {
            Ok(()) => disposition,
            Err(retry) => retry,
        }
    }

    /// Whether a retry after `attempt` is the end: the stage loop parks instead.
    fn out_of_attempts(&self, attempt: u32, hint: Option<Duration>) -> bool {
        self.policy.decide(attempt, hint) == Retry::Park
    }

    /// `delivery` counts the broker's deliveries of this job (1 the first time).
    async fn deliver(&self, job: DeliveryJob, delivery: u32) -> Disposition {
        let key = job.key.as_str().to_string();
        let start = JobStart {
            key: key.clone(),
            connector: job.connector.clone(),
            mapping: job.mapping.clone(),
            action: job.action.as_str().to_string(),
            business_key: job.business_key.clone(),
            app: job.app.clone(),
            event_id: job.event_id.to_string(),
            at_ms: crate::broker::now_ms(),
        };
        match self.ledger.begin(start).await {
            Err(e) => return self.ledger_failed(&job, &e),
            Ok(Begin::AlreadyDelivered(_)) => {
                self.count("already_delivered");
                tracing::info!(connector = %self.name(), job = %key, sp_no = %job.business_key,
                    "already delivered; nothing sent");
                // a crash after recording the delivery may have left its notification unqueued
                return match self.publish_writebacks(&job).await {
                    Ok(()) => Disposition::done("already_delivered"),
                    Err(retry) => retry,
                };
            }
            Ok(Begin::Settled(rec)) => {
                self.count("already_settled");
                tracing::info!(connector = %self.name(), job = %key, state = %rec.state,
                    "settled without a delivery before; nothing sent");
                return Disposition::done("already_settled");
            }
            Ok(Begin::InFlight(_)) => {
                tracing::info!(connector = %self.name(), job = %key, sp_no = %job.business_key,
                    "found in flight (crash or redelivery); re-sending with the same keys");
            }
            Ok(Begin::Fresh(_) | Begin::Resume { .. }) => {}
        }
        if job.action == Action::Revoked {
            match self.approval_delivered(&job).await {
                Err(e) => return self.ledger_failed(&job, &e),
                Ok(false) => return self.revoked_without_approval(&job).await,
                Ok(true) => {}
            }
        }
        let Some(mapping) = self.mapping(&job.mapping) else {
            let reason = format!(
                "mapping `{}` is not in the catalog (removed or renamed?); restore it, then `wecom-bridge replay`",
                job.mapping
            );
            return self.dead(&job, reason, "unknown_mapping").await;
        };
        let input = mapping.compiled.input_value(&job.input);
        let (business_key, document) = match mapping.compiled.run_with_key(&input) {
            Ok(v) => v,
            Err(refusal) => return self.refused(&job, &refusal).await,
        };
        if let Err(left) = self.permit().await {
            // Waiting is not an attempt: nothing was sent, so an outage of hours uses up no
            // retries (the job is deferred with the same attempt number).
            let reason = format!(
                "circuit open for connector `{}` (the target keeps failing); waiting, nothing sent",
                self.name()
            );
            let waiting = Outcome::Retrying {
                reason: reason.clone(),
            };
            if let Err(e) = self
                .ledger
                .finish(&key, waiting, crate::broker::now_ms())
                .await
            {
                return self.ledger_failed(&job, &e);
            }
            self.count("circuit_open");
            tracing::warn!(connector = %self.name(), job = %key, retry_in_s = left.as_secs(),
                "the connector's circuit is open (the target keeps failing); the job waits in the broker");
            return Disposition::Wait {
                reason,
                delay: left,
            };
        }
        let attempt = self
            .connector
            .send(&Outgoing {
                document: &document,
                idempotency_key: &key,
                business_key: &business_key,
            })
            .await;
        metrics::histogram!(DELIVER_REQUEST_SECONDS, "connector" => self.name().to_string())
            .record(attempt.duration.as_secs_f64());
        {
            let mut c = self.lock();
            c.record(&attempt.verdict, Instant::now());
            self.gauge(&c);
        }
        // The attempt is recorded with the outcome it leads to, in one write. Should that write
        // fail, re-sending with the same keys is safe (the target refuses a duplicate, which
        // settles the job as delivered).
        let record = to_record(&attempt);
        self.settle(&job, attempt.verdict, record, delivery, &document)
            .await
    }

    async fn settle(
        &self,
        job: &DeliveryJob,
        verdict: Verdict,
        record: AttemptRecord,
        attempt: u32,
        document: &Value,
    ) -> Disposition {
        let key = job.key.as_str();
        // Out of attempts: the target kept failing; parked now, with the ledger saying so.
        let verdict = match verdict {
            Verdict::Retryable { reason, after } if self.out_of_attempts(attempt, after) => {
                Verdict::Permanent {
                    reason: format!("{reason} (after {attempt} attempts; the target kept failing)"),
                }
            }
            other => other,
        };
        let (outcome, disposition, label) = match verdict {
            Verdict::Delivered => (
                Outcome::Delivered,
                Disposition::done("delivered"),
                "delivered",
            ),
            Verdict::Duplicate => (
                Outcome::Duplicate,
                Disposition::done("duplicate"),
                "duplicate",
            ),
            Verdict::DryRun => (Outcome::DryRun, Disposition::done("dry_run"), "dry_run"),
            Verdict::Retryable { after, reason } => (
                Outcome::Retrying {
                    reason: reason.clone(),
                },
                Disposition::Retry {
                    reason: format!("connector `{}`: {reason}", self.name()),
                    hint: after,
                },
                "retried",
            ),
            Verdict::Permanent { reason } => {
                tracing::error!(connector = %self.name(), job = %key, sp_no = %job.business_key, %reason,
                    "the target refused the document; parked (fix the mapping, data or connector, then `wecom-bridge replay`)");
                (
                    Outcome::Dead {
                        reason: reason.clone(),
                    },
                    Disposition::park(format!("connector `{}` refused: {reason}", self.name())),
                    "dead_lettered",
                )
            }
        };
        let disposition = self
            .conclude(job, Some(record), outcome, Some(document), disposition)
            .await;
        self.count(label);
        if label == "delivered" || label == "duplicate" {
            tracing::info!(connector = %self.name(), job = %key, sp_no = %job.business_key, outcome = label,
                "delivered");
        }
        disposition
    }

    async fn dead(&self, job: &DeliveryJob, reason: String, label: &'static str) -> Disposition {
        let outcome = Outcome::Dead {
            reason: reason.clone(),
        };
        let disposition = self
            .conclude(job, None, outcome, None, Disposition::park(reason))
            .await;
        self.count(label);
        self.count("dead_lettered");
        disposition
    }

    async fn refused(&self, job: &DeliveryJob, refusal: &Refusal) -> Disposition {
        tracing::error!(connector = %self.name(), job = %job.key, sp_no = %job.business_key,
            mapping = %job.mapping, code = %refusal.code, message = %refusal.message,
            "the mapping refused this form; parked, nothing sent (fix the form data or the mapping, then `wecom-bridge replay`)");
        let reason = format!(
            "mapping `{}` refused: {}: {}",
            job.mapping, refusal.code, refusal.message
        );
        self.dead(job, reason, "mapping_refused").await
    }

    async fn revoked_without_approval(&self, job: &DeliveryJob) -> Disposition {
        if let Err(e) = self
            .ledger
            .finish(
                job.key.as_str(),
                Outcome::RevokedWithoutApproval,
                crate::broker::now_ms(),
            )
            .await
        {
            return self.ledger_failed(job, &e);
        }
        self.count("revoked_without_approval");
        tracing::warn!(connector = %self.name(), job = %job.key, sp_no = %job.business_key,
            "revoked after approval, but the approved document never reached the target: nothing to reverse, nothing sent \
             (check `wecom-bridge deliveries show` for the approved job)");
        Disposition::done("revoked_without_approval")
    }
}

impl<B: Broker> Handler for DeliverStage<B> {
    fn stage(&self) -> &'static str {
        "deliver"
    }

    async fn handle(&self, msg: Message, attempt: u32) -> Disposition {
        match msg {
            Message::DeliveryJob(job) if job.connector == self.name() => {
                self.deliver(job, attempt).await
            }
            Message::DeliveryJob(job) => {
                self.count("wrong_queue");
                Disposition::park(format!(
                    "job for connector `{}` arrived on the queue of `{}`; `wecom-bridge replay` it to deliver.{}",
                    job.connector,
                    self.name(),
                    job.connector
                ))
            }
            Message::Event { kind, .. } => {
                self.count("wrong_queue");
                Disposition::park(format!(
                    "a `{kind}` event arrived on a deliver queue; replay it to the route queue"
                ))
            }
            Message::Writeback(job) => {
                self.count("wrong_queue");
                Disposition::park(format!(
                    "writeback job {}.{} arrived on a deliver queue; it belongs on {WRITEBACK_QUEUE}",
                    job.key,
                    job.kind.as_str()
                ))
            }
        }
    }
}

/// The applicant's user id of an approval job (empty for other inputs).
fn applicant(input: &MapInput) -> String {
    match input {
        MapInput::Approval(a) => a.applicant.user_id.clone(),
        MapInput::ApprovalDocument(doc) => doc
            .pointer("/applicant/user_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        MapInput::Contact(_) | MapInput::Customer(_) => String::new(),
    }
}

/// The ledger's record of one attempt.
pub fn to_record(a: &Attempt) -> AttemptRecord {
    let (classification, reason) = match &a.verdict {
        Verdict::Delivered => (Classification::Delivered, None),
        Verdict::Duplicate => (Classification::Duplicate, None),
        Verdict::DryRun => (Classification::DryRun, None),
        Verdict::Retryable { reason, .. } => (Classification::Retryable, Some(reason.clone())),
        Verdict::Permanent { reason } => (Classification::Permanent, Some(reason.clone())),
    };
    let captured: BTreeMap<String, String> = a
        .captured
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    AttemptRecord {
        number: 0,
        started_at_ms: a.started_at_ms,
        duration_ms: a.duration.as_millis() as u64,
        method: a.request.method.clone(),
        url: a.request.url.clone(),
        status: a.response.as_ref().map(|r| r.status),
        classification,
        reason,
        captured,
        payload: Some(AttemptPayload {
            request_headers: a.request.headers.clone(),
            request_body: Some(a.request.body.clone()),
            response_headers: a
                .response
                .as_ref()
                .map(|r| r.headers.clone())
                .unwrap_or_default(),
            response_body: a.response.as_ref().map(|r| r.body.clone()),
        }),
    }
}
