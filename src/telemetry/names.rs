//! Metric names, defined once. Call sites use these constants instead of string
//! literals, so a rename is one edit and a typo is a compile error; tests that scrape
//! `/metrics` use them too.
//!
//! Every name carries the `wecom_bridge_` prefix; counters end in `_total`. This module
//! only names metrics: it must not record them.

/// Counter: callbacks answered, by `app` and `outcome` (accepted, duplicate, quarantined, …).
pub const CALLBACKS: &str = "wecom_bridge_callbacks_total";
/// Counter: callbacks refused before they were stored, by `app` and `reason`.
pub const CALLBACKS_REJECTED: &str = "wecom_bridge_callbacks_rejected_total";
/// Counter: URL verifications answered, by `app`.
pub const URL_VERIFICATIONS: &str = "wecom_bridge_url_verifications_total";
/// Gauge: open connections, by `listener`.
pub const CONNECTIONS_OPEN: &str = "wecom_bridge_connections_open";
/// Counter: connections refused (over the cap, accept errors), by `listener` and `reason`.
pub const CONNECTIONS_REFUSED: &str = "wecom_bridge_connections_refused_total";
/// Counter: connections closed on a protocol error or timeout, by `listener` and `reason`.
pub const CONNECTIONS_CLOSED: &str = "wecom_bridge_connections_closed_total";
/// Counter: admin requests refused by the guard, by `reason`.
pub const ADMIN_REFUSED: &str = "wecom_bridge_admin_refused_total";
/// Gauge: journal records not yet published to the broker.
pub const OUTBOX_BACKLOG: &str = "wecom_bridge_outbox_backlog";
/// Histogram: seconds one journal group commit took.
pub const JOURNAL_COMMIT_SECONDS: &str = "wecom_bridge_journal_commit_seconds";
/// Histogram: records per journal group commit.
pub const JOURNAL_BATCH_SIZE: &str = "wecom_bridge_journal_batch_size";
/// Gauge: 1 while the store accepts writes, 0 while it is faulted.
pub const STORE_HEALTHY: &str = "wecom_bridge_store_healthy";
/// Counter: I/O errors that faulted the store.
pub const STORE_FAULTS: &str = "wecom_bridge_store_faults_total";
/// Counter: store write transactions committed, by `what` (journal, queue, forms, ledger,
/// audit, health) and `durable` (`true`: flushed with fsync before returning).
pub const STORE_COMMITS: &str = "wecom_bridge_store_commits_total";
/// Counter: queued messages that did not open with the configured keys (parked).
pub const STORE_UNOPENABLE: &str = "wecom_bridge_store_unopenable_total";
