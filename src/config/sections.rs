//! The configuration's sections below [`Config`](super::Config): listeners, store, journal,
//! broker, stages, apps and the rest, with their defaults; and what validation builds
//! ([`Validated`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::SecretRef;
use crate::stage::RetryPolicy;

/// Settings of the queue stages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagesConfig {
    /// The route stage (consumes the `route` queue).
    pub route: StageConfig,
    /// The deliver stage (consumes the `deliver.<connector>` queues); a connector's own
    /// retry settings, where it has them, take precedence.
    pub deliver: StageConfig,
    /// The writeback stage (consumes the `writeback` queue: WeCom notifications).
    pub writeback: StageConfig,
}

/// Settings of one queue stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Retry delays in seconds by attempt (the last one repeats); each must be one of
    /// `broker.retry_tiers_secs`. Default: the tiers up to 600 s.
    #[serde(default)]
    pub retry_secs: Option<Vec<u64>>,
    /// Deliveries after which a message is parked.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest wait a hint (Retry-After, WeCom's rate-limit window) may ask for; one of the
    /// tiers. Default: the longest tier.
    #[serde(default)]
    pub max_hint_secs: Option<u64>,
    /// Messages handled at once. The route stage defaults to 1, which keeps the events of
    /// one form in order on the embedded broker.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            retry_secs: None,
            max_attempts: default_max_attempts(),
            max_hint_secs: None,
            concurrency: default_concurrency(),
        }
    }
}

fn default_max_attempts() -> u32 {
    12
}

fn default_concurrency() -> usize {
    1
}

/// What validation checked and built, for start-up to use without checking again.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The corp's time zone, parsed once.
    pub time_zone: jiff::tz::TimeZone,
    /// The route stage's retry policy and concurrency.
    pub route: StagePlan,
    /// The deliver stage's retry policy and concurrency (per deliver queue).
    pub deliver: StagePlan,
    /// The writeback stage's retry policy and concurrency.
    pub writeback: StagePlan,
    /// Per app: the corp id its API calls use.
    pub apps: BTreeMap<String, ValidApp>,
}

/// A stage's checked settings.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// When to retry and when to park.
    pub policy: RetryPolicy,
    /// Messages handled at once (at least 1).
    pub concurrency: usize,
}

/// An app's checked settings.
#[derive(Debug, Clone)]
pub struct ValidApp {
    /// `corp_id`, or the first receive-id.
    pub corp_id: String,
}

/// The delivery ledger (`[ledger]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Delivery records (jobs with their attempts) older than this are pruned; 0 keeps them
    /// forever.
    pub retention_days: u64,
    /// Seconds between pruning runs.
    pub prune_interval_secs: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            retention_days: 90,
            prune_interval_secs: 3600,
        }
    }
}

/// The WeCom server API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeComConfig {
    /// Base URL of the API; point it at a test server for tests and demos.
    pub api_base_url: String,
    /// Request timeout in seconds.
    pub timeout_secs: u64,
    /// Client-side limit for the approval APIs (WeCom allows 600/min per corp).
    pub approval_calls_per_minute: u32,
    /// The corp's time zone (IANA name); times in documents are RFC 3339 in this zone.
    pub time_zone: String,
}

impl Default for WeComConfig {
    fn default() -> Self {
        Self {
            api_base_url: "https://qyapi.weixin.qq.com/cgi-bin".into(),
            timeout_secs: 10,
            approval_calls_per_minute: 600,
            time_zone: "Asia/Shanghai".into(),
        }
    }
}

/// Reconciliation of missed callbacks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Run the sweep periodically (apps without a `secret` are skipped).
    pub enabled: bool,
    /// Seconds between sweeps.
    pub interval_secs: u64,
    /// How far back each sweep looks, by submit time (forms can be approved long after).
    pub lookback_days: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 1800,
            lookback_days: 31,
        }
    }
}

/// Where the catalog files are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Directory of mapping files; relative to the configuration file's folder. It must
    /// exist (an empty folder means no mappings).
    pub mappings_dir: PathBuf,
    /// Directory of connector files; relative to the configuration file's folder. It must
    /// exist.
    pub connectors_dir: PathBuf,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            mappings_dir: PathBuf::from("mappings"),
            connectors_dir: PathBuf::from("connectors"),
        }
    }
}

/// The public (WeCom-facing) HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`; port 0 picks a free port.
    pub listen: String,
    /// Largest accepted callback body in bytes; larger requests get 413 (a larger declared
    /// `Content-Length` before the body is read).
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests before closing their connections.
    pub shutdown_grace_secs: u64,
    /// Time a client has to send a complete request head; also the longest a keep-alive
    /// connection may sit idle. Applies to both listeners.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send the whole body once its headers are in (WeCom sends its
    /// few KiB at once).
    pub body_read_timeout_ms: u64,
    /// Connections served at once on each listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// Refused callbacks are logged at most once per app, reason and this many seconds
    /// (with the number suppressed); the metric counts every one. 0 logs every refusal.
    pub refusal_log_interval_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            shutdown_grace_secs: 10,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 5_000,
            max_connections: 1024,
            refusal_log_interval_secs: 60,
        }
    }
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin API (`/admin/*`, `/metrics`, `/healthz`, `/readyz`).
    pub listen: String,
    /// Bearer token required by `/admin/*`. Required when `listen` is not a loopback address.
    pub token: Option<SecretRef>,
    /// Extra `Host` names accepted by `/admin/*` (e.g. `bridge-admin.internal` or
    /// `bridge-admin.internal:8081`; without a port any port matches). `localhost`,
    /// `127.0.0.1`, `[::1]` and the listen address, with the listener's port, are always
    /// accepted. Anything else is refused, which defeats DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Named tokens with a role (`[[admin.users]]`), for the admin API and the console.
    /// `admin.token`, if set, stays valid as a token named `admin` with the `admin` role.
    pub users: Vec<crate::console::AdminUser>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            token: None,
            allowed_hosts: Vec::new(),
            users: Vec::new(),
        }
    }
}

/// The embedded store (redb).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Path of the database file. Relative paths are relative to the configuration file's
    /// folder.
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/bridge.redb"),
        }
    }
}

/// The intake journal: encryption at rest and de-duplication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Key id used to encrypt new entries; must be a key of `keys`.
    pub active_key: String,
    /// Encryption keys by id: each a reference to 32 bytes, hex or base64 encoded.
    /// Old keys stay listed so that entries written with them can still be read.
    pub keys: BTreeMap<String, SecretRef>,
    /// If the active key is a `file:` reference to a file that does not exist, create it
    /// with a fresh random key. Meant for a first local run; production should provision keys.
    pub create_key_if_missing: bool,
    /// How long content hashes of accepted callbacks are kept to drop WeCom re-deliveries.
    /// At least 24 hours.
    pub dedup_retention_hours: u64,
    /// Most callbacks committed in one transaction (group commit).
    pub max_batch: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            active_key: "local-1".into(),
            keys: BTreeMap::from([(
                "local-1".to_string(),
                SecretRef::parse("file:./data/journal.key"),
            )]),
            create_key_if_missing: false,
            dedup_retention_hours: 48,
            max_batch: 1024,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `wecom_bridge=debug,info`; `RUST_LOG` wins if set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which broker carries events between stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `embedded` (default, on the local store) or `rabbitmq`.
    pub kind: BrokerKind,
    /// AMQP URL, by reference (`env:AMQP_URL`) or literal; required for `rabbitmq`.
    pub url: Option<SecretRef>,
    /// Prefix of every exchange and queue name, so several bridges can share one vhost.
    pub prefix: String,
    /// Unacknowledged deliveries per consumer.
    pub prefetch: u16,
    /// Delays of the retry tiers, in seconds, shortest first.
    pub retry_tiers_secs: Vec<u64>,
    /// Deliveries after which a message is parked as a dead letter.
    pub delivery_limit: u32,
    /// Visibility timeout of the embedded broker: a leased message not settled within this
    /// many seconds is delivered again.
    pub lease_secs: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::Embedded,
            url: None,
            prefix: "wecom-bridge".into(),
            prefetch: 64,
            retry_tiers_secs: vec![5, 30, 120, 600, 3600],
            delivery_limit: 20,
            lease_secs: 60,
        }
    }
}

/// Broker back ends.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// Queues on the embedded store; zero setup, one machine.
    Embedded,
    /// RabbitMQ through AMQP 0-9-1.
    Rabbitmq,
}

/// One WeCom app (or third-party suite) whose callbacks this instance accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// URL path of the callback, e.g. `/wecom/callback`. Unique per app.
    pub path: String,
    /// The callback Token from the WeCom admin console.
    pub token: SecretRef,
    /// The 43-character EncodingAESKey from the WeCom admin console.
    pub encoding_aes_key: SecretRef,
    /// Receive-ids accepted inside decrypted messages: the CorpID for self-built apps,
    /// the SuiteID for third-party suite command callbacks.
    pub receive_ids: Vec<String>,
    /// The app's AgentID (used for notifications).
    #[serde(default)]
    pub agent_id: Option<i64>,
    /// CorpID for API calls; defaults to the first receive-id.
    #[serde(default)]
    pub corp_id: Option<String>,
    /// The app's Secret (应用 Secret) for the WeCom API: fetching approval details, contacts,
    /// reconciliation. Without it approval events cannot be enriched.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// `app` (self-built app: answer an empty 200) or `suite` (third-party suite: answer `success`).
    #[serde(default)]
    pub kind: AppKind,
    /// Refuse callbacks whose timestamp is further than `timestamp_window_secs` from now.
    /// On by default; turn off only to replay old captured requests (e.g. the doc samples).
    #[serde(default = "default_true")]
    pub check_timestamp: bool,
    /// Allowed clock difference in seconds between WeCom's timestamp and ours.
    #[serde(default = "default_window")]
    pub timestamp_window_secs: u64,
}

fn default_true() -> bool {
    true
}

fn default_window() -> u64 {
    300
}

/// How an app is set up in WeCom, which decides the answer to a callback.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// Self-built app (自建应用): WeCom expects an empty 200.
    #[default]
    App,
    /// Third-party suite command callback: WeCom expects the body `success`.
    Suite,
}
