//! Writeback: tells people in WeCom what became of a delivery job. When a job of a mapping with
//! `[writeback.delivered]` is delivered, the applicant gets a text card (with, say, the voucher
//! number the target answered); when a job of a mapping with `[writeback.dead]` is parked, the
//! configured operators get one with the reason.
//!
//! The deliver stage renders the notification ([`spec`]), records it pending in the ledger in
//! the same write as the job's outcome, and publishes a [`WritebackJob`] to the `writeback`
//! queue. This stage consumes that queue on the shared stage loop: it sends the message with
//! WeCom's `message/send` (the job's app, its `agent_id` and secret) and records the outcome on
//! the job in the ledger (`wecom-bridge deliveries show`). A failed send is retried here on the
//! stage's own schedule (WeCom's rate-limit wait honoured as a hint); it never re-sends the
//! document. A notification the ledger records as sent is not sent again, and every message
//! asks WeCom for its duplicate check as a second guard.
//!
//! It must not talk to targets, run mappings, or settle deliveries itself.

pub mod spec;

use std::collections::HashMap;

use serde_json::json;

use crate::record::{Ledger, LedgerError, WritebackResult, WritebackState};
use crate::stage::{Disposition, Handler, Message, Retry, RetryPolicy, WritebackJob};
use crate::wecom::api::{ApiError, Credentials, SendResult, WeComApi};

/// Notifications handled by the writeback stage, by `kind` and `outcome`.
pub const WRITEBACK_NOTIFICATIONS: &str = "wecom_bridge_writeback_notifications_total";

/// How one app sends messages.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The app's API credentials, when its secret is configured.
    pub credentials: Option<Credentials>,
    /// The app's `agent_id` (`agentid` of `message/send`).
    pub agent_id: Option<i64>,
}

/// The writeback stage.
#[derive(Debug)]
pub struct WritebackStage {
    ledger: Ledger,
    api: WeComApi,
    senders: HashMap<String, Sender>,
    policy: RetryPolicy,
}

impl WritebackStage {
    /// A stage sending through `api` (rate limits are handed back as retry hints) with the
    /// apps' `senders`, retrying by `policy` (the stage loop's policy, so the stage knows the
    /// last attempt and records it as failed).
    pub fn new(
        ledger: Ledger,
        api: &WeComApi,
        senders: HashMap<String, Sender>,
        policy: RetryPolicy,
    ) -> Self {
        WritebackStage {
            ledger,
            api: api.returning_rate_limits(),
            senders,
            policy,
        }
    }

    fn count(job: &WritebackJob, outcome: &'static str) {
        metrics::counter!(WRITEBACK_NOTIFICATIONS, "kind" => job.kind.as_str(), "outcome" => outcome)
            .increment(1);
    }

    fn ledger_failed(job: &WritebackJob, e: &LedgerError) -> Disposition {
        Self::count(job, "ledger_failed");
        tracing::error!(job = %job.key, kind = job.kind.as_str(), error = %e,
            "the delivery ledger failed; the notification will be retried (check the store's disk)");
        Disposition::retry(format!("delivery ledger: {e}"))
    }

    async fn notify(&self, job: WritebackJob, attempt: u32) -> Disposition {
        let (key, kind) = (job.key.as_str(), job.kind);
        let now = crate::broker::now_ms();
        match self.ledger.writeback_begin(key, kind, now).await {
            Err(e) => return Self::ledger_failed(&job, &e),
            Ok(None) => {
                Self::count(&job, "unrecorded");
                tracing::warn!(job = %key, kind = kind.as_str(),
                    "no such notification in the ledger (pruned?); nothing sent");
                return Disposition::done("unrecorded");
            }
            Ok(Some(before)) if before.state == WritebackState::Sent => {
                Self::count(&job, "already_sent");
                return Disposition::done("already_sent");
            }
            Ok(Some(_)) => {}
        }
        let sender = self.senders.get(&job.app);
        let (creds, agent_id) = match sender {
            Some(Sender {
                credentials: Some(c),
                agent_id: Some(a),
            }) => (c, *a),
            Some(Sender {
                credentials: None, ..
            }) => {
                let reason = format!(
                    "apps.{}.secret is not configured: the bridge cannot call WeCom's message/send; \
                     set it, restart, then `wecom-bridge replay --queue writeback`",
                    job.app
                );
                return self.failed(&job, reason).await;
            }
            Some(Sender { agent_id: None, .. }) => {
                let reason = format!(
                    "apps.{}.agent_id is not configured (the app's AgentId, 应用管理 → your app); \
                     set it, restart, then `wecom-bridge replay --queue writeback`",
                    job.app
                );
                return self.failed(&job, reason).await;
            }
            None => {
                let reason = format!("app `{}` is not configured here", job.app);
                return self.failed(&job, reason).await;
            }
        };
        let mut msg = job.message.clone();
        msg["agentid"] = json!(agent_id);
        match self.api.send_message(creds, &msg).await {
            Ok(sent) => self.sent(&job, sent).await,
            Err(e) => self.send_failed(&job, &e, attempt).await,
        }
    }

    async fn sent(&self, job: &WritebackJob, sent: SendResult) -> Disposition {
        let invalid: Vec<String> = [&sent.invalid_user, &sent.invalid_party, &sent.invalid_tag]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if !invalid.is_empty() {
            tracing::warn!(job = %job.key, kind = job.kind.as_str(), invalid = %invalid.join("|"),
                "WeCom did not deliver the notification to some recipients (not members, or outside the app's visible range)");
        }
        let result = WritebackResult::Sent {
            msg_id: sent.msg_id,
            invalid,
        };
        // Sent but not recorded: a retry would send again; WeCom's duplicate check drops the
        // identical message, so retrying is the safe side.
        if let Err(d) = self.record(job, result).await {
            return d;
        }
        Self::count(job, "sent");
        tracing::info!(job = %job.key, sp_no = %job.business_key, kind = job.kind.as_str(), "notification sent");
        Disposition::done("sent")
    }

    async fn send_failed(&self, job: &WritebackJob, e: &ApiError, attempt: u32) -> Disposition {
        let reason = format!("WeCom message/send: {e}");
        let hint = WeComApi::retry_hint(e);
        if !e.is_retryable() || self.policy.decide(attempt, hint) == Retry::Park {
            let failed = self.failed(job, reason.clone()).await;
            // retryable but out of attempts: let the stage loop park it (it says after how many)
            return if e.is_retryable() {
                Disposition::Retry { reason, hint }
            } else {
                failed
            };
        }
        let result = WritebackResult::Retrying {
            reason: reason.clone(),
        };
        if let Err(d) = self.record(job, result).await {
            return d;
        }
        Self::count(job, "retried");
        Disposition::Retry { reason, hint }
    }

    /// Records how a send went; `Err` is the disposition of a ledger failure.
    async fn record(&self, job: &WritebackJob, result: WritebackResult) -> Result<(), Disposition> {
        let now = crate::broker::now_ms();
        self.ledger
            .writeback_settle(job.key.as_str(), job.kind, result, now)
            .await
            .map_err(|e| Self::ledger_failed(job, &e))
    }

    /// Records the notification as failed and parks it.
    async fn failed(&self, job: &WritebackJob, reason: String) -> Disposition {
        let result = WritebackResult::Failed {
            reason: reason.clone(),
        };
        if let Err(d) = self.record(job, result).await {
            return d;
        }
        Self::count(job, "failed");
        tracing::error!(job = %job.key, sp_no = %job.business_key, kind = job.kind.as_str(), %reason,
            "notification not sent; parked (fix the cause, then `wecom-bridge replay --queue writeback`)");
        Disposition::park(reason)
    }
}

impl Handler for WritebackStage {
    fn stage(&self) -> &'static str {
        "writeback"
    }

    async fn handle(&self, msg: Message, attempt: u32) -> Disposition {
        match msg {
            Message::Writeback(job) => self.notify(job, attempt).await,
            other => Disposition::park(format!(
                "a `{}` message arrived on the writeback queue; replay it to its own queue",
                other.kind()
            )),
        }
    }
}

#[cfg(test)]
mod tests;
