//! `deliveries`: list delivery jobs from the ledger, and `deliveries show <key|SpNo>` with
//! every attempt; from the store directly or, while `serve` holds the store, through the
//! running bridge's admin API.

use anyhow::{Context, bail};

use super::admin_api::{self, AdminApi};
use super::events::parse_when;
use super::listing::{self, Source, print_rows};
use crate::config::Config;
use crate::record::{Cursor, Delivery, JobRecord, JobState, Ledger, LedgerQuery, Page};

/// Arguments of `deliveries`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeliveriesArgs {
    /// `show <key|SpNo>`: one job (or every job of a form) with every attempt.
    #[command(subcommand)]
    pub command: Option<DeliveriesCommand>,
    /// Filters of the listing.
    #[command(flatten)]
    pub list: ListArgs,
}

/// Sub-commands of `deliveries`.
#[derive(Debug, clap::Subcommand)]
pub enum DeliveriesCommand {
    /// Show a job by its key (job_…), or every job of an SpNo, with every attempt.
    Show(ShowArgs),
}

/// Filters of `deliveries`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs of this approval number (SpNo).
    #[arg(long)]
    pub sp_no: Option<String>,
    /// Only jobs of this connector.
    #[arg(long)]
    pub connector: Option<String>,
    /// Only jobs in this state: in_flight, delivered, duplicate, retrying, dead, dry_run,
    /// skipped_already_delivered, revoked_without_approval.
    #[arg(long)]
    pub state: Option<JobState>,
    /// Created at or after: RFC 3339 or an age such as 2h or 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Created before: RFC 3339 or an age.
    #[arg(long)]
    pub until: Option<String>,
    /// Continue after this cursor (printed under the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// At most this many, newest first (up to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `deliveries show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A job key (job_…) or an SpNo.
    pub target: String,
    /// Include request and response headers and bodies (needs the journal key).
    #[arg(long)]
    pub payload: bool,
    /// One JSON object per job instead of text.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(config: &Config, args: DeliveriesArgs) -> anyhow::Result<()> {
    match args.command {
        Some(DeliveriesCommand::Show(show)) => run_show(config, show).await,
        None => run_list(config, args.list).await,
    }
}

async fn run_list(config: &Config, args: ListArgs) -> anyhow::Result<()> {
    let query = LedgerQuery {
        business_key: args.sp_no.clone(),
        connector: args.connector.clone(),
        state: args.state,
        since_ms: args
            .since
            .as_deref()
            .map(parse_when)
            .transpose()?
            .map(|t| t.as_millisecond()),
        until_ms: args
            .until
            .as_deref()
            .map(parse_when)
            .transpose()?
            .map(|t| t.as_millisecond()),
        cursor: args
            .cursor
            .as_deref()
            .map(str::parse::<Cursor>)
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?,
        limit: args.limit,
    };
    let page = match listing::open(config, "store", "nothing delivered").await? {
        Source::Direct(store, _) => Ledger::embedded(store).list(query).await?,
        Source::Admin => list_from_admin_api(config, &query).await?,
        Source::Nothing => Page {
            jobs: Vec::new(),
            next: None,
        },
    };
    print_rows(&page.jobs, args.json, "no deliveries", print_table)?;
    if let Some(next) = &page.next {
        eprintln!("more: add --cursor {next}");
    }
    Ok(())
}

async fn run_show(config: &Config, args: ShowArgs) -> anyhow::Result<()> {
    let found = match listing::open(config, "store", "nothing delivered").await? {
        Source::Direct(store, _) => {
            Ledger::embedded(store)
                .find(&args.target, args.payload)
                .await?
        }
        Source::Admin => show_from_admin_api(config, &args).await?,
        Source::Nothing => Vec::new(),
    };
    if found.is_empty() {
        bail!(
            "no delivery job with key or SpNo `{}` (see `wecom-bridge deliveries`)",
            args.target
        );
    }
    for d in &found {
        if args.json {
            println!("{}", serde_json::to_string(d)?);
        } else {
            print_delivery(d);
        }
    }
    Ok(())
}

/// What an admin API error says first: why the CLI asked the running bridge.
const VIA_ADMIN: &str = "the store is in use, so the deliveries were asked from the running bridge";

async fn list_from_admin_api(config: &Config, q: &LedgerQuery) -> anyhow::Result<Page> {
    let ms = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
    };
    let query = admin_api::query([
        ("limit", Some(q.limit.to_string())),
        ("sp_no", q.business_key.clone()),
        ("connector", q.connector.clone()),
        ("state", q.state.map(|s| s.as_str().to_string())),
        ("since", q.since_ms.map(ms)),
        ("until", q.until_ms.map(ms)),
        ("cursor", q.cursor.as_ref().map(ToString::to_string)),
    ]);
    let Some(text) = AdminApi::new(config)?
        .get_found(&["admin", "deliveries"], &query)
        .await
        .context(VIA_ADMIN)?
    else {
        bail!("the running bridge has no /admin/deliveries (an older version?)");
    };
    #[derive(serde::Deserialize)]
    struct Wire {
        jobs: Vec<JobRecord>,
        next: Option<String>,
    }
    let wire: Wire = serde_json::from_str(&text).context("admin API sent an unexpected page")?;
    Ok(Page {
        jobs: wire.jobs,
        next: wire
            .next
            .map(|c| c.parse::<Cursor>())
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?,
    })
}

async fn show_from_admin_api(config: &Config, args: &ShowArgs) -> anyhow::Result<Vec<Delivery>> {
    let query = [("payload", args.payload.to_string())];
    match AdminApi::new(config)?
        .get_found(&["admin", "deliveries", &args.target], &query)
        .await
        .context(VIA_ADMIN)?
    {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).context("admin API sent an unexpected answer"),
    }
}

fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn captured(j: &std::collections::BTreeMap<String, String>) -> String {
    j.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_table(jobs: &[JobRecord]) {
    println!(
        "{:<20}  {:<14}  {:<16}  {:<9}  {:<25}  {:>3}  {:<28}  CAPTURED / LAST ERROR",
        "CREATED", "CONNECTOR", "SPNO", "ACTION", "STATE", "ATT", "KEY"
    );
    for j in jobs {
        let note = match &j.last_error {
            Some(e) if !j.state.counts_as_delivered() => e.clone(),
            _ => captured(&j.captured),
        };
        println!(
            "{:<20}  {:<14}  {:<16}  {:<9}  {:<25}  {:>3}  {:<28}  {}",
            when(j.created_at_ms),
            j.connector,
            j.business_key,
            j.action,
            j.state.as_str(),
            j.attempts,
            j.key,
            note
        );
    }
}

fn print_delivery(d: &Delivery) {
    let j = &d.job;
    println!("{}  {}", j.key, j.state);
    println!(
        "  form {} ({}, app {}, event {})",
        j.business_key, j.action, j.app, j.event_id
    );
    println!("  connector {}  mapping {}", j.connector, j.mapping);
    println!(
        "  created {}  updated {}  attempts {}",
        when(j.created_at_ms),
        when(j.updated_at_ms),
        j.attempts
    );
    if !j.captured.is_empty() {
        println!("  captured {}", captured(&j.captured));
    }
    if let Some(e) = &j.last_error {
        println!("  last error: {e}");
    }
    for a in &d.attempts {
        let status = a
            .status
            .map_or_else(|| "no answer".into(), |s| s.to_string());
        println!(
            "  #{} {} {:>6} ms  {} {} → {}  {}{}",
            a.number,
            when(a.started_at_ms),
            a.duration_ms,
            a.method,
            a.url,
            status,
            a.classification.as_str(),
            a.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        if !a.captured.is_empty() {
            println!("      captured {}", captured(&a.captured));
        }
        if let Some(p) = &a.payload {
            for (k, v) in &p.request_headers {
                println!("      > {k}: {v}");
            }
            if let Some(b) = &p.request_body {
                println!("      > {b}");
            }
            for (k, v) in &p.response_headers {
                println!("      < {k}: {v}");
            }
            if let Some(b) = &p.response_body {
                println!("      < {b}");
            }
        }
    }
    for w in &d.writebacks {
        let to: serde_json::Value = serde_json::from_str(&w.message).unwrap_or_default();
        let to = ["touser", "toparty", "totag"]
            .iter()
            .filter_map(|k| to[*k].as_str().filter(|s| !s.is_empty()))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "  writeback {} → {}  {}  sends {}  updated {}{}{}{}",
            w.kind.as_str(),
            to,
            w.state.as_str(),
            w.attempts,
            when(w.updated_at_ms),
            w.msg_id
                .as_deref()
                .map(|m| format!("  msgid {m}"))
                .unwrap_or_default(),
            if w.invalid.is_empty() {
                String::new()
            } else {
                format!("  invalid {}", w.invalid.join("|"))
            },
            w.last_error
                .as_deref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        );
    }
}
