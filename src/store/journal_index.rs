//! The journal's lookups for the console's journey page and overview, all without a scan.
//!
//! - `journal_by_key`: (business key, sequence number) → (), written with every appended
//!   entry. Approval business keys are `SpNo:SpStatus`, so every callback of one form is the
//!   range `("SpNo:", 0) .. ("SpNo;", 0)` (`;` follows `:`), whatever its status.
//! - Time: the journal's sequence numbers are contiguous from 1 and given in receive order,
//!   so "received since T" is a binary search over sequence numbers (about 17 reads at
//!   100,000 entries), not an index of its own.
//!
//! A store created before this index existed gets it filled once when opened.

use redb::{ReadOnlyTable, WriteTransaction};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{JOURNAL, OUTBOX, Store, StoreError, StoredEntry, decode_record};

pub(super) const JOURNAL_BY_KEY: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("journal_by_key");

/// Most entries one form's journey lists (a form has a handful of callbacks).
pub const MAX_FORM_ENTRIES: usize = 500;

/// Creates the index, and fills it from the journal when it is empty but the journal is not
/// (a store written by an older version; done once).
pub(super) fn init_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut index = tx.open_table(JOURNAL_BY_KEY)?;
    let journal = tx.open_table(JOURNAL)?;
    if index.len()? == 0 && journal.len()? > 0 {
        for item in journal.iter()? {
            let (k, v) = item?;
            let seq = k.value();
            let record = decode_record(seq, v.value())?;
            index.insert((record.business_key.as_str(), seq), ())?;
        }
    }
    Ok(())
}

type Journal = ReadOnlyTable<u64, &'static [u8]>;

/// The first sequence number received at or after `at_ms` (one past the last when none is).
fn first_seq_since(journal: &Journal, at_ms: i64) -> Result<u64, StoreError> {
    let Some((last, _)) = journal.last()? else {
        return Ok(1);
    };
    let (mut lo, mut hi) = (1u64, last.value() + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let received = match journal.get(mid)? {
            Some(v) => decode_record(mid, v.value())?.received_at_ms,
            None => i64::MIN, // a gap cannot happen (contiguous); treat as older
        };
        if received < at_ms {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

impl Store {
    /// Every journal entry of one approval form (`SpNo`), oldest first, at most
    /// [`MAX_FORM_ENTRIES`]; read from `journal_by_key`.
    pub fn journal_entries_of_form(&self, sp_no: &str) -> Result<Vec<StoredEntry>, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let index = tx.open_table(JOURNAL_BY_KEY)?;
            let journal = tx.open_table(JOURNAL)?;
            let outbox = tx.open_table(OUTBOX)?;
            let (lo, hi) = (format!("{sp_no}:"), format!("{sp_no};"));
            let mut out = Vec::new();
            for item in index.range((lo.as_str(), 0)..(hi.as_str(), 0))? {
                let seq = item?.0.value().1;
                if let Some(v) = journal.get(seq)? {
                    out.push(StoredEntry {
                        seq,
                        record: decode_record(seq, v.value())?,
                        published: outbox.get(seq)?.is_none(),
                    });
                }
                if out.len() >= MAX_FORM_ENTRIES {
                    break;
                }
            }
            out.sort_by_key(|e| e.seq);
            Ok(out)
        })
    }

    /// How many entries were received at or after `since_ms`.
    pub fn journal_count_since(&self, since_ms: i64) -> Result<u64, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let journal = tx.open_table(JOURNAL)?;
            let next = journal.last()?.map_or(1, |(k, _)| k.value() + 1);
            Ok(next - first_seq_since(&journal, since_ms)?)
        })
    }

    /// Entries received in `[since_ms, until_ms)`, newest first, at most `max` of them
    /// (found by binary search on the sequence numbers, then read in order: no scan).
    pub fn journal_entries_between(
        &self,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
        max: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let journal = tx.open_table(JOURNAL)?;
            let outbox = tx.open_table(OUTBOX)?;
            let first = first_seq_since(&journal, since_ms.unwrap_or(i64::MIN))?;
            let end = match until_ms {
                Some(u) => first_seq_since(&journal, u)?,
                None => journal.last()?.map_or(1, |(k, _)| k.value() + 1),
            };
            let mut out = Vec::new();
            if first >= end {
                return Ok(out);
            }
            for item in journal.range(first..end)?.rev().take(max) {
                let (k, v) = item?;
                let seq = k.value();
                out.push(StoredEntry {
                    seq,
                    record: decode_record(seq, v.value())?,
                    published: outbox.get(seq)?.is_none(),
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JournalRecord;

    fn record(n: u8, key: &str, at: i64) -> JournalRecord {
        JournalRecord {
            app: "demo".into(),
            kind: "approval_change".into(),
            business_key: key.into(),
            received_at_ms: at,
            content_hash: [n; 32],
            key_id: "k1".into(),
            nonce: [0; 12],
            ciphertext: vec![n],
            quarantine: None,
            source: "callback".into(),
        }
    }

    #[test]
    fn a_form_is_found_by_its_sp_no_and_time_ranges_by_bisection() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("j.redb"), crate::store::test_sealer()).unwrap();
        s.append_journal(&[
            record(1, "2025001:1", 100),
            record(2, "20250012:2", 200),
            record(3, "2025001:2", 300),
            record(4, "2025001:10", 400),
            record(5, "2025002:2", 500),
        ])
        .unwrap();
        let seqs = |v: Vec<StoredEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        // 20250012 shares the prefix 2025001 but is another form
        assert_eq!(
            seqs(s.journal_entries_of_form("2025001").unwrap()),
            [1, 3, 4]
        );
        assert_eq!(seqs(s.journal_entries_of_form("20250012").unwrap()), [2]);
        assert!(s.journal_entries_of_form("nope").unwrap().is_empty());
        assert_eq!(s.journal_count_since(0).unwrap(), 5);
        assert_eq!(s.journal_count_since(300).unwrap(), 3);
        assert_eq!(s.journal_count_since(301).unwrap(), 2);
        assert_eq!(s.journal_count_since(501).unwrap(), 0);
        let between = s.journal_entries_between(Some(200), Some(500), 10).unwrap();
        assert_eq!(seqs(between), [4, 3, 2]);
        let newest = s.journal_entries_between(None, None, 2).unwrap();
        assert_eq!(seqs(newest), [5, 4]);
    }

    #[test]
    fn an_older_store_gets_the_index_filled_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.redb");
        {
            let s = Store::open(&path, crate::store::test_sealer()).unwrap();
            s.append_journal(&[record(1, "77:2", 1), record(2, "78:2", 2)])
                .unwrap();
            // drop the index as a store of an older version would not have it
            s.with_db(|db| {
                let tx = db.begin_write()?;
                tx.delete_table(JOURNAL_BY_KEY)
                    .map_err(|e| StoreError::Db(e.to_string()))?;
                tx.commit()?;
                Ok(())
            })
            .unwrap();
        }
        let s = Store::open(&path, crate::store::test_sealer()).unwrap();
        assert_eq!(s.journal_entries_of_form("78").unwrap().len(), 1);
    }
}
