//! `reroute`: route again, from the journal, the approval events that matched no mapping
//! (after a mapping was added). Through the running bridge's admin API when one answers,
//! otherwise in this process on the store and broker (like `reconcile`).

use anyhow::{Context, bail};
use reqwest::Method;

use super::admin_api::{self, AdminApi};
use super::events::parse_when;
use crate::broker::AnyBroker;
use crate::config::Config;
use crate::journal::{Journal, JournalCipher};
use crate::route::RouteContext;
use crate::route::reroute::{RerouteReport, RerouteRequest, reroute_any};
use crate::store::Store;

/// Arguments of `reroute`.
#[derive(Debug, clap::Args)]
pub struct RerouteArgs {
    /// Start of the receive-time range: RFC 3339 or an age such as 7d.
    #[arg(long)]
    pub since: String,
    /// End of the range (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Only forms of this template (its id or its name).
    #[arg(long)]
    pub template: Option<String>,
}

pub(super) async fn run(config: &Config, args: RerouteArgs) -> anyhow::Result<()> {
    let since = parse_when(&args.since)?;
    let until = args.until.as_deref().map(parse_when).transpose()?;
    if until.is_some_and(|u| u <= since) {
        bail!("--until must be after --since");
    }
    let api = AdminApi::running(config).await?;
    let running = api.is_some();
    let report: RerouteReport = if let Some(api) = api {
        let query = admin_api::query([
            ("since", Some(since.to_string())),
            ("until", until.map(|u| u.to_string())),
            ("template", args.template.clone()),
        ]);
        api.json(Method::POST, "/admin/reroute", &query)
            .await
            .context("asking the running bridge to re-route")?
    } else {
        let base = AdminApi::base_url(config);
        let cipher = JournalCipher::from_config(&config.journal)?;
        let store = Store::open(&config.store.path, cipher.sealer()).with_context(|| {
            format!("no bridge answers at {base}, and the store cannot be opened")
        })?;
        let (journal, writer) = Journal::start(store.clone(), cipher, config.journal.max_batch);
        let ctx = RouteContext::from_config(config, &config.resolve()?, store.clone())?;
        let broker = AnyBroker::from_config(&config.broker, &store)
            .await
            .context("connecting to the broker")?;
        let request = RerouteRequest {
            since_ms: since.as_millisecond(),
            until_ms: until.map(|u| u.as_millisecond()),
            template: args.template.clone(),
        };
        let report = reroute_any(&ctx, &journal, &broker, &request).await;
        broker.close().await;
        drop(journal);
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        report
    };
    println!(
        "re-routed {} of {} approval event(s) since {since}: {} already forwarded or no action, {} still match no mapping",
        report.rerouted,
        report.scanned,
        report.already_forwarded_or_no_action,
        report.still_unrouted
    );
    if !running && report.rerouted > 0 {
        println!("note: no bridge is running; they are routed when `wecom-bridge serve` starts");
    }
    for e in &report.errors {
        eprintln!("  problem: {e}");
    }
    if !report.errors.is_empty() {
        bail!("{} problem(s) during re-route", report.errors.len());
    }
    Ok(())
}
