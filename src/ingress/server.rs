//! The HTTP server loop of both listeners, with the bounds that `axum::serve` does not give:
//! a header-read timeout (which also closes idle keep-alive connections), a cap on
//! concurrent connections, and a shutdown that returns within the grace period whatever the
//! clients do.
//!
//! It owns sockets and connection tasks only. It knows nothing about WeCom: the body-read
//! timeout and the `Content-Length` check live in the callback handler, which knows the app.

use crate::telemetry::names;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::log_limit::LogLimiter;

/// Bounds applied to every connection of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time a client has to send a complete request head, and the longest a keep-alive
    /// connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones are answered 503 and closed.
    pub max_connections: usize,
    /// How long shutdown lets in-flight requests finish before closing their connections.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` turns true, then stops accepting, lets
/// in-flight requests finish for at most `limits.shutdown_grace`, and closes what is left.
/// `name` labels logs and metrics (`public`, `admin`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    name: &'static str,
    log_limit: Arc<LogLimiter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let open = metrics::gauge!(names::CONNECTIONS_OPEN, "listener" => name);
    let stop = async move {
        // `Ref` is not `Send`: drop it inside this future.
        let _ = shutdown.wait_for(|s| *s).await.map(|_| ());
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                open.set(connections.len() as f64);
            }
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // EMFILE/ENFILE and friends: back off a little instead of spinning.
                        if log_limit.admit(name, "accept_error").is_some() {
                            tracing::error!(listener = name, error = %e, hint = "raise the open-file limit (ulimit -n / LimitNOFILE) or lower server.max_connections", "cannot accept connections");
                        }
                        metrics::counter!(names::CONNECTIONS_REFUSED, "listener" => name, "reason" => "accept_error").increment(1);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let router = router.clone();
                        let drain = drain_rx.clone();
                        connections.spawn(async move {
                            serve_connection(stream, router, limits.header_read_timeout, name, drain).await;
                            drop(permit);
                        });
                        open.set(connections.len() as f64);
                    }
                    Err(_) => refuse_over_cap(stream, name, limits.max_connections, &log_limit),
                }
            }
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            connections = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs_f64(),
            "connections still open after the shutdown grace period; closing them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    open.set(0.0);
}

/// Over the cap: a short 503 if the socket takes it without waiting, then close.
fn refuse_over_cap(stream: TcpStream, name: &'static str, cap: usize, log_limit: &LogLimiter) {
    metrics::counter!(names::CONNECTIONS_REFUSED, "listener" => name, "reason" => "max_connections").increment(1);
    if let Some(suppressed) = log_limit.admit(name, "max_connections") {
        tracing::warn!(
            listener = name,
            max_connections = cap,
            suppressed,
            hint = "many clients hold connections open: if they are not WeCom, filter them in front of the bridge (IP allow-list); otherwise raise server.max_connections",
            "connection refused: too many open connections"
        );
    }
    let mut stream = stream;
    // `try_write` never waits: a client that does not read simply misses the answer.
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    });
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    header_read_timeout: Duration,
    name: &'static str,
    mut drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let draining = async move {
        // `Ref` is not `Send`: drop it before the connection is awaited again.
        let _ = drain.wait_for(|d| *d).await.map(|_| ());
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = draining => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        let reason = if e.is_timeout() {
            "header_timeout"
        } else if e.is_incomplete_message() {
            "incomplete"
        } else {
            "protocol_error"
        };
        metrics::counter!(names::CONNECTIONS_CLOSED, "listener" => name, "reason" => reason)
            .increment(1);
        tracing::debug!(listener = name, reason, error = %e, "connection closed");
    }
}
