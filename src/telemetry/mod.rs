//! Logs and metrics set-up. Owns the global tracing subscriber and Prometheus recorder;
//! every other module just emits `tracing` events and `metrics` counters, under the names
//! defined once in [`names`].

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub mod names;

/// Installs the log subscriber (once; later calls are ignored). `RUST_LOG` overrides the
/// configured level.
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// Messages handled by a queue stage, by `stage` and `outcome` (`approved`, `retry`,
/// `dead_letter`, `undecodable`, …). Counted only in `stage::run`.
pub const STAGE_MESSAGES: &str = "wecom_bridge_stage_messages_total";

/// The samples of metric `name` in Prometheus text `text` that carry label `label`: that
/// label's value and the sample's value (as text), in the order they appear.
pub fn samples_by_label<'a>(text: &'a str, name: &str, label: &str) -> Vec<(String, &'a str)> {
    let prefix = format!("{name}{{");
    let key = format!("{label}=\"");
    text.lines()
        .filter_map(|line| {
            let (labels, value) = line.strip_prefix(&prefix)?.rsplit_once("} ")?;
            let (_, after) = labels.split_once(&key)?;
            let (v, _) = after.split_once('"')?;
            Some((v.to_string(), value.trim()))
        })
        .collect()
}
