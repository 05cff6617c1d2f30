//! Indexes of the journal, so that every listing the console and the admin API make is a
//! range read, newest first, never a scan of the journal:
//!
//! - `journal_by_time`: (received ms, sequence number) → (): time windows and paging.
//! - `journal_by_kind`: (kind, received ms, seq) → (): the kind filter.
//! - `journal_by_app`: (app, received ms, seq) → (): the app filter.
//! - `journal_quarantined`: (received ms, seq) → (): quarantined entries only.
//! - `journal_by_business_key`: (business key, seq) → (): every entry of one form (the
//!   business key of an approval is `SpNo:SpStatus`, so one SpNo is one key range).
//!
//! They are written in the transaction that appends the entry; a store written before they
//! existed gets them built once when it is opened.

use redb::{
    ReadOnlyTable, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

use super::{
    JOURNAL, JournalFilter, JournalRecord, OUTBOX, Store, StoreError, StoredEntry, decode_record,
};

const BY_TIME: TableDefinition<(i64, u64), ()> = TableDefinition::new("journal_by_time");
const BY_KIND: TableDefinition<(&str, i64, u64), ()> = TableDefinition::new("journal_by_kind");
const BY_APP: TableDefinition<(&str, i64, u64), ()> = TableDefinition::new("journal_by_app");
const QUARANTINED: TableDefinition<(i64, u64), ()> = TableDefinition::new("journal_quarantined");
const BY_BUSINESS_KEY: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("journal_by_business_key");

/// Most entries one form's journey lists (a form has a handful of callbacks).
pub const MAX_FORM_ENTRIES: usize = 500;

/// The index tables opened in one write transaction.
pub(super) struct Writer<'t> {
    by_time: Table<'t, (i64, u64), ()>,
    by_kind: Table<'t, (&'static str, i64, u64), ()>,
    by_app: Table<'t, (&'static str, i64, u64), ()>,
    quarantined: Table<'t, (i64, u64), ()>,
    by_business_key: Table<'t, (&'static str, u64), ()>,
}

impl<'t> Writer<'t> {
    pub(super) fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Writer {
            by_time: tx.open_table(BY_TIME)?,
            by_kind: tx.open_table(BY_KIND)?,
            by_app: tx.open_table(BY_APP)?,
            quarantined: tx.open_table(QUARANTINED)?,
            by_business_key: tx.open_table(BY_BUSINESS_KEY)?,
        })
    }

    /// Indexes entry `seq`.
    pub(super) fn add(&mut self, seq: u64, r: &JournalRecord) -> Result<(), StoreError> {
        let t = r.received_at_ms;
        self.by_time.insert((t, seq), ())?;
        self.by_kind.insert((r.kind.as_str(), t, seq), ())?;
        self.by_app.insert((r.app.as_str(), t, seq), ())?;
        if r.quarantine.is_some() {
            self.quarantined.insert((t, seq), ())?;
        }
        self.by_business_key
            .insert((r.business_key.as_str(), seq), ())?;
        Ok(())
    }
}

/// Creates the index tables, and builds them for entries journaled before they existed.
pub(super) fn init_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut w = Writer::open(tx)?;
    let journal = tx.open_table(JOURNAL)?;
    if w.by_time.len()? == journal.len()? {
        return Ok(());
    }
    // Inserting an index entry twice changes nothing: index every entry.
    let mut built = 0u64;
    for item in journal.iter()? {
        let (k, v) = item?;
        let seq = k.value();
        w.add(seq, &decode_record(seq, v.value())?)?;
        built += 1;
    }
    tracing::info!(
        entries = built,
        "journal indexes built for entries journaled before they existed"
    );
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

/// Where a listing reads its candidates from: the most selective index the filter allows.
enum Source<'f> {
    Kind(&'f str),
    App(&'f str),
    Quarantined,
    Time,
}

impl Store {
    /// Lists entries matching `filter`, newest first, at most `filter.limit` (0: all, for
    /// re-routing a time window). Reads the most selective index (kind, app, quarantined, time) over the
    /// filter's time window, so a page costs about its own size, wherever it is.
    pub fn journal_entries(&self, filter: &JournalFilter) -> Result<Vec<StoredEntry>, StoreError> {
        self.journal_page(filter, None)
    }

    /// Like [`Store::journal_entries`], continuing below `before` (the received time and
    /// sequence number of the last entry of the previous page): a pager that neither skips
    /// nor repeats entries received in the same millisecond.
    pub fn journal_page(
        &self,
        filter: &JournalFilter,
        before: Option<(i64, u64)>,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let since = filter.since_ms.unwrap_or(i64::MIN);
        // Exclusive upper bound (time, seq): the end of the window, or the cursor.
        let until = (filter.until_ms.unwrap_or(i64::MAX), 0);
        let until = before.map_or(until, |b| b.min(until));
        let source = match (&filter.kind, &filter.app) {
            (Some(k), _) => Source::Kind(k),
            (None, Some(a)) => Source::App(a),
            (None, None) if filter.quarantined_only => Source::Quarantined,
            (None, None) => Source::Time,
        };
        self.read(|tx| {
            let journal = tx.open_table(JOURNAL)?;
            let outbox = tx.open_table(OUTBOX)?;
            let mut out = Vec::new();
            // Takes a candidate; false once the page is full.
            let mut take = |seq: u64| -> Result<bool, StoreError> {
                let Some(v) = journal.get(seq)? else {
                    return Ok(true);
                };
                let record = decode_record(seq, v.value())?;
                if filter.kind.as_deref().is_some_and(|k| k != record.kind)
                    || filter.app.as_deref().is_some_and(|a| a != record.app)
                    || (filter.quarantined_only && record.quarantine.is_none())
                {
                    return Ok(true);
                }
                out.push(StoredEntry {
                    seq,
                    published: outbox.get(seq)?.is_none(),
                    record,
                });
                Ok(out.len() < limit)
            };
            if (since, 0) < until {
                match source {
                    Source::Kind(prefix) | Source::App(prefix) => {
                        let table = tx.open_table(match source {
                            Source::Kind(_) => BY_KIND,
                            _ => BY_APP,
                        })?;
                        for item in table
                            .range((prefix, since, 0)..(prefix, until.0, until.1))?
                            .rev()
                        {
                            if !take(item?.0.value().2)? {
                                break;
                            }
                        }
                    }
                    Source::Quarantined | Source::Time => {
                        let table = tx.open_table(match source {
                            Source::Quarantined => QUARANTINED,
                            _ => BY_TIME,
                        })?;
                        for item in table.range((since, 0)..until)?.rev() {
                            if !take(item?.0.value().1)? {
                                break;
                            }
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    /// Every journal entry of one approval form (business keys `<sp_no>:<status>`), oldest
    /// first, at most `limit`: a range read of the business-key index.
    pub fn journal_entries_of_form(
        &self,
        sp_no: &str,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        // `;` follows `:` in ASCII: the range holds exactly the keys `<sp_no>:…`.
        let (lo, hi) = (format!("{sp_no}:"), format!("{sp_no};"));
        self.read(|tx| {
            let journal = tx.open_table(JOURNAL)?;
            let outbox = tx.open_table(OUTBOX)?;
            let index = tx.open_table(BY_BUSINESS_KEY)?;
            let mut seqs: Vec<u64> = index
                .range((lo.as_str(), 0)..(hi.as_str(), 0))?
                .map(|r| r.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            seqs.sort_unstable();
            seqs.truncate(limit);
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                if let Some(v) = journal.get(seq)? {
                    out.push(StoredEntry {
                        seq,
                        published: outbox.get(seq)?.is_none(),
                        record: decode_record(seq, v.value())?,
                    });
                }
            }
            Ok(out)
        })
    }

    /// How many entries were received at or after `since_ms`.
    pub fn journal_count_since(&self, since_ms: i64) -> Result<u64, StoreError> {
        self.read(|tx| {
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
        self.read(|tx| {
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

    fn record(hash: u8, at: i64, kind: &str, app: &str, key: &str) -> JournalRecord {
        JournalRecord {
            app: app.into(),
            kind: kind.into(),
            business_key: key.into(),
            ..crate::store::test_record(hash, at)
        }
    }

    /// A filtered listing reads only index entries of matching records: with a record of
    /// another kind made undecodable, the kind listing still answers.
    #[test]
    fn listings_read_the_index_and_forms_read_their_key_range() {
        let (_dir, s) = crate::store::test_store();
        s.append_journal(&[
            record(1, 100, "approval_change", "a", "202501010001:1"),
            record(2, 200, "contact_change", "hr", "zhangsan"),
            record(3, 300, "approval_change", "a", "202501010001:2"),
            record(4, 400, "approval_change", "a", "2025010100011:2"),
        ])
        .unwrap();
        s.with_db(|db| {
            let tx = db.begin_write()?;
            tx.open_table(JOURNAL)?.insert(2, [0xffu8; 3].as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .unwrap();
        let seqs = |f: JournalFilter| -> Vec<u64> {
            s.journal_entries(&f)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        let approvals = JournalFilter {
            kind: Some("approval_change".into()),
            ..Default::default()
        };
        assert_eq!(seqs(approvals.clone()), [4, 3, 1]);
        let page2 = JournalFilter {
            until_ms: Some(400),
            limit: 1,
            ..approvals
        };
        assert_eq!(seqs(page2), [3]);
        let app = JournalFilter {
            app: Some("a".into()),
            since_ms: Some(300),
            ..Default::default()
        };
        assert_eq!(seqs(app), [4, 3]);
        let page = |before| -> Vec<u64> {
            let f = JournalFilter {
                kind: Some("approval_change".into()),
                limit: 1,
                ..Default::default()
            };
            s.journal_page(&f, before)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(page(Some((400, 4))), [3]);
        assert_eq!(page(Some((300, 3))), [1]);
        assert_eq!(page(Some((100, 1))), Vec::<u64>::new());
        assert!(s.journal_entries(&JournalFilter::default()).is_err());
        let form: Vec<u64> = s
            .journal_entries_of_form("202501010001", 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            form,
            [1, 3],
            "another SpNo with the same prefix is not included"
        );
    }

    #[test]
    fn the_pager_neither_skips_nor_repeats_entries_of_one_millisecond() {
        let (_dir, s) = crate::store::test_store();
        let same_ms: Vec<JournalRecord> = (1..=5)
            .map(|h| record(h, 500, "approval_change", "a", &format!("sp{h}:2")))
            .collect();
        s.append_journal(&same_ms).unwrap();
        let f = JournalFilter {
            limit: 2,
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = s.journal_page(&f, before).unwrap();
            let Some(last) = page.last() else { break };
            before = Some((last.record.received_at_ms, last.seq));
            seen.extend(page.iter().map(|e| e.seq));
        }
        assert_eq!(seen, [5, 4, 3, 2, 1]);
    }

    #[test]
    fn a_store_from_before_the_indexes_gets_them_built_on_open() {
        let (dir, s) = crate::store::test_store();
        s.append_journal(&[
            record(1, 100, "approval_change", "a", "sp1:2"),
            record(2, 200, "contact_change", "hr", "u1"),
        ])
        .unwrap();
        // as written by a version without the indexes
        s.with_db(|db| {
            let tx = db.begin_write()?;
            for name in [BY_TIME, QUARANTINED] {
                tx.delete_table(name)?;
            }
            for name in [BY_KIND, BY_APP] {
                tx.delete_table(name)?;
            }
            tx.delete_table(BY_BUSINESS_KEY)?;
            tx.commit()?;
            Ok(())
        })
        .unwrap();
        drop(s);
        let s = crate::store::test_store_in(dir.path());
        let hr = s
            .journal_entries(&JournalFilter {
                app: Some("hr".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hr.len(), 1);
        assert_eq!(s.journal_entries_of_form("sp1", 10).unwrap().len(), 1);
    }
}

#[cfg(test)]
mod bisection_tests {
    use super::*;
    use crate::store::JournalRecord;

    fn record(n: u8, key: &str, at: i64) -> JournalRecord {
        JournalRecord {
            business_key: key.into(),
            ciphertext: vec![n],
            ..crate::store::test_record(n, at)
        }
    }

    #[test]
    fn forms_by_sp_no_and_time_ranges_by_bisection() {
        let (_dir, s) = crate::store::test_store();
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
            seqs(
                s.journal_entries_of_form("2025001", MAX_FORM_ENTRIES)
                    .unwrap()
            ),
            [1, 3, 4]
        );
        assert_eq!(
            seqs(
                s.journal_entries_of_form("20250012", MAX_FORM_ENTRIES)
                    .unwrap()
            ),
            [2]
        );
        assert!(
            s.journal_entries_of_form("nope", MAX_FORM_ENTRIES)
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.journal_count_since(0).unwrap(), 5);
        assert_eq!(s.journal_count_since(300).unwrap(), 3);
        assert_eq!(s.journal_count_since(301).unwrap(), 2);
        assert_eq!(s.journal_count_since(501).unwrap(), 0);
        let between = s.journal_entries_between(Some(200), Some(500), 10).unwrap();
        assert_eq!(seqs(between), [4, 3, 2]);
        let newest = s.journal_entries_between(None, None, 2).unwrap();
        assert_eq!(seqs(newest), [5, 4]);
    }
}
