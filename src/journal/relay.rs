//! The outbox relay: publishes new journal entries to the broker's route queue.
//!
//! An entry is marked published only after the broker confirmed it, so a crash between the
//! two republishes it (at-least-once; the route stage is idempotent). While the broker is
//! down, ingress keeps journaling; the relay backs off, reports the backlog (metric
//! `wecom_bridge_outbox_backlog`, `/readyz`), and drains it when the broker returns.
//!
//! Where entries come from: normally from the journal writer in memory ([`HandoffRx`]), each
//! with the envelope ingress built while it had the plaintext, so the relay neither reads nor
//! decrypts them. The store's outbox stays the record: the relay *reads the outbox* at
//! start (whatever a crash or a stop left), after a failed publish, when the writer dropped a
//! hand-off (channel full), and after 5 s without hand-offs; it keeps reading it, discarding
//! hand-offs (each is in the outbox already), until the outbox is empty. Marks are
//! non-durable commits: one lost to a crash only republishes its entries.

use std::time::Duration;

use futures_util::StreamExt;

use super::{Handoff, HandoffRx, Journal, event_id};
use crate::broker::{Broker, BrokerError, Envelope, ROUTE_QUEUE};
use crate::stage::message::event_envelope;
use crate::stage::{Backoff, EventId, Shutdown};
use crate::store::StoredEntry;

/// Entries read from the outbox, or taken from the hand-off, per round.
const BATCH: usize = 512;
/// Publishes awaiting their confirms at once.
const IN_FLIGHT: usize = 128;
/// Without hand-offs for this long, the relay looks at the outbox (a safety net).
const IDLE_LOOK: Duration = Duration::from_secs(5);

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

/// What the relay does next.
enum Round {
    /// Publish these (read from the outbox, or handed over).
    Publish(Vec<(u64, Result<Envelope, BrokerError>)>),
    /// Nothing to publish now; look again.
    Again,
    /// Stop (shutdown).
    Stop,
}

/// The relay's position: reading the outbox or taking hand-offs.
struct Source {
    journal: Journal,
    handoff: Option<HandoffRx>,
    /// Read the outbox next (until it is empty).
    reading: bool,
    /// The highest sequence number published from an outbox read: a later hand-off at or
    /// below it was published already.
    read_up_to: u64,
    buf: Vec<Handoff>,
}

impl Source {
    async fn next(&mut self, shutdown: &mut Shutdown, backoff: &mut Backoff) -> Round {
        if shutdown.is_stopping() {
            return Round::Stop;
        }
        if self.reading || self.handoff.is_none() {
            return self.read_outbox(shutdown, backoff).await;
        }
        let handoff = self.handoff.as_mut().expect("checked just above");
        self.buf.clear();
        let taken = tokio::select! {
            n = handoff.recv_many(&mut self.buf, BATCH) => n,
            _ = tokio::time::sleep(IDLE_LOOK) => {
                self.reading = true;
                return Round::Again;
            }
            _ = shutdown.stopped() => return Round::Stop,
        };
        if taken == 0 || handoff.missed() {
            // the writer stopped, or dropped a hand-off: the outbox has the rest
            self.reading = true;
            return Round::Again;
        }
        let read_up_to = self.read_up_to;
        Round::Publish(
            self.buf
                .drain(..)
                .filter(|h| h.seq > read_up_to)
                .map(|h| (h.seq, Ok(h.envelope)))
                .collect(),
        )
    }

    async fn read_outbox(&mut self, shutdown: &mut Shutdown, backoff: &mut Backoff) -> Round {
        if let Some(handoff) = &mut self.handoff {
            handoff.discard_all();
        }
        let store = self.journal.store().clone();
        let pending = match tokio::task::spawn_blocking(move || store.outbox_pending(BATCH)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "outbox relay cannot read the journal; retrying");
                shutdown.sleep(backoff.next_delay()).await;
                return Round::Again;
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox relay task failed; retrying");
                shutdown.sleep(backoff.next_delay()).await;
                return Round::Again;
            }
        };
        if pending.is_empty() {
            metrics::gauge!("wecom_bridge_outbox_backlog").set(0.0);
            self.reading = false;
            if self.handoff.is_none() {
                let appended = self.journal.appended();
                tokio::select! {
                    _ = appended.notified() => {}
                    _ = tokio::time::sleep(IDLE_LOOK) => {}
                    _ = shutdown.stopped() => {}
                }
            }
            return Round::Again;
        }
        self.read_up_to = self.read_up_to.max(pending.last().map_or(0, |e| e.seq));
        Round::Publish(
            pending
                .iter()
                .map(|entry| (entry.seq, decrypted(&self.journal, entry)))
                .collect(),
        )
    }
}

fn decrypted(journal: &Journal, entry: &StoredEntry) -> Result<Envelope, BrokerError> {
    envelope_of(journal, entry).map_err(|e| {
        tracing::error!(seq = entry.seq, error = %e, "journal entry cannot be decrypted; it stays in the outbox until its key is configured");
        BrokerError::BadEnvelope(e.to_string())
    })
}

/// Runs until `shutdown` turns true. Publishes to [`ROUTE_QUEUE`].
pub async fn run<B: Broker>(journal: Journal, broker: B, mut shutdown: Shutdown) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut source = Source {
        handoff: journal.take_handoff(),
        journal: journal.clone(),
        // at start: whatever the last run left in the outbox
        reading: true,
        read_up_to: 0,
        buf: Vec::with_capacity(BATCH),
    };
    loop {
        let batch = match source.next(&mut shutdown, &mut backoff).await {
            Round::Publish(batch) => batch,
            Round::Again => continue,
            Round::Stop => return,
        };
        let (published, failed) = publish_all(&broker, batch).await;
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
                // what failed stays in the outbox: read it from there
                source.reading = true;
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
    broker: &B,
    batch: Vec<(u64, Result<Envelope, BrokerError>)>,
) -> (Vec<u64>, Option<BrokerError>) {
    let publishes = batch.into_iter().map(|(seq, envelope)| {
        let broker = broker.clone();
        async move {
            match envelope {
                Ok(env) => (seq, broker.publish(ROUTE_QUEUE, &env).await),
                Err(e) => (seq, Err(e)),
            }
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
