//! The one consume-and-settle loop.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::{Backoff, Disposition, Handler, Message, Retry, RetryPolicy, Shutdown};
use crate::broker::{Broker, Delivery};
use crate::telemetry::STAGE_MESSAGES;

/// Consumes `queue` until `shutdown`, handing each decoded message to `handler` with up to
/// `concurrency` in flight, and settles each delivery once by the handler's [`Disposition`]:
///
/// - `Done` → ack;
/// - `Retry` → `retry_after` the delay [`RetryPolicy::decide`] picks for this attempt and
///   hint, or parked once attempts are used up;
/// - `Wait` → `defer`red by its delay with the same attempt (never parked by count);
/// - `Park` → dead-lettered with the reason;
/// - an envelope that cannot be decoded → parked with the decoding error.
///
/// Every outcome is counted in `wecom_bridge_stage_messages_total{stage, outcome}` and every
/// retry or park is logged with the message id, business key, attempt and a hint for the
/// operator. `concurrency` bounds the handler calls in flight, not the settlements: once a
/// handler answered, its delivery is settled while the next message is already handled, so
/// the settlements of consecutive messages reach the broker together (the embedded broker
/// commits them in one transaction). The order of handling is unchanged, and the broker's
/// prefetch still bounds the deliveries held (each is held until settled). After a broker
/// error the loop lets in-flight messages settle, then re-subscribes with back-off. On shutdown, messages still in flight are dropped unsettled:
/// the broker delivers them again (handlers are idempotent).
pub async fn run<B: Broker, H: Handler>(
    broker: B,
    queue: String,
    handler: Arc<H>,
    policy: RetryPolicy,
    concurrency: usize,
    mut shutdown: Shutdown,
) {
    let concurrency = concurrency.max(1);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let stage = handler.stage();
    while !shutdown.is_stopping() {
        let mut consumer = match broker.consume(&queue).await {
            Ok(c) => {
                backoff.reset();
                c
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(stage, %queue, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "cannot consume; retrying (check the broker: `wecom-bridge queues`)");
                if !shutdown.sleep(delay).await {
                    return;
                }
                continue;
            }
        };
        let mut in_flight = FuturesUnordered::new();
        let mut settling = FuturesUnordered::new();
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                _ = stop.stopped() => return,
                Some((d, disposition)) = in_flight.next(), if !in_flight.is_empty() => {
                    settling.push(settle(d, disposition, stage, &policy, &queue));
                }
                Some(()) = settling.next(), if !settling.is_empty() => {}
                next = consumer.next(), if in_flight.len() < concurrency => match next {
                    Some(Ok(d)) => in_flight.push(handle(d, handler.clone(), &queue)),
                    Some(Err(e)) => {
                        tracing::warn!(stage, %queue, error = %e, "consumer error; re-subscribing");
                        break;
                    }
                    None => break,
                },
            }
        }
        // let what is in flight settle on the old deliveries before subscribing again
        while !(in_flight.is_empty() && settling.is_empty()) {
            tokio::select! {
                _ = stop.stopped() => return,
                Some((d, disposition)) = in_flight.next(), if !in_flight.is_empty() => {
                    settling.push(settle(d, disposition, stage, &policy, &queue));
                }
                Some(()) = settling.next(), if !settling.is_empty() => {}
            }
        }
    }
}

/// Handles one delivery: its disposition (an undecodable envelope is parked).
async fn handle<D: Delivery, H: Handler>(d: D, handler: Arc<H>, queue: &str) -> (D, Disposition) {
    let stage = handler.stage();
    let attempt = d.attempt();
    let disposition = match Message::decode(d.envelope()) {
        Ok(msg) => handler.handle(msg, attempt).await,
        Err(e) => {
            let reason = error_chain(&e);
            let (id, business_key) = (&d.envelope().id, &d.envelope().business_key);
            tracing::error!(stage, %queue, message_id = %id, %business_key, attempt, error = %reason,
                "message cannot be decoded by this build; parked (was it written by a newer version? \
                 upgrade, then `wecom-bridge replay`)");
            count(stage, "undecodable");
            Disposition::park(format!("cannot be decoded: {reason}"))
        }
    };
    (d, disposition)
}

/// Settles one handled delivery by its disposition.
async fn settle<D: Delivery>(
    d: D,
    disposition: Disposition,
    stage: &'static str,
    policy: &RetryPolicy,
    queue: &str,
) {
    let attempt = d.attempt();
    let (id, business_key) = (d.envelope().id.clone(), d.envelope().business_key.clone());
    let settled = match disposition {
        Disposition::Done { outcome } => {
            count(stage, outcome);
            d.ack().await
        }
        Disposition::Retry { reason, hint } => match policy.decide(attempt, hint) {
            Retry::After(delay) => {
                tracing::warn!(stage, %queue, message_id = %id, %business_key, attempt,
                    retry_in_s = delay.as_secs(), hint_s = hint.map(|h| h.as_secs()), %reason,
                    "handling failed; will retry (nothing to do unless it keeps failing)");
                count(stage, "retry");
                d.retry_after(delay).await
            }
            Retry::Park => {
                tracing::error!(stage, %queue, message_id = %id, %business_key, attempt, %reason,
                    "giving up after {attempt} attempts; parked (fix the cause, then \
                     `wecom-bridge dead-letters` and `replay`)");
                count(stage, "dead_letter");
                d.dead_letter(&format!("{reason} (after {attempt} attempts)"))
                    .await
            }
        },
        Disposition::Wait { reason, delay } => {
            tracing::info!(stage, %queue, message_id = %id, %business_key, attempt,
                wait_s = delay.as_secs(), %reason, "waiting; not counted as an attempt");
            count(stage, "waiting");
            d.defer(delay).await
        }
        Disposition::Park { reason } => {
            tracing::error!(stage, %queue, message_id = %id, %business_key, attempt, %reason,
                "cannot be handled until an operator acts; parked (fix the cause, then \
                 `wecom-bridge dead-letters` and `replay`)");
            count(stage, "dead_letter");
            d.dead_letter(&reason).await
        }
    };
    if let Err(e) = settled {
        count(stage, "settle_failed");
        tracing::warn!(stage, %queue, message_id = %id, attempt, error = %e,
            "settling failed; the message will be delivered again (handling is idempotent)");
    }
}

fn count(stage: &'static str, outcome: &'static str) {
    metrics::counter!(STAGE_MESSAGES, "stage" => stage, "outcome" => outcome).increment(1);
}

/// An error and its sources, `: `-separated, for a parking reason or a probe's detail an
/// operator reads (a library's own text is often terse).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
