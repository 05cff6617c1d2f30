//! `queues`, `dead-letters`, `replay`: broker operations for operators. They go through the
//! running bridge's admin API when one answers, and otherwise open the broker directly
//! (the embedded store, or a RabbitMQ connection).

use anyhow::Context;
use reqwest::Method;

use super::admin_api::AdminApi;

use crate::broker::{AnyBroker, DeadLetter, QueueDepth, ROUTE_QUEUE, RedriveFilter};
use crate::config::Config;
use crate::store::Store;

/// Arguments of `queues`.
#[derive(Debug, clap::Args)]
pub struct QueuesArgs {
    /// One JSON object: broker, outbox backlog and every queue's depths.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `dead-letters`.
#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    /// Logical queue.
    #[arg(long, default_value = ROUTE_QUEUE)]
    pub queue: String,
    /// At most this many, oldest first.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Include the decrypted payloads (metadata only by default).
    #[arg(long)]
    pub payload: bool,
}

/// Arguments of `replay`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["all", "id", "reason"])))]
pub struct ReplayArgs {
    /// Logical queue.
    #[arg(long, default_value = ROUTE_QUEUE)]
    pub queue: String,
    /// Replay every dead letter of the queue.
    #[arg(long)]
    pub all: bool,
    /// Replay these message ids (repeatable).
    #[arg(long)]
    pub id: Vec<String>,
    /// Replay dead letters whose reason contains this text.
    #[arg(long)]
    pub reason: Option<String>,
}

enum Target {
    Admin(AdminApi),
    Direct(AnyBroker, Store),
}

async fn target(config: &Config) -> anyhow::Result<Target> {
    if let Some(api) = AdminApi::running(config).await? {
        return Ok(Target::Admin(api));
    }
    let base = AdminApi::base_url(config);
    let cipher = crate::journal::JournalCipher::from_config(&config.journal)?;
    let store = Store::open(&config.store.path, cipher.sealer())
        .with_context(|| format!("no bridge answers at {base}, and the store cannot be opened"))?;
    let broker = AnyBroker::from_config(&config.broker, &store)
        .await
        .context("connecting to the broker")?;
    Ok(Target::Direct(broker, store))
}

/// Parked messages; their payloads are emptied unless `payload` is asked for.
async fn list_dead(
    t: &Target,
    queue: &str,
    limit: usize,
    payload: bool,
) -> anyhow::Result<Vec<DeadLetter>> {
    let mut list: Vec<DeadLetter> = match t {
        Target::Admin(api) => {
            let query = [
                ("queue", queue.to_string()),
                ("limit", limit.to_string()),
                ("payload", payload.to_string()),
            ];
            api.json_lines("/admin/dead-letters", &query).await?
        }
        Target::Direct(b, _) => b.dead_letters(queue, limit).await?,
    };
    if !payload {
        list.iter_mut().for_each(|d| d.envelope.clear_body());
    }
    Ok(list)
}

async fn redrive(t: &Target, queue: &str, ids: &[String]) -> anyhow::Result<usize> {
    match t {
        Target::Admin(api) => {
            let query = [("queue", queue.to_string()), ("ids", ids.join(","))];
            let v: serde_json::Value = api.json(Method::POST, "/admin/replay", &query).await?;
            Ok(v["redriven"].as_u64().unwrap_or(0) as usize)
        }
        Target::Direct(b, _) => Ok(b.redrive(queue, &RedriveFilter::Ids(ids.to_vec())).await?),
    }
}

async fn finish(t: Target) {
    if let Target::Direct(b, _) = t {
        b.close().await;
    }
}

fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `queues`.
/// The route queue and every connector's deliver queue; only the route queue (with a
/// warning) when the catalog cannot be loaded.
fn listed_queues(config: &Config) -> Vec<String> {
    match crate::catalog::load(&config.catalog.mappings_dir, &config.catalog.connectors_dir) {
        Ok(c) => crate::broker::listed_queues(c.connectors.iter().map(|c| c.name.as_str())),
        Err(e) => {
            eprintln!(
                "warning: mappings/connectors cannot be loaded ({} problems; run `wecom-bridge check`): listing the route queue only",
                e.len()
            );
            crate::broker::stage_queues()
        }
    }
}

pub(super) async fn queues(config: &Config, args: QueuesArgs) -> anyhow::Result<()> {
    let t = target(config).await?;
    let (kind, backlog, depths): (String, u64, Vec<QueueDepth>) = match &t {
        Target::Admin(api) => {
            let v: serde_json::Value = api.json(Method::GET, "/admin/queues", &[]).await?;
            (
                v["broker"].as_str().unwrap_or_default().to_string(),
                v["outbox_backlog"].as_u64().unwrap_or(0),
                serde_json::from_value(v["queues"].clone())?,
            )
        }
        Target::Direct(b, store) => (
            b.kind().to_string(),
            store.journal_counts()?.unpublished,
            b.depths(&listed_queues(config)).await?,
        ),
    };
    finish(t).await;
    if args.json {
        let v = serde_json::json!({"broker": kind, "outbox_backlog": backlog, "queues": depths});
        println!("{v}");
        return Ok(());
    }
    println!("broker: {kind}    outbox backlog (journaled, not yet in the broker): {backlog}");
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9}",
        "QUEUE", "READY", "UNACKED", "DELAYED", "DEAD"
    );
    for d in depths {
        println!(
            "{:<24} {:>9} {:>9} {:>9} {:>9}",
            d.queue, d.ready, d.unacked, d.delayed, d.dead
        );
    }
    Ok(())
}

/// `dead-letters`.
pub(super) async fn dead_letters(config: &Config, args: DeadLettersArgs) -> anyhow::Result<()> {
    let t = target(config).await?;
    let list = list_dead(&t, &args.queue, args.limit, args.payload).await?;
    if args.json {
        for d in &list {
            println!("{}", serde_json::to_string(d)?);
        }
    } else if list.is_empty() {
        println!("no dead letters in `{}`", args.queue);
    } else {
        println!(
            "{:<28}  {:<20}  {:<22}  {:>8}  {:<19}  {:<19}  REASON",
            "ID", "KIND", "BUSINESS KEY", "ATTEMPTS", "FIRST FAILURE", "LAST FAILURE"
        );
        for d in &list {
            println!(
                "{:<28}  {:<20}  {:<22}  {:>8}  {:<19}  {:<19}  {}",
                d.envelope.id,
                d.envelope.kind,
                d.envelope.business_key,
                d.attempts,
                when(d.first_failure_ms),
                when(d.last_failure_ms),
                d.reason
            );
            if args.payload {
                println!("    {}", d.envelope.body_text());
            }
        }
        println!(
            "replay with: wecom-bridge replay --queue {} --all   (or --id ID, --reason TEXT)",
            args.queue
        );
    }
    finish(t).await;
    Ok(())
}

/// `replay`.
pub(super) async fn replay(config: &Config, args: ReplayArgs) -> anyhow::Result<()> {
    let t = target(config).await?;
    let selected: Vec<String> = list_dead(&t, &args.queue, usize::MAX / 2, false)
        .await?
        .into_iter()
        .filter(|d| {
            args.all
                || args.id.contains(&d.envelope.id)
                || args.reason.as_deref().is_some_and(|r| d.reason.contains(r))
        })
        .map(|d| d.envelope.id)
        .collect();
    if selected.is_empty() {
        println!("nothing to replay in `{}`", args.queue);
        finish(t).await;
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(selected.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("replaying {bar:40} {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut done = 0;
    for chunk in selected.chunks(200) {
        done += redrive(&t, &args.queue, chunk).await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    println!(
        "replayed {done} of {} dead letters from `{}`",
        selected.len(),
        args.queue
    );
    finish(t).await;
    Ok(())
}
