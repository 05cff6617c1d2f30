//! Test servers that speak the real protocols of systems the bridge cannot reach in a test:
//! WeCom's server API ([`wecom`]), a finance system's voucher API ([`finance`]) and its OAuth2
//! token endpoint ([`oauth`]), a generic JSON target ([`inbox`]), and the ERP, HR and CRM systems our users run: Kingdee
//! ([`kingdee`]), Yonyou YonBIP ([`yonbip`]) and U8 EAI ([`u8`]), Beisen ([`beisen`]),
//! FxiaoKe ([`fxiaoke`]) and Salesforce ([`salesforce`]), on a shared recording server
//! ([`vendor_server`]).
//!
//! Each stand-in answers byte for byte as the real system does on the paths the bridge calls,
//! including its error codes and limits, and records what it received, so tests drive the real
//! client code against it and count deliveries at the target. They are compiled into the binary
//! (not `#[cfg(test)]`) because the `demo` command runs the bridge against them. A stand-in must
//! NOT be used on a production path, and must NOT simplify the protocol it imitates: where the
//! real system is awkward, so is the stand-in.

pub mod beisen;
pub mod finance;
pub mod fxiaoke;
pub mod inbox;
pub mod kingdee;
pub mod oauth;
pub mod salesforce;
pub mod u8;
pub mod vendor_server;
pub mod wecom;
pub mod yonbip;

/// A stand-in server running on a loopback port: its address, and what stops it.
#[derive(Debug)]
pub(crate) struct Running {
    /// Where it listens.
    pub(crate) addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Asks the server to stop and waits until it has.
    pub(crate) async fn stop(mut self) {
        self.signal();
        let _ = (&mut self.task).await;
    }

    /// Asks the server to stop and waits at most `limit`, then aborts it.
    pub(crate) async fn stop_within(mut self, limit: std::time::Duration) {
        self.signal();
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }

    fn signal(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `router` on an ephemeral loopback port until the returned server is stopped;
/// `name` appears in the panic and the log line. Every HTTP stand-in starts this way.
///
/// # Panics
/// If no loopback port can be bound (a broken test environment).
pub(crate) async fn serve_loopback(router: axum::Router, name: &'static str) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind the {name} to 127.0.0.1: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local address of the {name}: {e}"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, stand_in = name, "stand-in stopped with an error");
        }
    });
    Running {
        addr,
        shutdown: Some(tx),
        task,
    }
}
