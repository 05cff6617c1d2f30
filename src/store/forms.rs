//! Tables of the approval lifecycle and the journal's business-key index.
//!
//! - `forms`: (app, sp_no) → [`FormState`]: the last status seen and when each action was
//!   forwarded, so that a form is forwarded once per action however many events WeCom sends.
//! - `journal_keys`: (app, business key) → first journal sequence number, so that
//!   reconciliation can ask "did we ever receive SpNo X as approved?" without a scan.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

pub(super) const FORMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("forms");
pub(super) const JOURNAL_KEYS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("journal_keys");

pub(super) fn init_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(FORMS)?;
    tx.open_table(JOURNAL_KEYS)?;
    Ok(())
}

/// What the bridge knows about one approval form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormState {
    /// The most recent SpStatus seen in an event.
    pub last_status: u32,
    /// How many events were seen for the form.
    pub events_seen: u32,
    /// When the `approved` jobs were published (Unix ms).
    pub approved_forwarded_at_ms: Option<i64>,
    /// When the `revoked` jobs were published (Unix ms).
    pub revoked_forwarded_at_ms: Option<i64>,
}

/// Which action was forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// Approved jobs published.
    Approved,
    /// Revoked jobs published.
    Revoked,
}

fn decode(bytes: &[u8]) -> Result<FormState, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        key: "forms".into(),
        reason: e.to_string(),
    })
}

impl Store {
    /// The state of a form, if any event of it was seen.
    pub fn form_state(&self, app: &str, sp_no: &str) -> Result<Option<FormState>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(FORMS)?;
            t.get((app, sp_no))?.map(|v| decode(v.value())).transpose()
        })
    }

    /// Records that an event with `status` was seen; returns the state after it.
    pub fn form_observe(
        &self,
        app: &str,
        sp_no: &str,
        status: u32,
    ) -> Result<FormState, StoreError> {
        self.form_update(app, sp_no, move |s| {
            s.last_status = status;
            s.events_seen = s.events_seen.saturating_add(1);
        })
    }

    /// Records that an event with `status` was seen and that it made the jobs of `action`
    /// published, in one write (durable before returning).
    pub fn form_mark_forwarded(
        &self,
        app: &str,
        sp_no: &str,
        status: u32,
        action: Forwarded,
        at_ms: i64,
    ) -> Result<FormState, StoreError> {
        self.form_update(app, sp_no, move |s| {
            s.last_status = status;
            s.events_seen = s.events_seen.saturating_add(1);
            match action {
                Forwarded::Approved => s.approved_forwarded_at_ms = Some(at_ms),
                Forwarded::Revoked => s.revoked_forwarded_at_ms = Some(at_ms),
            }
        })
    }

    /// Reads, changes and writes one form's state in a grouped commit (`group`): the
    /// route stage's concurrent form writes share one fsync.
    fn form_update(
        &self,
        app: &str,
        sp_no: &str,
        f: impl FnOnce(&mut FormState) + Send + 'static,
    ) -> Result<FormState, StoreError> {
        let (app, sp_no) = (app.to_string(), sp_no.to_string());
        self.write_grouped("forms", move |tx| {
            let mut t = tx.open_table(FORMS)?;
            let mut state = match t.get((app.as_str(), sp_no.as_str()))? {
                Some(v) => decode(v.value())?,
                None => FormState::default(),
            };
            f(&mut state);
            let bytes = postcard::to_allocvec(&state)
                .map_err(|e| StoreError::Db(format!("encode form state: {e}")))?;
            t.insert((app.as_str(), sp_no.as_str()), bytes.as_slice())?;
            Ok((state, true))
        })
    }

    /// Whether the journal holds an entry of `app` with this business key.
    pub fn journal_has_key(&self, app: &str, business_key: &str) -> Result<bool, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(JOURNAL_KEYS)?;
            Ok(t.get((app, business_key))?.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_accumulates_and_survives_reopen() {
        let (dir, s) = crate::store::test_store();
        assert_eq!(s.form_state("a", "1").unwrap(), None);
        s.form_observe("a", "1", 1).unwrap();
        let st = s.form_observe("a", "1", 2).unwrap();
        assert_eq!((st.last_status, st.events_seen), (2, 2));
        let st = s
            .form_mark_forwarded("a", "1", 2, Forwarded::Approved, 77)
            .unwrap();
        assert_eq!((st.last_status, st.events_seen), (2, 3));
        drop(s);
        let s = crate::store::test_store_in(dir.path());
        let st = s.form_state("a", "1").unwrap().unwrap();
        assert_eq!(st.approved_forwarded_at_ms, Some(77));
        assert_eq!(st.revoked_forwarded_at_ms, None);
        assert_eq!(s.form_state("other-app", "1").unwrap(), None);
    }
}
