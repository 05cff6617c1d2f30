//! The outbox relay: drains unpublished journal entries to the broker's route queue.
//!
//! An entry is marked published only after the broker confirmed it, so a crash between the
//! two republishes it (at-least-once; the route stage is idempotent). While the broker is
//! down, ingress keeps journaling; the relay backs off, reports the backlog (metric
//! `wecom_bridge_outbox_backlog`, `/readyz`), and drains it when the broker returns.

use std::time::Duration;

use futures_util::StreamExt;

use super::{Journal, event_id};
use crate::broker::{Broker, BrokerError, Envelope, ROUTE_QUEUE};
use crate::stage::message::event_envelope;
use crate::stage::{Backoff, EventId, Shutdown};
use crate::store::StoredEntry;

/// Entries read from the outbox per round.
const BATCH: usize = 512;
/// Publishes awaiting their confirms at once.
const IN_FLIGHT: usize = 128;

/// The broker envelope of a journal entry (decrypting its payload).
pub fn envelope_of(
    journal: &Journal,
    entry: &StoredEntry,
) -> Result<Envelope, super::JournalError> {
    let r = &entry.record;
    Ok(event_envelope(
        &EventId::new(event_id(&r.content_hash)),
        &r.kind,
        &r.business_key,
        &r.app,
        r.received_at_ms,
        journal.cipher().open(r)?,
    ))
}

/// Runs until `shutdown` turns true. Publishes to [`ROUTE_QUEUE`].
pub async fn run<B: Broker>(journal: Journal, broker: B, mut shutdown: Shutdown) {
    let appended = journal.appended();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        if shutdown.is_stopping() {
            return;
        }
        let store = journal.store().clone();
        let pending = match tokio::task::spawn_blocking(move || store.outbox_pending(BATCH)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "outbox relay cannot read the journal; retrying");
                shutdown.sleep(backoff.next_delay()).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox relay task failed; retrying");
                shutdown.sleep(backoff.next_delay()).await;
                continue;
            }
        };
        if pending.is_empty() {
            metrics::gauge!("wecom_bridge_outbox_backlog").set(0.0);
            tokio::select! {
                _ = appended.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.stopped() => {}
            }
            continue;
        }
        let (published, failed) = publish_all(&journal, &broker, pending).await;
        if !published.is_empty() {
            let store = journal.store().clone();
            let n = published.len();
            match tokio::task::spawn_blocking(move || store.mark_published(&published)).await {
                Ok(Ok(())) => {
                    metrics::counter!("wecom_bridge_outbox_published_total").increment(n as u64);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "marking entries published failed; they will be published again (harmless duplicates)")
                }
                Err(e) => tracing::error!(error = %e, "marking entries published failed"),
            }
        }
        match failed {
            None => {
                if backoff.failures() > 0 {
                    tracing::info!("broker reachable again; outbox relay resumed");
                }
                backoff.reset();
            }
            Some(e) => {
                let delay = backoff.next_delay();
                let store = journal.store().clone();
                let backlog = tokio::task::spawn_blocking(move || store.journal_counts())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map_or(0, |c| c.unpublished);
                metrics::gauge!("wecom_bridge_outbox_backlog").set(backlog as f64);
                if backoff.failures() == 1 || backoff.failures().is_multiple_of(20) {
                    tracing::warn!(error = %e, backlog, retry_in_ms = delay.as_millis() as u64,
                        "broker publish failed; ingress keeps accepting and journaling, the backlog drains when the broker is back");
                }
                shutdown.sleep(delay).await;
            }
        }
    }
}

async fn publish_all<B: Broker>(
    journal: &Journal,
    broker: &B,
    pending: Vec<StoredEntry>,
) -> (Vec<u64>, Option<BrokerError>) {
    let publishes = pending.into_iter().map(|entry| {
        let (journal, broker) = (journal.clone(), broker.clone());
        async move {
            let envelope = match envelope_of(&journal, &entry) {
                Ok(env) => env,
                Err(e) => {
                    tracing::error!(seq = entry.seq, error = %e, "journal entry cannot be decrypted; it stays in the outbox until its key is configured");
                    return (entry.seq, Err(BrokerError::BadEnvelope(e.to_string())));
                }
            };
            (entry.seq, broker.publish(ROUTE_QUEUE, &envelope).await)
        }
    });
    let results: Vec<(u64, Result<(), BrokerError>)> = futures_util::stream::iter(publishes)
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut ok = Vec::with_capacity(results.len());
    let mut failed = None;
    for (seq, r) in results {
        match r {
            Ok(()) => ok.push(seq),
            Err(e) => failed = Some(e),
        }
    }
    (ok, failed)
}
