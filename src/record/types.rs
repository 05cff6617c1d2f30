//! Plain data of the ledger: what a job and an attempt are, as every back end stores them.
//!
//! No I/O and no logic beyond naming: these types cross the store seam, so the embedded back
//! end (`src/store/ledger.rs`) and a later PostgreSQL back end store exactly these values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a delivery job stands. The set is closed: every state is handled in one `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Recorded before the request is sent; found like this after a crash, the job is re-sent
    /// with the same idempotency key and the target's duplicate answer settles it.
    InFlight,
    /// The target accepted the document.
    Delivered,
    /// The target answered "already exists": counts as delivered.
    Duplicate,
    /// The last attempt failed in a way worth retrying; the broker holds the job until then.
    Retrying,
    /// Given up (permanent failure, refusal or attempts exhausted); parked for an operator.
    Dead,
    /// Pilot mode: mapped and recorded, nothing sent.
    DryRun,
    /// Not sent because the same document was delivered before (counts as delivered).
    SkippedAlreadyDelivered,
    /// A revocation whose approved job was never delivered: there is nothing to reverse.
    RevokedWithoutApproval,
}

/// Every state, in display order.
pub const ALL_STATES: [JobState; 8] = [
    JobState::InFlight,
    JobState::Delivered,
    JobState::Duplicate,
    JobState::Retrying,
    JobState::Dead,
    JobState::DryRun,
    JobState::SkippedAlreadyDelivered,
    JobState::RevokedWithoutApproval,
];

impl JobState {
    /// The name used in the store index, the CLI and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::InFlight => "in_flight",
            JobState::Delivered => "delivered",
            JobState::Duplicate => "duplicate",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
            JobState::DryRun => "dry_run",
            JobState::SkippedAlreadyDelivered => "skipped_already_delivered",
            JobState::RevokedWithoutApproval => "revoked_without_approval",
        }
    }

    /// Whether the target has the document (delivered, duplicate, or skipped as delivered).
    pub fn counts_as_delivered(self) -> bool {
        matches!(
            self,
            JobState::Delivered | JobState::Duplicate | JobState::SkippedAlreadyDelivered
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`ALL_STATES`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown delivery state `{given}`; one of: {}", ALL_STATES.map(JobState::as_str).join(", "))]
pub struct UnknownState {
    /// What was given.
    pub given: String,
}

impl std::str::FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_STATES
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState { given: s.into() })
    }
}

/// How one attempt ended, as the deliver stage classified the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Accepted by the target.
    Delivered,
    /// Refused as already existing: counts as delivered.
    Duplicate,
    /// Failed; worth trying again (timeout, connection error, 5xx, 429, listed body code).
    Retryable,
    /// Failed; trying again cannot help (validation error, other 4xx).
    Permanent,
    /// Pilot mode: the document was recorded, nothing was sent.
    DryRun,
}

impl Classification {
    /// The name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Delivered => "delivered",
            Classification::Duplicate => "duplicate",
            Classification::Retryable => "retryable",
            Classification::Permanent => "permanent",
            Classification::DryRun => "dry_run",
        }
    }
}

/// What the deliver stage knows about a job when it first sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStart {
    /// The idempotency key (`job_…`), deterministic per (event, mapping, action).
    pub key: String,
    /// Connector name (the target).
    pub connector: String,
    /// Mapping name.
    pub mapping: String,
    /// Lifecycle action (`approved`, `revoked`).
    pub action: String,
    /// Business key of the form (the SpNo).
    pub business_key: String,
    /// The WeCom app the event came from.
    pub app: String,
    /// Id of the journaled event (`evt_…`).
    pub event_id: String,
    /// Now, Unix milliseconds (passed in so tests control time).
    pub at_ms: i64,
}

/// A delivery job as recorded: its identity, where it stands, and a summary of its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The idempotency key (`job_…`).
    pub key: String,
    /// Where the job stands.
    pub state: JobState,
    /// Connector name.
    pub connector: String,
    /// Mapping name.
    pub mapping: String,
    /// Lifecycle action.
    pub action: String,
    /// Business key (SpNo).
    pub business_key: String,
    /// WeCom app.
    pub app: String,
    /// Journaled event id.
    pub event_id: String,
    /// Attempts recorded so far.
    pub attempts: u32,
    /// When the job was first seen (Unix ms); the time the indexes and retention use.
    pub created_at_ms: i64,
    /// When the job last changed (Unix ms).
    pub updated_at_ms: i64,
    /// When the first attempt started (Unix ms).
    pub first_attempt_at_ms: Option<i64>,
    /// When the last attempt started (Unix ms).
    pub last_attempt_at_ms: Option<i64>,
    /// Values captured from the target's answers (e.g. the voucher number), latest wins.
    pub captured: BTreeMap<String, String>,
    /// The reason of the last failure, if the job is not delivered.
    pub last_error: Option<String>,
}

/// Headers and bodies of one attempt: the part of the record that is sealed at rest and only
/// shown on explicit request. Already redacted (secrets, configured fields) by the deliver
/// stage; bodies are capped again by the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptPayload {
    /// Request headers as sent (redacted).
    pub request_headers: Vec<(String, String)>,
    /// Request body as sent (redacted, capped); for a dry run the document that would be sent.
    pub request_body: Option<String>,
    /// Response headers (redacted); empty when there was no answer.
    pub response_headers: Vec<(String, String)>,
    /// Response body (redacted, capped).
    pub response_body: Option<String>,
}

/// One attempt to deliver a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based attempt number. Assigned by the ledger when recorded (the value passed to
    /// `record_attempt` is ignored), so concurrent writers can never reuse a number.
    pub number: u32,
    /// When the request started (Unix ms).
    pub started_at_ms: i64,
    /// How long it took until the answer (or the failure), milliseconds.
    pub duration_ms: u64,
    /// HTTP method.
    pub method: String,
    /// URL without secrets.
    pub url: String,
    /// HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// How the answer was classified.
    pub classification: Classification,
    /// Why it failed (or a note), readable by an operator.
    pub reason: Option<String>,
    /// Values captured from the answer.
    pub captured: BTreeMap<String, String>,
    /// Headers and bodies; `None` when read back without the payload opt-in.
    pub payload: Option<AttemptPayload>,
}

/// An attempt as a back end stores it: the metadata in the clear, the payload sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAttempt {
    /// The attempt without its payload.
    pub meta: AttemptRecord,
    /// The sealed [`AttemptPayload`] (postcard, then AES-256-GCM).
    pub sealed: Option<SealedPayload>,
}

/// Ciphertext with the id of the key and the nonce it was sealed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPayload {
    /// Key id (for rotation).
    pub key_id: String,
    /// AEAD nonce.
    pub nonce: [u8; 12],
    /// Ciphertext with tag.
    pub ciphertext: Vec<u8>,
}

/// Which jobs to list. Every combination is answered from an index, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerQuery {
    /// Only jobs of this business key (SpNo).
    pub business_key: Option<String>,
    /// Only jobs of this connector.
    pub connector: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Created before (Unix ms).
    pub until_ms: Option<i64>,
    /// Continue after this cursor (from a previous [`Page`]).
    pub cursor: Option<Cursor>,
    /// Page size (clamped to 1..=1000 by the ledger).
    pub limit: usize,
}

/// Position in a listing: the (creation time, key) of the last job returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Creation time of the last job of the page.
    pub created_at_ms: i64,
    /// Its key.
    pub key: String,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at_ms, self.key)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    /// Parses the `created.key` form that [`Display`](std::fmt::Display) writes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (t, key) = s
            .split_once('.')
            .ok_or_else(|| format!("cursor `{s}` is not of the form <time>.<key>"))?;
        let created_at_ms = t
            .parse()
            .map_err(|_| format!("cursor `{s}`: `{t}` is not a time"))?;
        Ok(Cursor {
            created_at_ms,
            key: key.into(),
        })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// How many jobs of a connector are in a state (kept as counters: no scan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    /// Connector name.
    pub connector: String,
    /// State.
    pub state: JobState,
    /// Number of jobs.
    pub count: u64,
}

/// A job with every attempt, oldest attempt first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The job.
    pub job: JobRecord,
    /// Its attempts.
    pub attempts: Vec<AttemptRecord>,
    /// Its notifications (writeback), applicant first.
    #[serde(default)]
    pub writebacks: Vec<WritebackRecord>,
}

/// Who a writeback notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritebackKind {
    /// The applicant, told their document was booked (on delivered).
    Applicant,
    /// The configured operators, told a job was parked (on dead-lettered).
    Operator,
}

impl WritebackKind {
    /// Both kinds, in display order.
    pub const ALL: [WritebackKind; 2] = [WritebackKind::Applicant, WritebackKind::Operator];

    /// The name used in the store, the CLI and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            WritebackKind::Applicant => "applicant",
            WritebackKind::Operator => "operator",
        }
    }
}

/// Where a writeback notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritebackState {
    /// Recorded with the job's outcome; its writeback job is not yet on the broker. The deliver
    /// stage publishes it (again after a crash: a redelivered job finds it pending).
    Pending,
    /// On the `writeback` queue (or being sent, or waiting for a retry).
    Queued,
    /// WeCom accepted it.
    Sent,
    /// Given up (a permanent WeCom error or attempts used up); parked on `writeback`.
    Failed,
}

impl WritebackState {
    /// The name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            WritebackState::Pending => "pending",
            WritebackState::Queued => "queued",
            WritebackState::Sent => "sent",
            WritebackState::Failed => "failed",
        }
    }
}

/// One writeback notification of a job: what is sent and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritebackRecord {
    /// For whom.
    pub kind: WritebackKind,
    /// Where it stands.
    pub state: WritebackState,
    /// WeCom's `message/send` body without `agentid`, as JSON text.
    pub message: String,
    /// Sends tried.
    pub attempts: u32,
    /// When it was recorded (Unix ms).
    pub created_at_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
    /// WeCom's message id once sent.
    pub msg_id: Option<String>,
    /// Recipients WeCom reported invalid (users, parties, tags), if any.
    pub invalid: Vec<String>,
    /// The last failure, readable by an operator.
    pub last_error: Option<String>,
}

/// What one ledger write changes, handed to a back end to apply atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerWrite {
    /// The job as it is after the write.
    pub job: JobRecord,
    /// An attempt to append, if any.
    pub attempt: Option<StoredAttempt>,
}
