//! Configuration: `config/bridge.toml` layered with `BRIDGE_*` environment variables.
//!
//! Owns parsing and validating the configuration and resolving secret references
//! (`env:NAME`, `file:PATH`, or a literal). It does not open stores, sockets or clients:
//! `validate` is pure, and secrets are resolved in a separate step ([`Config::resolve`]).
//!
//! Environment overrides use `__` between levels, so `BRIDGE_SERVER__LISTEN=0.0.0.0:8080`
//! sets `server.listen` and `BRIDGE_APPS__DEMO__TOKEN=env:WECOM_TOKEN` sets the demo app's
//! token. Variables without `__` (for example `BRIDGE_ADMIN_TOKEN`, used as a secret) are
//! not treated as overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Deserialize;

use crate::stage::RetryPolicy;

/// The sample credentials published in WeCom's own documentation. They are public, so an
/// instance that serves them must say so loudly.
pub const DEMO_TOKEN: &str = "QDG6eK";
/// The documentation's sample EncodingAESKey (public; demo only).
pub const DEMO_ENCODING_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

/// The whole configuration as read from file and environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The public listener that WeCom posts to.
    #[serde(default)]
    pub server: ServerConfig,
    /// The operator listener: admin API, metrics, health.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The operator console on the admin listener.
    #[serde(default)]
    pub console: crate::console::ConsoleConfig,
    /// The embedded store.
    #[serde(default)]
    pub store: StoreConfig,
    /// The intake journal.
    #[serde(default)]
    pub journal: JournalConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The message broker between stages.
    #[serde(default)]
    pub broker: BrokerConfig,
    /// The WeCom server API (enrichment, reconciliation, notifications).
    #[serde(default)]
    pub wecom: WeComConfig,
    /// The periodic sweep that finds approvals whose callbacks never arrived.
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// Where mappings and connectors live.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// The delivery ledger.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// WeCom apps served by this instance, keyed by a name of the operator's choosing.
    #[serde(default)]
    pub apps: BTreeMap<String, AppConfig>,
    /// Per-stage retry schedules and concurrency (`[stages.route]`).
    #[serde(default)]
    pub stages: StagesConfig,
    /// What [`Config::validate`] built when the configuration was loaded.
    #[serde(skip)]
    checked: Option<Arc<Validated>>,
}

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

/// A reference to a secret: `env:NAME`, `file:PATH`, or a literal value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// Read from an environment variable.
    Env(String),
    /// Read from a file (trailing newline trimmed).
    File(PathBuf),
    /// Written in the configuration itself.
    Literal(String),
}

impl SecretRef {
    /// Parses `env:NAME`, `file:PATH`, or anything else as a literal.
    pub fn parse(s: &str) -> Self {
        if let Some(name) = s.strip_prefix("env:") {
            SecretRef::Env(name.to_string())
        } else if let Some(path) = s.strip_prefix("file:") {
            SecretRef::File(PathBuf::from(path))
        } else {
            SecretRef::Literal(s.to_string())
        }
    }

    /// Reads the secret's value.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        match self {
            SecretRef::Env(name) => std::env::var(name).map(Secret).map_err(|_| {
                ConfigError::Secret(format!("environment variable {name} is not set"))
            }),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| ConfigError::Secret(format!("cannot read {}: {e}", path.display()))),
            SecretRef::Literal(v) => Ok(Secret(v.clone())),
        }
    }

    /// Whether the secret is written in the configuration file itself.
    pub fn is_literal(&self) -> bool {
        matches!(self, SecretRef::Literal(_))
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Literal(_) => f.write_str("***"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(SecretRef::parse(&s))
    }
}

/// A resolved secret value. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(v: impl Into<String>) -> Self {
        Secret(v.into())
    }
    /// The value itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The absolute folder of the configuration file `path`.
fn config_folder(path: &Path) -> Result<PathBuf, ConfigError> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(folder).map_err(|e| {
        ConfigError::Load(format!(
            "cannot resolve the folder of {}: {e}",
            path.display()
        ))
    })
}

/// What can go wrong with configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment override could not be read or does not fit the schema.
    #[error("configuration could not be loaded: {0}")]
    Load(String),
    /// The configuration loaded but is inconsistent; every problem is listed.
    #[error("configuration is invalid:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
    /// A secret reference could not be resolved.
    #[error("secret could not be read: {0}")]
    Secret(String),
}

impl Config {
    /// Loads `path` (TOML) and applies `BRIDGE_*__*` environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Load(format!(
                "{} does not exist; pass --config or run from the repository root",
                path.display()
            )));
        }
        let env = Env::prefixed("BRIDGE_")
            .filter(|k| k.as_str().contains("__"))
            .split("__");
        // Figment reads environment values as TOML-ish data, so `BRIDGE_APPS__DEMO__TOKEN=
        // 123456` would become a number (and `0123` would lose its zero). Secret fields are
        // merged again as the variable's exact text.
        let secrets: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| is_secret_key(k.as_str()))
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect();
        let mut figment = Figment::new().merge(Toml::file(path)).merge(env);
        for (key, value) in secrets {
            figment = figment.merge(Serialized::default(&key, value));
        }
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(format!("{}: {e}", path.display())))?;
        config.resolve_relative_paths(&config_folder(path)?);
        config.checked = Some(Arc::new(config.validate()?));
        Ok(config)
    }

    /// Makes the relative paths of the catalog folders, the store and `file:` journal keys
    /// relative to `base` (the configuration file's folder), so the bridge finds the same
    /// files whatever its working directory (a systemd unit, a container, a shell elsewhere).
    pub fn resolve_relative_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.catalog.mappings_dir);
        resolve(&mut self.catalog.connectors_dir);
        resolve(&mut self.store.path);
        for key in self.journal.keys.values_mut() {
            if let SecretRef::File(p) = key {
                resolve(p);
            }
        }
    }

    /// Parses a TOML string (no environment overrides) and validates it. Used by tests.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        config.checked = Some(Arc::new(config.validate()?));
        Ok(config)
    }

    /// The values validation built: those of the load, or (for a configuration built any
    /// other way) validated now.
    pub fn checked(&self) -> Result<Arc<Validated>, ConfigError> {
        match &self.checked {
            Some(v) => Ok(v.clone()),
            None => self.validate().map(Arc::new),
        }
    }

    /// Checks consistency without touching secrets, files or sockets; lists every problem.
    /// Returns the typed values it built (time zone, retry policies, corp ids).
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let mut errors = Vec::new();
        if self.server.listen.parse::<SocketAddr>().is_err() {
            errors.push(format!(
                "server.listen `{}` is not an address like 127.0.0.1:8080",
                self.server.listen
            ));
        }
        match self.admin.listen.parse::<SocketAddr>() {
            Err(_) => errors.push(format!(
                "admin.listen `{}` is not an address like 127.0.0.1:8081",
                self.admin.listen
            )),
            Ok(a)
                if !a.ip().is_loopback()
                    && self.admin.token.is_none()
                    && self.admin.users.is_empty() =>
            {
                errors.push(format!(
                    "admin.listen {a} is reachable from other machines but admin.token is not set; \
                 set admin.token = \"env:BRIDGE_ADMIN_TOKEN\" or listen on 127.0.0.1"
                ))
            }
            Ok(_) => {}
        }
        if matches!(&self.admin.token, Some(SecretRef::Literal(t)) if t.trim().is_empty()) {
            errors.push(
                "admin.token is empty: set a long random token (or remove the key to run without one on a loopback listener)".into(),
            );
        }
        errors.extend(crate::console::settings_errors(
            &self.admin,
            &self.console,
            &self.apps,
        ));
        if self.server.header_read_timeout_ms == 0 || self.server.body_read_timeout_ms == 0 {
            errors.push(
                "server.header_read_timeout_ms and server.body_read_timeout_ms must be above 0"
                    .into(),
            );
        }
        if self.server.max_connections == 0 {
            errors.push("server.max_connections must be at least 1".into());
        }
        if self.server.max_body_bytes < 1024 {
            errors.push("server.max_body_bytes must be at least 1024".into());
        }
        if !self.journal.keys.contains_key(&self.journal.active_key) {
            errors.push(format!(
                "journal.active_key `{}` is not one of journal.keys",
                self.journal.active_key
            ));
        }
        if self.journal.dedup_retention_hours < 24 {
            errors.push(
                "journal.dedup_retention_hours must be at least 24 (WeCom re-delivers)".into(),
            );
        }
        if self.journal.max_batch == 0 {
            errors.push("journal.max_batch must be at least 1".into());
        }
        if self.broker.kind == BrokerKind::Rabbitmq && self.broker.url.is_none() {
            errors
                .push("broker.kind = \"rabbitmq\" needs broker.url (e.g. \"env:AMQP_URL\")".into());
        }
        let route = self.stage_plan("stages.route", &self.stages.route, &mut errors);
        let deliver = self.stage_plan("stages.deliver", &self.stages.deliver, &mut errors);
        let writeback = self.stage_plan("stages.writeback", &self.stages.writeback, &mut errors);
        let time_zone = match jiff::tz::TimeZone::get(&self.wecom.time_zone) {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push(format!(
                    "wecom.time_zone `{}` is not a known IANA time zone (e.g. Asia/Shanghai)",
                    self.wecom.time_zone
                ));
                None
            }
        };
        if self.reconcile.enabled && self.reconcile.interval_secs < 60 {
            errors.push("reconcile.interval_secs must be at least 60".into());
        }
        if self.apps.is_empty() {
            errors.push("no [apps.<name>] configured: nothing would be served".into());
        }
        let mut paths = BTreeMap::new();
        let mut apps = BTreeMap::new();
        for (name, app) in &self.apps {
            if let Some(corp_id) = app.corp_id.as_ref().or(app.receive_ids.first()) {
                apps.insert(
                    name.clone(),
                    ValidApp {
                        corp_id: corp_id.clone(),
                    },
                );
            }
            if !app.path.starts_with('/') {
                errors.push(format!("apps.{name}.path `{}` must start with /", app.path));
            }
            if matches!(app.path.as_str(), "/healthz" | "/readyz" | "/metrics" | "/") {
                errors.push(format!("apps.{name}.path `{}` is reserved", app.path));
            }
            if let Some(other) = paths.insert(app.path.clone(), name.clone()) {
                errors.push(format!(
                    "apps.{name}.path `{}` is also used by apps.{other}",
                    app.path
                ));
            }
            if app.receive_ids.is_empty() {
                errors.push(format!(
                    "apps.{name}.receive_ids is empty: list the CorpID (or SuiteID)"
                ));
            }
            if let SecretRef::Literal(key) = &app.encoding_aes_key
                && (key.len() != 43 || !key.bytes().all(|b| b.is_ascii_alphanumeric()))
            {
                errors.push(format!(
                    "apps.{name}.encoding_aes_key must be the 43 letters/digits shown in the WeCom console"
                ));
            }
            if let SecretRef::Literal(token) = &app.token
                && (token.is_empty() || token.len() > 32)
            {
                errors.push(format!("apps.{name}.token must be 1 to 32 characters"));
            }
            if app.check_timestamp && app.timestamp_window_secs == 0 {
                errors.push(format!(
                    "apps.{name}.timestamp_window_secs is 0; set check_timestamp = false to turn the check off"
                ));
            }
        }
        match (errors.is_empty(), time_zone, route, deliver, writeback) {
            (true, Some(time_zone), Some(route), Some(deliver), Some(writeback)) => Ok(Validated {
                time_zone,
                route,
                deliver,
                writeback,
                apps,
            }),
            _ => Err(ConfigError::Invalid(errors)),
        }
    }

    /// Checks one stage's settings against the broker's tiers.
    fn stage_plan(
        &self,
        key: &str,
        stage: &StageConfig,
        errors: &mut Vec<String>,
    ) -> Option<StagePlan> {
        let tiers = &self.broker.retry_tiers_secs;
        let schedule = stage
            .retry_secs
            .clone()
            .unwrap_or_else(|| RetryPolicy::default_schedule(tiers));
        if stage.concurrency == 0 {
            errors.push(format!("{key}.concurrency must be at least 1"));
        }
        match RetryPolicy::new(
            key,
            &schedule,
            tiers,
            stage.max_attempts,
            stage.max_hint_secs,
        ) {
            Ok(policy) => Some(StagePlan {
                policy,
                concurrency: stage.concurrency.max(1),
            }),
            Err(problems) => {
                errors.extend(problems.iter().map(ToString::to_string));
                None
            }
        }
    }

    /// Resolves every secret the service needs at start. Errors list every secret that failed.
    pub fn resolve(&self) -> Result<ResolvedSecrets, ConfigError> {
        let mut errors = Vec::new();
        let mut apps = BTreeMap::new();
        for (name, app) in &self.apps {
            match (app.token.resolve(), app.encoding_aes_key.resolve()) {
                (Ok(token), Ok(key)) => {
                    let secret = match app.secret.as_ref().map(SecretRef::resolve).transpose() {
                        Ok(s) => s,
                        Err(e) => {
                            errors.push(format!("apps.{name}.secret: {e}"));
                            None
                        }
                    };
                    apps.insert(
                        name.clone(),
                        AppSecrets {
                            token,
                            encoding_aes_key: key,
                            secret,
                        },
                    );
                }
                (t, k) => {
                    for e in [t.err(), k.err()].into_iter().flatten() {
                        errors.push(format!("apps.{name}: {e}"));
                    }
                }
            }
        }
        let admin_token = match &self.admin.token {
            Some(r) => match r.resolve() {
                Ok(s) if s.expose().trim().is_empty() => {
                    errors.push(format!(
                        "admin.token ({r:?}) resolves to an empty value: set a long random token"
                    ));
                    None
                }
                Ok(s) => Some(s),
                Err(e) => {
                    errors.push(format!("admin.token: {e}"));
                    None
                }
            },
            None => None,
        };
        if errors.is_empty() {
            Ok(ResolvedSecrets { apps, admin_token })
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

/// Whether a dotted key names a secret reference, whose value must stay text.
fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    matches!(last, "token" | "encoding_aes_key" | "secret" | "url")
        || key.starts_with("journal.keys.")
}

/// Secrets resolved at start.
#[derive(Debug, Clone)]
pub struct ResolvedSecrets {
    /// Per-app callback credentials, by app name.
    pub apps: BTreeMap<String, AppSecrets>,
    /// The admin API bearer token, if one is configured.
    pub admin_token: Option<Secret>,
}

/// The callback credentials of one app.
#[derive(Debug, Clone)]
pub struct AppSecrets {
    /// Callback Token.
    pub token: Secret,
    /// EncodingAESKey.
    pub encoding_aes_key: Secret,
    /// The app Secret for the WeCom API, if configured.
    pub secret: Option<Secret>,
}

impl AppSecrets {
    /// Whether these are the public sample credentials from WeCom's documentation.
    pub fn is_demo(&self) -> bool {
        self.token.expose() == DEMO_TOKEN && self.encoding_aes_key.expose() == DEMO_ENCODING_AES_KEY
    }
}

#[cfg(test)]
mod tests;
