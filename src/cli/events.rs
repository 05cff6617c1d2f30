//! `events`: list journal entries, from the store directly or, while `serve` holds the
//! store, through the running bridge's admin API.

use anyhow::Context;

use super::admin_api::{self, AdminApi};
use super::listing::{self, Source, print_rows};
use crate::config::Config;
use crate::journal::EntryView;
use crate::store::JournalFilter;

/// Arguments of `events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this kind.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::ingress::JOURNAL_KINDS.iter().copied()))]
    pub kind: Option<String>,
    /// Only this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Received at or after: RFC 3339 (2025-06-05T10:00:00Z) or an age such as 2h or 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Received before: RFC 3339 or an age.
    #[arg(long)]
    pub until: Option<String>,
    /// Only quarantined (authentic but unparseable) callbacks.
    #[arg(long)]
    pub quarantined: bool,
    /// Include the decrypted XML (needs the journal key).
    #[arg(long)]
    pub payload: bool,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Parses RFC 3339 or an age like `90m`, `2h`, `7d` into a timestamp.
pub fn parse_when(s: &str) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let span: jiff::SignedDuration = s
        .parse()
        .or_else(|_| {
            s.parse::<jiff::Span>()
                .map_err(|e| e.to_string())
                .and_then(|sp| {
                    sp.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                        .map_err(|e| e.to_string())
                })
        })
        .map_err(|e| {
            anyhow::anyhow!("`{s}` is neither an RFC 3339 time nor an age like 2h/7d: {e}")
        })?;
    Ok(jiff::Timestamp::now() - span.abs())
}

pub(super) async fn run(config: &Config, args: EventsArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(parse_when).transpose()?;
    let until = args.until.as_deref().map(parse_when).transpose()?;
    let filter = JournalFilter {
        kind: args.kind.clone(),
        app: args.app.clone(),
        since_ms: since.map(|t| t.as_millisecond()),
        until_ms: until.map(|t| t.as_millisecond()),
        quarantined_only: args.quarantined,
        limit: args.limit,
    };
    let views = match listing::open(config, "journal", "nothing received").await? {
        Source::Direct(store, cipher) => {
            let cipher = args.payload.then_some(&cipher);
            store
                .journal_entries(&filter)?
                .iter()
                .map(|e| EntryView::new(e, cipher))
                .collect::<Result<Vec<_>, _>>()?
        }
        Source::Admin => from_admin_api(config, &args, since, until).await?,
        Source::Nothing => Vec::new(),
    };
    print_rows(&views, args.json, "no events", print_table)
}

async fn from_admin_api(
    config: &Config,
    args: &EventsArgs,
    since: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
) -> anyhow::Result<Vec<EntryView>> {
    let query = admin_api::query([
        ("limit", Some(args.limit.to_string())),
        ("kind", args.kind.clone()),
        ("app", args.app.clone()),
        ("since", since.map(|s| s.to_string())),
        ("until", until.map(|u| u.to_string())),
        ("quarantined", args.quarantined.then(|| "true".into())),
        ("payload", args.payload.then(|| "true".into())),
    ]);
    AdminApi::new(config)?
        .json_lines("/admin/events", &query)
        .await
        .context("the store is in use, so the events were asked from the running bridge")
}

fn print_table(views: &[EntryView]) {
    println!(
        "{:>6}  {:<28}  {:<20}  {:<10}  {:<24}  {:<22}  STATE",
        "SEQ", "ID", "RECEIVED", "APP", "KIND", "BUSINESS KEY"
    );
    for v in views {
        let received = v.received_at.get(..19).unwrap_or(&v.received_at);
        let state = match &v.quarantine_reason {
            Some(r) => format!("quarantined ({r})"),
            None => v.state.clone(),
        };
        println!(
            "{:>6}  {:<28}  {:<20}  {:<10}  {:<24}  {:<22}  {}",
            v.seq, v.id, received, v.app, v.kind, v.business_key, state
        );
        if let Some(p) = &v.payload {
            println!("        {p}");
        }
    }
}
