//! `audit`: list the audit trail (who did what, when, with what result), from the store
//! directly or, while `serve` holds the store, through the running bridge's admin API.
//! Read-only: no command edits or deletes audit rows.

use anyhow::Context;

use super::admin_api::{self, AdminApi};
use super::listing::{self, Source, print_rows};
use crate::config::Config;
use crate::store::AuditEntry;

/// Arguments of `audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only rows older than this sequence number (paging).
    #[arg(long)]
    pub before: Option<u64>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

pub(super) async fn run(config: &Config, args: AuditArgs) -> anyhow::Result<()> {
    let rows = match listing::open(config, "store", "nothing audited").await? {
        Source::Direct(store, _) => store.audit_list(args.before, args.limit)?,
        Source::Admin => from_admin_api(config, &args).await?,
        Source::Nothing => Vec::new(),
    };
    print_rows(&rows, args.json, "nothing audited", print_table)
}

async fn from_admin_api(config: &Config, args: &AuditArgs) -> anyhow::Result<Vec<AuditEntry>> {
    let query = admin_api::query([
        ("limit", Some(args.limit.to_string())),
        ("before", args.before.map(|b| b.to_string())),
    ]);
    AdminApi::new(config)?
        .json_lines("/admin/audit", &query)
        .await
        .context("the store is in use, so the audit trail was asked from the running bridge")
}

fn print_table(rows: &[AuditEntry]) {
    println!(
        "{:>6}  {:<20}  {:<16}  {:<14}  {:<8}  {:<28}  TARGET",
        "SEQ", "WHEN", "WHO", "ACTION", "VIA", "RESULT"
    );
    for r in rows {
        let when = jiff::Timestamp::from_millisecond(r.record.at_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let when = when.get(..19).unwrap_or(&when);
        println!(
            "{:>6}  {:<20}  {:<16}  {:<14}  {:<8}  {:<28}  {}",
            r.seq,
            when,
            r.record.who,
            r.record.action,
            r.record.via,
            r.record.result,
            r.record.target
        );
    }
}
