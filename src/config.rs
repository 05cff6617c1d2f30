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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Deserialize;

use crate::stage::RetryPolicy;

mod secret;
mod sections;

pub use secret::{AppSecrets, ResolvedSecrets, Secret, SecretRef};
pub use sections::*;

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

#[cfg(test)]
mod tests;
