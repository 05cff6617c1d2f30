//! Approval details: turns the `info` object of an `oa/getapprovaldetail` response into the
//! typed, normalised [`ApprovalInstance`] that mappings read (via
//! [`ApprovalInstance::to_document`]).
//!
//! This module owns every decision about how WeCom's approval JSON is interpreted (see
//! `PROTOCOL.md` §3.1 and §4.3). It is pure: no I/O, no clock, no global state; the caller passes
//! the time zone used for instants that carry no zone of their own.
//!
//! # Strict and tolerant parts
//!
//! * **Header** (`sp_no`, `template_id`, `sp_status`, `apply_time`, `applyer`/`batch_applyer`):
//!   missing or unusable → [`NormaliseError`]. Without these an approval cannot be routed or
//!   de-duplicated.
//! * **Form values that carry data** (numbers, money, timestamps inside controls): present but
//!   unparsable → [`NormaliseError::InvalidControl`] naming the control id and the field, never
//!   the offending value. Forwarding a guessed amount to a ledger is worse than not forwarding.
//! * **Everything else** (titles, names, speeches, process nodes, comments, unknown keys, the
//!   empty placeholders WeCom puts into every `value` object) is tolerant: absent or wrongly
//!   typed → empty string, empty list or `None`.
//!
//! # Conventions
//!
//! * Numbers and money are exact [`Decimal`](rust_decimal::Decimal)s parsed from WeCom's
//!   decimal strings (`"1280.50"` stays `1280.50`, scale kept), never via `f64`. Accepted syntax: optional sign, digits,
//!   optional `.` and digits, at most 28 significant digits (so the value is represented exactly);
//!   surrounding whitespace is ignored; `""` means "not filled in" (`None`). A JSON number is
//!   accepted too (through its shortest decimal representation), although WeCom sends strings.
//!   Serialised as strings.
//! * Timestamps are unix seconds given as a JSON integer or a decimal string. Absent, `null`, `""`
//!   and `0` mean "not set" (`None`; WeCom uses 0 for "not acted yet"). They are rendered as
//!   RFC 3339 with a numeric offset, e.g. `2025-06-04T15:12:07+08:00`.
//! * Control time zones: a control's `timezone_info` (only sent when it is not UTC+8) wins over
//!   the caller's zone. `zone_desc` (`"UTC+9"`, `"UTC-3:30"`, `"GMT+5:30"`, `"UTC"`) is
//!   authoritative. Without a usable `zone_desc`, `zone_offset` is read as hours **west** of UTC,
//!   the JavaScript `getTimezoneOffset` sign convention, because WeCom's only documented example
//!   pairs `zone_offset: "-9"` with `zone_desc: "UTC+9"`; so `"-9"` → `+09:00`, `"8"` →
//!   `-08:00`. An unusable `timezone_info` falls back to the caller's zone (the instant is the
//!   same either way; only the rendered offset differs).
//! * Display texts given per language (`title`, option texts, template names) use the `zh_CN`
//!   entry, else the first entry.
//! * `Tips` controls (display-only) are dropped. Unknown control types are kept as
//!   [`FormValue::Unknown`] with their raw `value`; `PhoneNumber`, whose value shape is
//!   undocumented, keeps its raw `value` too.
//!
//! # Layout
//!
//! `types` holds the public values, `normalise` the entry point with the header, process and
//! comments, `controls` the form controls, `scalars` the tolerant and strict readers of single
//! JSON values, and `document` the document mappings read.

mod controls;
mod document;
mod normalise;
mod scalars;
#[cfg(test)]
mod tests;
mod types;

pub use document::DocumentParts;
pub use normalise::normalise;
pub use types::{
    Applicant, ApprovalInstance, ApprovalNode, Approver, AttendancePeriod, Comment, ContactDept,
    ContactUser, DayItem, Form, FormControl, FormValue, RelatedApprovalItem, SelectorOption,
    status_name,
};

/// How deeply `Table` controls may nest inside each other before the input is rejected.
///
/// WeCom tables do not nest at all; the limit only protects the recursion from hostile input.
pub const MAX_TABLE_DEPTH: usize = 4;

/// Why an approval detail could not be normalised.
///
/// Messages name fields and control ids only; they never echo form contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormaliseError {
    /// `info` is not a JSON object.
    #[error("approval detail `info` is not a JSON object")]
    NotAnObject,
    /// A header field the bridge needs is absent, `null` or empty.
    #[error("approval detail lacks required field `{field}`")]
    MissingField {
        /// The missing field (`sp_no`, `template_id`, `sp_status`, `apply_time`, `applyer`).
        field: &'static str,
    },
    /// A header field is present but unusable.
    #[error("approval detail field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A form control holds a value that cannot be read exactly.
    #[error("form control `{control_id}` has an invalid `{field}`: {reason}")]
    InvalidControl {
        /// The control's `id` (truncated to 96 characters).
        control_id: String,
        /// The key inside the control's `value` (e.g. `new_money`, `s_timestamp`).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
