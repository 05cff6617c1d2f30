//! `wecom-bridge check --online`: after the offline checks, probe every connector's
//! credentials at its target ([`crate::deliver::probe`]) and print one line per connector:
//! `ok`, or what is wrong and what to fix. Fails (non-zero exit) when any probe fails.

use anyhow::Context;
use clap::Args;

use crate::config::Config;

/// Options of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also probe each connector at its target: a token request or login, or a HEAD of its
    /// URL's origin when its auth has no harmless call (nothing is written at the target).
    #[arg(long)]
    pub online: bool,
}

/// Probes every connector of `config`'s catalog, all at once, and prints one line each.
///
/// # Errors
/// When the catalog cannot be loaded or any probe failed.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let zone = jiff::tz::TimeZone::get(&config.wecom.time_zone)
        .with_context(|| format!("time zone {}", config.wecom.time_zone))?;
    let catalog = super::mapping::catalog(config, &zone)?;
    if catalog.connectors.is_empty() {
        println!("online: no connectors to probe");
        return Ok(());
    }
    println!("online probes:");
    let reports = futures_util::future::join_all(
        catalog
            .connectors
            .iter()
            .map(crate::deliver::probe::probe_spec),
    )
    .await;
    let mut failed = 0usize;
    for r in &reports {
        println!("  {}", r.line());
        if !r.passed() {
            failed += 1;
            tracing::warn!(connector = %r.connector, probed = %r.probed, result = ?r.result, "online probe failed");
        }
        let verdict = if r.passed() { "ok" } else { "failed" };
        metrics::counter!("wecom_bridge_connector_probes_total", "connector" => r.connector.clone(), "result" => verdict).increment(1);
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} connector(s) failed the online probe; fix what each line says, then run `wecom-bridge check --online` again",
            reports.len()
        );
    }
    Ok(())
}
