//! The stop signal of long-running tasks.

use std::time::Duration;

use tokio::sync::watch;

/// Sends the stop signal (kept by whoever owns the tasks, e.g. the running bridge).
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Tells every [`Shutdown`] handle to stop. Idempotent.
    pub fn stop(&self) {
        // send_replace: works even when no handle is left listening
        self.0.send_replace(true);
    }

    /// A new handle listening to this trigger.
    pub fn handle(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }

    /// The raw watch channel (`true` = stop), for code that takes one.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// A clonable handle telling a task when to stop. When the trigger is dropped, the handle
/// reads as stopping too, so a task can never outlive its owner by accident.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A trigger and its first handle.
    pub fn channel() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Wraps an existing watch channel (`true` = stop).
    pub fn from_watch(rx: watch::Receiver<bool>) -> Self {
        Shutdown(rx)
    }

    /// A handle that never stops (tools and tests that run a stage until they drop it).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // leaked on purpose: a dropped sender would read as "stop"
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Whether stopping was requested (or the trigger is gone).
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once stopping is requested (or the trigger is gone).
    pub async fn stopped(&mut self) {
        // Err: the sender is gone, which means stop as well
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `d`; returns `false` (early) if stopping was requested meanwhile.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        if self.is_stopping() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_stopping(),
            _ = self.stopped() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleep_runs_to_the_end_unless_stopped() {
        let (trigger, mut s) = Shutdown::channel();
        assert!(s.sleep(Duration::from_millis(5)).await);
        let mut other = s.clone();
        let sleeper = tokio::spawn(async move { other.sleep(Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        trigger.stop();
        assert!(!sleeper.await.unwrap());
        assert!(s.is_stopping());
        assert!(!s.sleep(Duration::from_secs(1)).await);
        s.stopped().await;
    }

    #[tokio::test]
    async fn a_dropped_trigger_means_stop() {
        let (trigger, mut s) = Shutdown::channel();
        assert!(!s.is_stopping());
        drop(trigger);
        assert!(s.is_stopping());
        s.stopped().await;
        assert!(!Shutdown::never().is_stopping());
    }
}
