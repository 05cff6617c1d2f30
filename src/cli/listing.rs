//! What the read-only listings (`events`, `audit`, `deliveries`) share: where they read (the
//! store directly, or the running bridge's admin API while `serve` holds the store) and how
//! they print their rows.

use super::admin_api::AdminApi;
use crate::config::Config;
use crate::journal::JournalCipher;
use crate::store::{Store, StoreError};

/// Where a listing reads from.
pub(super) enum Source {
    /// The store, opened here, with the journal's cipher (no bridge runs).
    Direct(Store, JournalCipher),
    /// The running bridge's admin API (it answers, or it holds the store).
    Admin,
    /// No store yet: there is nothing to list.
    Nothing,
}

/// Where to read: a running bridge is the live truth (its store may be elsewhere, as the
/// demo's is); otherwise the store, unless another process holds it. Without a store yet it
/// says so on stderr: "no `what` yet at <path> (`nothing`)".
pub(super) async fn open(config: &Config, what: &str, nothing: &str) -> anyhow::Result<Source> {
    if AdminApi::running(config).await?.is_some() {
        return Ok(Source::Admin);
    }
    let path = &config.store.path;
    if !path.exists() {
        eprintln!("no {what} yet at {} ({nothing})", path.display());
        return Ok(Source::Nothing);
    }
    let cipher = JournalCipher::from_config(&config.journal)?;
    match Store::open(path, cipher.sealer()) {
        Ok(store) => Ok(Source::Direct(store, cipher)),
        Err(StoreError::Locked { .. }) => Ok(Source::Admin),
        Err(e) => Err(e.into()),
    }
}

/// Prints `rows` as one JSON object per line (`json`), or with `table` under its header;
/// `none` when there are no rows for the table.
pub(super) fn print_rows<T: serde::Serialize>(
    rows: &[T],
    json: bool,
    none: &str,
    table: fn(&[T]),
) -> anyhow::Result<()> {
    if json {
        for r in rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else if rows.is_empty() {
        println!("{none}");
    } else {
        table(rows);
    }
    Ok(())
}
