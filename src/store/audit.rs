//! The audit trail: who did what, when, and with what result (sign-in, failed sign-in,
//! replay, reconcile, reroute, payload views).
//!
//! Tables:
//! - `audit`: sequence number → [`AuditRecord`] (append-only: there is no update and no
//!   delete of a single row through any surface).
//! - `audit_by_time`: (Unix ms, sequence number) → (), the time index that retention pruning
//!   walks, so pruning never scans the whole table.
//!
//! It stores no secret: callers put a token's *name* in `who`, never the token itself. Rows
//! are not sealed: they hold no payloads.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const AUDIT_BY_TIME: TableDefinition<(i64, u64), ()> = TableDefinition::new("audit_by_time");

/// Longest text kept per field; longer text is cut (an attacker's failed sign-in must not
/// grow the table without bound).
const MAX_FIELD_CHARS: usize = 500;

pub(super) fn init_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(AUDIT)?;
    tx.open_table(AUDIT_BY_TIME)?;
    Ok(())
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who: the token's configured name (or `anonymous` on a token-less loopback listener,
    /// or `unknown` for a failed sign-in).
    pub who: String,
    /// What: `sign_in`, `sign_out`, `replay`, `reconcile`, `reroute`, `view_payload`, …
    pub action: String,
    /// On what: a queue and filter, a time range, …
    pub target: String,
    /// `ok`, `refused` or `failed`, with a short reason after a colon when not `ok`.
    pub result: String,
    /// Through which surface: `console` or `api`.
    pub via: String,
}

/// An audit row read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number (increasing).
    pub seq: u64,
    /// The row.
    #[serde(flatten)]
    pub record: AuditRecord,
}

fn cut(s: &mut String) {
    if let Some((i, _)) = s.char_indices().nth(MAX_FIELD_CHARS) {
        s.truncate(i);
        s.push('…');
    }
}

fn decode(seq: u64, bytes: &[u8]) -> Result<AuditRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        key: format!("audit/{seq}"),
        reason: e.to_string(),
    })
}

impl Store {
    /// Appends one row durably; returns its sequence number.
    pub fn audit_append(&self, record: &AuditRecord) -> Result<u64, StoreError> {
        let mut record = record.clone();
        for field in [
            &mut record.who,
            &mut record.action,
            &mut record.target,
            &mut record.result,
            &mut record.via,
        ] {
            cut(field);
        }
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let seq = {
                let mut audit = tx.open_table(AUDIT)?;
                let mut by_time = tx.open_table(AUDIT_BY_TIME)?;
                let seq = audit.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                let bytes = postcard::to_allocvec(&record)
                    .map_err(|e| StoreError::Db(format!("encode audit record: {e}")))?;
                audit.insert(seq, bytes.as_slice())?;
                by_time.insert((record.at_ms, seq), ())?;
                seq
            };
            super::commit(tx, "audit", true)?;
            Ok(seq)
        })
    }

    /// Rows newest first, starting below `before` (a sequence number; `None` = newest), at
    /// most `limit`. Paging walks the key range: it never scans the table.
    pub fn audit_list(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|tx| {
            let audit = tx.open_table(AUDIT)?;
            let range = match before {
                Some(b) => audit.range(..b)?,
                None => audit.range(0..)?,
            };
            let mut out = Vec::new();
            for item in range.rev().take(limit) {
                let (k, v) = item?;
                let seq = k.value();
                out.push(AuditEntry {
                    seq,
                    record: decode(seq, v.value())?,
                });
            }
            Ok(out)
        })
    }

    /// Removes rows older than `cutoff_ms` (retention), walking the time index; returns how
    /// many. This is the only way rows leave the table.
    pub fn audit_prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let removed = {
                let mut audit = tx.open_table(AUDIT)?;
                let mut by_time = tx.open_table(AUDIT_BY_TIME)?;
                let old: Vec<(i64, u64)> = by_time
                    .range(..(cutoff_ms, 0))?
                    .map(|r| r.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                for (t, seq) in &old {
                    by_time.remove((*t, *seq))?;
                    audit.remove(*seq)?;
                }
                old.len()
            };
            super::commit(tx, "audit", true)?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: i64, action: &str) -> AuditRecord {
        AuditRecord {
            at_ms,
            who: "alice".into(),
            action: action.into(),
            target: "route".into(),
            result: "ok".into(),
            via: "console".into(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        crate::store::test_store()
    }

    #[test]
    fn rows_are_listed_newest_first_and_paged_by_sequence() {
        let (_d, s) = store();
        for i in 0..5 {
            assert_eq!(
                s.audit_append(&record(1_000 + i, "replay")).unwrap(),
                i as u64 + 1
            );
        }
        let first = s.audit_list(None, 2).unwrap();
        assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 4]);
        let next = s.audit_list(Some(4), 10).unwrap();
        assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(next[0].record, record(1_002, "replay"));
    }

    #[test]
    fn pruning_removes_only_rows_older_than_the_cutoff() {
        let (_d, s) = store();
        s.audit_append(&record(100, "sign_in")).unwrap();
        s.audit_append(&record(200, "replay")).unwrap();
        s.audit_append(&record(300, "replay")).unwrap();
        assert_eq!(s.audit_prune(200).unwrap(), 1);
        let left = s.audit_list(None, 10).unwrap();
        assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(s.audit_prune(200).unwrap(), 0);
        // sequence numbers keep increasing after a prune
        assert_eq!(s.audit_append(&record(400, "replay")).unwrap(), 4);
    }

    #[test]
    fn overlong_fields_are_cut() {
        let (_d, s) = store();
        let mut r = record(1, "sign_in");
        r.who = "x".repeat(10_000);
        s.audit_append(&r).unwrap();
        let who = &s.audit_list(None, 1).unwrap()[0].record.who;
        assert_eq!(who.chars().count(), MAX_FIELD_CHARS + 1);
    }
}
