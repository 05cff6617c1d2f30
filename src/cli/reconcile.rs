//! `reconcile`: find approved forms whose callbacks never arrived and inject them.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;

use super::admin_api::AdminApi;
use super::events::parse_when;
use crate::config::Config;
use crate::journal::{Journal, JournalCipher};
use crate::route::RouteContext;
use crate::route::reconcile::{ReconcileReport, reconcile};
use crate::store::Store;

/// Arguments of `reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Start of the submit-time range: RFC 3339 or an age such as 7d.
    #[arg(long)]
    pub since: String,
    /// End of the range (default: now).
    #[arg(long)]
    pub until: Option<String>,
}

pub(super) async fn run(config: &Config, args: ReconcileArgs) -> anyhow::Result<()> {
    let since = parse_when(&args.since)?;
    let until = args
        .until
        .as_deref()
        .map(parse_when)
        .transpose()?
        .unwrap_or_else(jiff::Timestamp::now);
    if until <= since {
        bail!("--until must be after --since");
    }
    let report: ReconcileReport = if let Some(api) = AdminApi::running(config).await? {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message("the running bridge is reconciling…");
        spinner.enable_steady_tick(Duration::from_millis(120));
        let query = [("since", since.to_string()), ("until", until.to_string())];
        let answer = api.json(Method::POST, "/admin/reconcile", &query).await;
        spinner.finish_and_clear();
        answer.context("asking the running bridge to reconcile")?
    } else {
        let cipher = JournalCipher::from_config(&config.journal)?;
        let store = Store::open(&config.store.path, cipher.sealer())?;
        let (journal, writer) = Journal::start(store.clone(), cipher, config.journal.max_batch);
        let ctx = RouteContext::from_config(config, &config.resolve()?, store)?;
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("checking approved forms {bar:40} {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let progress = |done: usize, total: usize| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        };
        let report = reconcile(
            &ctx,
            &journal,
            since.as_second(),
            until.as_second(),
            &progress,
        )
        .await;
        bar.finish_and_clear();
        drop(journal);
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        report
    };
    println!(
        "reconciled {} app(s) from {since} to {until}: {} approved form(s) checked, {} missing, {} injected",
        report.apps, report.checked, report.missing, report.injected
    );
    for e in &report.errors {
        eprintln!("  problem: {e}");
    }
    if report.apps == 0 {
        println!("note: no app has apps.<name>.secret configured, so nothing could be checked");
    }
    if !report.errors.is_empty() {
        bail!("{} problem(s) during reconciliation", report.errors.len());
    }
    Ok(())
}
