//! The supervisor: watches the connection, re-declares after lapin's recovery, and rebuilds
//! the connection when that recovery gives up.

use super::*;

/// Watches the connection: logs losses and recoveries, re-declares the topology after lapin
/// recovered, and rebuilds the connection when lapin gave up (or has been stuck for
/// [`STUCK_AFTER`]).
pub(super) async fn supervise(weak: Weak<Inner>, mut shutdown: Shutdown) {
    let mut was_up = true;
    let mut down_since: Option<Instant> = None;
    loop {
        if !shutdown.sleep(SUPERVISE_TICK).await {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.is_shut_down() {
            return;
        }
        inner.reap_graveyard().await;
        let current = inner.link.borrow().clone();
        let state = current.as_ref().map(|l| conn_state(&l.conn));
        match state {
            Some(ConnectionState::Connected) => {
                if !was_up {
                    let after = down_since.map(|t| t.elapsed()).unwrap_or_default();
                    info!(prefix = %inner.names.prefix, down_ms = after.as_millis() as u64, "RabbitMQ connection recovered");
                    was_up = true;
                    down_since = None;
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        let link = inner.link.borrow().clone();
                        if let Some(link) = link {
                            let queues: Vec<String> =
                                read(&inner.declared).iter().cloned().collect();
                            if let Err(e) = op(inner.declare_on(&link, &queues)).await {
                                warn!(error = %e, "re-declaring the topology after recovery failed");
                            }
                        }
                    });
                }
            }
            Some(ConnectionState::Error | ConnectionState::Closed) | None => {
                warn!(prefix = %inner.names.prefix, ?state, "RabbitMQ connection recovery gave up; rebuilding the connection");
                was_up = false;
                down_since.get_or_insert_with(Instant::now);
                inner.link.send_replace(None);
                drop(inner);
                if !rebuild(&weak, &mut shutdown).await {
                    return;
                }
            }
            Some(state) => {
                let since = *down_since.get_or_insert_with(Instant::now);
                if was_up {
                    warn!(prefix = %inner.names.prefix, ?state, "RabbitMQ connection lost; recovering");
                    was_up = false;
                }
                if since.elapsed() >= STUCK_AFTER {
                    warn!(prefix = %inner.names.prefix, ?state, down_s = since.elapsed().as_secs(), "RabbitMQ connection recovery is stuck; rebuilding the connection");
                    if let Some(old) = inner.link.send_replace(None) {
                        lock(&inner.graveyard).push((Instant::now(), old));
                    }
                    drop(inner);
                    if !rebuild(&weak, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Builds a new connection, forever with back-off, and installs it. Returns false if the
/// broker shut down (or was dropped) meanwhile.
pub(super) async fn rebuild(weak: &Weak<Inner>, shutdown: &mut Shutdown) -> bool {
    let mut backoff = rebuild_backoff();
    loop {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        if inner.is_shut_down() {
            return false;
        }
        match tokio::time::timeout(REBUILD_ATTEMPT_TIMEOUT, inner.open_and_declare()).await {
            Ok(Ok(link)) => {
                inner.link.send_replace(Some(link));
                if inner.is_shut_down() {
                    if let Some(link) = inner.link.send_replace(None) {
                        close_connection(&link.conn).await;
                    }
                    return false;
                }
                info!(prefix = %inner.names.prefix, "RabbitMQ connection rebuilt");
                return true;
            }
            Ok(Err(e)) => warn!(error = %e, "rebuilding the RabbitMQ connection failed"),
            Err(_) => warn!("rebuilding the RabbitMQ connection timed out"),
        }
        drop(inner);
        if !shutdown.sleep(backoff.next_delay()).await {
            return false;
        }
    }
}
