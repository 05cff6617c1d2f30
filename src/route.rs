//! Route: approval lifecycle, enrichment from the WeCom API, and fan-out to one delivery job
//! per (event, mapping, connector).
//!
//! For now (the lifecycle and routing issue fills it) this is the consumer of the route queue
//! that proves messages flow end to end: it logs each event and acknowledges it. It must stay
//! idempotent: the broker delivers at least once.

use std::time::Duration;

use tokio::sync::watch;

use crate::broker::{Broker, Delivery, ROUTE_QUEUE};

/// Consumes the route queue until `shutdown` turns true, re-subscribing after broker errors.
pub async fn run<B: Broker>(broker: B, mut shutdown: watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(200);
    while !*shutdown.borrow() {
        let mut consumer = match broker.consume(ROUTE_QUEUE).await {
            Ok(c) => {
                delay = Duration::from_millis(200);
                c
            }
            Err(e) => {
                tracing::warn!(queue = ROUTE_QUEUE, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot consume; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        loop {
            tokio::select! {
                next = consumer.next() => match next {
                    Some(Ok(d)) => settle(d).await,
                    Some(Err(e)) => {
                        tracing::warn!(queue = ROUTE_QUEUE, error = %e, "consumer error; re-subscribing");
                        break;
                    }
                    None => break,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn settle<D: Delivery>(d: D) {
    let env = d.envelope();
    tracing::info!(
        event_id = %env.id,
        kind = %env.kind,
        business_key = %env.business_key,
        attempt = d.attempt(),
        "route: event received"
    );
    let kind = env.kind.clone();
    match d.ack().await {
        Ok(()) => metrics::counter!("wecom_bridge_route_events_total", "kind" => kind).increment(1),
        Err(e) => tracing::warn!(error = %e, "ack failed; the event will be delivered again"),
    }
}
