//! The stage contract: what every stage that consumes a queue (route, deliver, writeback)
//! shares, written once.
//!
//! - [`Handler`]: a stage answers each [`Message`] with one [`Disposition`]: done, retry (with
//!   a reason and an optional hint such as `Retry-After` or WeCom's rate-limit wait), or park
//!   (with a reason an operator can act on).
//! - [`run`]: the one consume-and-settle loop. It decodes envelopes (parking what it cannot
//!   read), calls the handler with up to `concurrency` messages in flight, counts attempts,
//!   turns a retry into a broker delay through the stage's [`RetryPolicy`], settles (ack /
//!   `retry_after` / dead-letter), logs with the event id, business key and attempt, counts
//!   every outcome in one metric with `stage` and `outcome` labels, and re-subscribes with
//!   back-off after broker errors.
//! - [`RetryPolicy`]: a configured schedule of delays (each one of the broker's tiers, checked
//!   when the configuration is loaded), the attempt after which a message is parked, and the
//!   largest wait a hint may ask for.
//! - [`Shutdown`]: the stop signal every long-running task takes, with the "sleep unless
//!   stopping" helper that replaces hand-written `select!`s.
//! - [`Backoff`]/[`backoff`]: the one exponential back-off of the crate (backon), used by the
//!   outbox relay, the RabbitMQ supervisor, start-up and the WeCom API client.
//! - [`message`]: the typed, versioned payloads that travel between stages.
//!
//! It must not know what a stage does: no WeCom, no mappings, no targets. It must not settle a
//! delivery anywhere else than in [`run`].

mod backoff;
pub mod message;
mod retry;
mod run;
mod shutdown;

use std::future::Future;
use std::time::Duration;

pub use backoff::{Backoff, backoff, backoff_plain};
pub use message::{DeliveryJob, EventId, JobKey, Message, MessageError, WritebackJob};
pub use retry::{Retry, RetryPolicy, RetryPolicyError};
pub(crate) use run::error_chain;
pub use run::run;
pub use shutdown::{Shutdown, ShutdownTrigger};

/// How a stage answers one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled; `outcome` is the metric label (e.g. `approved`, `recorded`, `unrouted`).
    Done {
        /// Metric label of what happened.
        outcome: &'static str,
    },
    /// Could not be handled now; try again later.
    Retry {
        /// What went wrong, for logs and, if retries run out, the parking reason.
        reason: String,
        /// The least wait the other side asked for (`Retry-After`, WeCom's 45009 window).
        /// The [`RetryPolicy`] honours it up to its `max_hint`.
        hint: Option<Duration>,
    },
    /// Not handled, and not a failed attempt either: come back after `delay` with the same
    /// attempt number (the deliver stage while its connector's circuit is open). Never parks:
    /// a target that is down for hours must not use up its jobs' retries while they wait.
    Wait {
        /// Why it waits, for the log.
        reason: String,
        /// How long.
        delay: Duration,
    },
    /// Retrying cannot help until an operator acts: park it with this reason.
    Park {
        /// What is wrong and what to fix, shown by `wecom-bridge dead-letters`.
        reason: String,
    },
}

impl Disposition {
    /// Done, with the metric label `outcome`.
    pub fn done(outcome: &'static str) -> Self {
        Disposition::Done { outcome }
    }

    /// Retry later without a hint.
    pub fn retry(reason: impl Into<String>) -> Self {
        Disposition::Retry {
            reason: reason.into(),
            hint: None,
        }
    }

    /// Park with a reason.
    pub fn park(reason: impl Into<String>) -> Self {
        Disposition::Park {
            reason: reason.into(),
        }
    }
}

/// A stage that consumes one queue. [`run`] calls it; it never settles deliveries itself.
pub trait Handler: Send + Sync + 'static {
    /// The stage's name: the `stage` label of its metrics and a log field (`route`, `deliver`).
    fn stage(&self) -> &'static str;

    /// Handles one decoded message. `attempt` is 1 on the first delivery. Must be idempotent:
    /// a message can be delivered again after a crash or a lost connection.
    fn handle(&self, msg: Message, attempt: u32) -> impl Future<Output = Disposition> + Send;
}
