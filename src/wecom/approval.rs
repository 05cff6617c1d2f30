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
//! * Numbers and money are exact [`Decimal`]s parsed from WeCom's decimal strings (`"1280.50"`
//!   stays `1280.50`, scale kept), never via `f64`. Accepted syntax: optional sign, digits,
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

use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How deeply `Table` controls may nest inside each other before the input is rejected.
///
/// WeCom tables do not nest at all; the limit only protects the recursion from hostile input.
pub const MAX_TABLE_DEPTH: usize = 4;

/// At most this many characters of a control id are quoted in an error.
const MAX_ID_IN_ERROR: usize = 96;

/// Significant digits a decimal may have so that [`Decimal`] holds it exactly.
const MAX_DECIMAL_DIGITS: usize = 28;

/// Largest accepted time zone offset in `timezone_info`, in seconds (±18 h).
const MAX_ZONE_OFFSET_SECS: i32 = 18 * 3600;

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

/// A normalised approval instance (审批单).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalInstance {
    /// Approval number (`sp_no`), always a string.
    pub sp_no: String,
    /// Template name (`sp_name`); empty if absent.
    pub sp_name: String,
    /// Template id (`template_id`).
    pub template_id: String,
    /// Form status (`sp_status`): 1 in progress, 2 approved, 3 rejected, 4 withdrawn,
    /// 6 revoked after approval, 7 deleted, 10 paid.
    pub status: u32,
    /// [`status`](Self::status) as a word: `in_progress`, `approved`, `rejected`, `withdrawn`,
    /// `revoked`, `deleted`, `paid`, or `unknown` for any other code.
    pub status_name: String,
    /// Who submitted the form.
    pub applicant: Applicant,
    /// Submit time, RFC 3339 in the caller's time zone.
    pub apply_time: String,
    /// Submit time, unix seconds.
    pub apply_timestamp: i64,
    /// Approval flow: `process_list.node_list`, or the legacy `sp_record` when `process_list`
    /// is absent or has no nodes.
    pub approval_nodes: Vec<ApprovalNode>,
    /// Comments (备注) in response order.
    pub comments: Vec<Comment>,
    /// User ids of CC recipients (`notifyer`).
    pub notifyers: Vec<String>,
    /// The filled-in form.
    pub form: Form,
}

/// The applicant of an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    /// WeCom user id.
    pub user_id: String,
    /// Department id (`applyer.partyid`); `None` when absent or for batch applications.
    pub department: Option<String>,
    /// `true` when the applicant came from `batch_applyer` (批量申请) instead of `applyer`.
    pub batch: bool,
}

/// One node of the approval flow.
///
/// Codes follow `process_list`: `node_type` 1 approver, 2 CC, 3 handler; `status` 1 in progress,
/// 2 agreed, 3 rejected, 4 transferred, 11 sent back, 12 signer added, 13 agreed-and-added,
/// 14 handled, 15 handed over; `approve_rel` 1 all must agree (会签), 2 any one (或签),
/// 3 sequential. Nodes taken from the legacy `sp_record` get `node_type` 1 and their
/// `approverattr` translated (1 或签 → 2, 2 会签 → 1). `None` means WeCom did not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalNode {
    /// Node kind (1 approver, 2 CC, 3 handler).
    pub node_type: Option<u32>,
    /// Node status.
    pub status: Option<u32>,
    /// How the node's approvers combine (1 会签, 2 或签, 3 sequential).
    pub approve_rel: Option<u32>,
    /// The people on this node, in response order.
    pub approvers: Vec<Approver>,
}

/// One person on an approval node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    /// WeCom user id.
    pub user_id: String,
    /// This person's status on the node (same codes as [`ApprovalNode::status`]).
    pub status: Option<u32>,
    /// Opinion text (审批意见); empty if none.
    pub speech: String,
    /// When they acted, RFC 3339; `None` if they have not acted (WeCom sends 0) or the time is
    /// unreadable.
    pub time: Option<String>,
    /// Attachments (media ids).
    pub media_ids: Vec<String>,
}

/// A comment (备注) on the approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// Author's WeCom user id.
    pub user_id: String,
    /// When it was written, RFC 3339; `None` if absent or unreadable.
    pub time: Option<String>,
    /// The comment text.
    pub content: String,
    /// WeCom's comment id, as a string.
    pub comment_id: String,
    /// Attachments (media ids).
    pub media_ids: Vec<String>,
}

/// The filled-in form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Form {
    /// Controls in form order, `Tips` controls left out.
    pub controls: Vec<FormControl>,
}

/// One control (field) of the form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormControl {
    /// Control id, e.g. `Money-1748000000005`; stable per template, so mappings should prefer it.
    pub id: String,
    /// Title: the `zh_CN` text, else the first one, else empty.
    pub title: String,
    /// WeCom control type as sent (`Text`, `Money`, …, or an unknown name).
    pub control: String,
    /// Whether WeCom marks the control as hidden (`hidden: 1`).
    pub hidden: bool,
    /// The normalised value.
    pub value: FormValue,
}

/// A control's value, chosen by the control type (not by which keys happen to be present).
///
/// Serialised with a `type` tag in snake_case, e.g. `{"type": "money", "amount": "1280.50"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FormValue {
    /// `Text` and `Textarea`.
    Text {
        /// The text; empty if not filled in.
        text: String,
    },
    /// `Number` (`new_number`).
    Number {
        /// The exact number; `None` if not filled in.
        value: Option<Decimal>,
    },
    /// `Money` (`new_money`); the unit is not documented by WeCom (yuan in practice).
    Money {
        /// The exact amount, scale kept; `None` if not filled in.
        amount: Option<Decimal>,
    },
    /// `Date`.
    Date {
        /// WeCom's precision: `day` or `hour`.
        kind: String,
        /// The instant, RFC 3339 in the control's zone.
        at: Option<String>,
        /// The calendar date (`YYYY-MM-DD`) in the same zone.
        date: Option<String>,
        /// The instant, unix seconds.
        timestamp: Option<i64>,
    },
    /// `DateRange`.
    DateRange {
        /// WeCom's precision: `halfday`, `hour` or `day`.
        kind: String,
        /// Start, RFC 3339 in the control's zone.
        begin: Option<String>,
        /// End, RFC 3339 in the control's zone.
        end: Option<String>,
        /// Start, unix seconds.
        begin_timestamp: Option<i64>,
        /// End, unix seconds.
        end_timestamp: Option<i64>,
        /// Duration as computed by WeCom (`new_duration`), seconds.
        duration_secs: Option<i64>,
    },
    /// `Selector`: only the chosen options. Map on `key`, not on the display text.
    Selector {
        /// Multiple choice (`type: multi`).
        multi: bool,
        /// The chosen options.
        options: Vec<SelectorOption>,
    },
    /// `Contact`: members and/or departments.
    Contact {
        /// Chosen members.
        users: Vec<ContactUser>,
        /// Chosen departments.
        departments: Vec<ContactDept>,
    },
    /// `File`.
    File {
        /// Media ids of the files.
        file_ids: Vec<String>,
    },
    /// `Table` (明细): one entry per row, each row holding controls like the form.
    Table {
        /// The rows in order; `Tips` cells are left out like at the top level.
        rows: Vec<Vec<FormControl>>,
    },
    /// `Vacation` (请假).
    Vacation {
        /// Vacation type id (the selector option key).
        type_key: String,
        /// Vacation type name (年假, 病假, …).
        type_name: String,
        /// Precision of the range: `halfday`, `hour` or `day`.
        range_kind: String,
        /// Start, RFC 3339.
        begin: Option<String>,
        /// End, RFC 3339.
        end: Option<String>,
        /// Start, unix seconds.
        begin_timestamp: Option<i64>,
        /// End, unix seconds.
        end_timestamp: Option<i64>,
        /// Range duration (`new_duration`), seconds.
        duration_secs: Option<i64>,
        /// Per-day split (`slice_info.day_items`).
        day_items: Vec<DayItem>,
        /// Total from `slice_info.duration`, seconds.
        slice_duration_secs: Option<i64>,
    },
    /// `Attendance` (leave, punch correction, business trip, outing, overtime).
    Attendance {
        /// 1 leave, 2 punch correction, 3 business trip, 4 outing, 5 overtime.
        kind: Option<u32>,
        /// Precision of the range: `halfday`, `hour` or `day`.
        range_kind: String,
        /// Start, RFC 3339.
        begin: Option<String>,
        /// End, RFC 3339.
        end: Option<String>,
        /// Start, unix seconds.
        begin_timestamp: Option<i64>,
        /// End, unix seconds.
        end_timestamp: Option<i64>,
        /// Range duration (`new_duration`), seconds.
        duration_secs: Option<i64>,
        /// Per-day split (`slice_info.day_items`).
        day_items: Vec<DayItem>,
        /// Total from `slice_info.duration`, seconds.
        slice_duration_secs: Option<i64>,
    },
    /// `PunchCorrection` (补卡).
    PunchCorrection {
        /// What is corrected, e.g. `上班-未打卡`.
        state: String,
        /// The corrected punch time, RFC 3339.
        time: Option<String>,
        /// The day concerned (`daymonthyear`) as `YYYY-MM-DD`.
        day: Option<String>,
    },
    /// `Location`.
    Location {
        /// Latitude as WeCom sent it (a decimal string).
        latitude: String,
        /// Longitude as WeCom sent it (a decimal string).
        longitude: String,
        /// Place name.
        title: String,
        /// Address.
        address: String,
        /// When the location was taken, RFC 3339.
        time: Option<String>,
    },
    /// `RelatedApproval` (关联审批单).
    RelatedApproval {
        /// The linked approvals.
        items: Vec<RelatedApprovalItem>,
    },
    /// `Formula` (computed by WeCom).
    Formula {
        /// The result as an exact decimal; `None` when empty or not a plain decimal (then only
        /// `raw` is available; formulas are derived data, so this is not an error).
        value: Option<Decimal>,
        /// The result exactly as sent.
        raw: String,
    },
    /// `BankAccount` (收款账户).
    BankAccount {
        /// 1 corporate account, 2 personal account.
        account_type: Option<u32>,
        /// Account holder.
        account_name: String,
        /// Account number, as a string.
        account_number: String,
        /// Bank (`bank.bank_alias`), e.g. 工商银行.
        bank_name: String,
        /// WeCom's bank code (`bank.bank_alias_code`).
        bank_code: String,
        /// Branch name (`bank.bank_branch_name`).
        branch_name: String,
        /// Branch id (`bank.bank_branch_id`, the CNAPS number).
        branch_id: String,
        /// Province of the branch.
        province: String,
        /// City of the branch.
        city: String,
        /// Remark.
        remark: String,
    },
    /// `PhoneNumber`: the value shape is undocumented, so the control's raw `value` is kept.
    PhoneNumber {
        /// The control's `value` object exactly as sent.
        raw: Value,
    },
    /// A control type this module does not know: kept, never dropped.
    Unknown {
        /// The control type as sent.
        control: String,
        /// The control's `value` (or, if the item was not an object, the item) as sent.
        raw: Value,
    },
}

/// A chosen selector option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectorOption {
    /// Option key (stable; use it for mapping).
    pub key: String,
    /// Display text (`zh_CN`, else the first).
    pub text: String,
}

/// A member chosen in a `Contact` control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactUser {
    /// WeCom user id.
    pub user_id: String,
    /// Display name.
    pub name: String,
}

/// A department chosen in a `Contact` control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactDept {
    /// Department id (`openapi_id`), as a string.
    pub id: String,
    /// Department name.
    pub name: String,
}

/// One day of a leave or attendance split (`slice_info.day_items`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayItem {
    /// The day as `YYYY-MM-DD`.
    pub date: Option<String>,
    /// Start of the day (`daytime`), RFC 3339.
    pub at: Option<String>,
    /// Time counted on that day, seconds.
    pub duration_secs: Option<i64>,
}

/// One approval linked in a `RelatedApproval` control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedApprovalItem {
    /// Its approval number.
    pub sp_no: String,
    /// Its template name (`zh_CN`, else the first of `template_names`).
    pub template_name: String,
    /// Its form status (same codes as [`ApprovalInstance::status`]).
    pub status: Option<u32>,
    /// Its applicant's display name.
    pub name: String,
    /// When it was created, RFC 3339.
    pub create_time: Option<String>,
}

/// Normalises the `info` object of an `oa/getapprovaldetail` response.
///
/// `tz` renders instants that carry no zone of their own (header, nodes, comments, and controls
/// without `timezone_info`); pass the corp's zone, typically `Asia/Shanghai`.
///
/// # Errors
///
/// [`NormaliseError`] when `info` is not an object, a header field is missing or invalid, or a
/// control holds an unreadable number, amount or timestamp. Never panics.
pub fn normalise(info: &Value, tz: &TimeZone) -> Result<ApprovalInstance, NormaliseError> {
    if !info.is_object() {
        return Err(NormaliseError::NotAnObject);
    }
    let sp_no = required_id(info.get("sp_no"), "sp_no")?;
    let template_id = required_id(info.get("template_id"), "template_id")?;
    let status = header_status(info.get("sp_status"))?;
    let (apply_time, apply_timestamp) = header_time(info.get("apply_time"), tz)?;
    let applicant = applicant(info)?;

    let controls = match info.get("apply_data").and_then(|d| d.get("contents")) {
        Some(contents) => controls(contents, tz, 0)?,
        None => Vec::new(),
    };

    Ok(ApprovalInstance {
        sp_no,
        sp_name: text(info.get("sp_name")),
        template_id,
        status,
        status_name: status_name(status).to_owned(),
        applicant,
        apply_time,
        apply_timestamp,
        approval_nodes: approval_nodes(info, tz),
        comments: comments(info.get("comments"), tz),
        notifyers: items(info.get("notifyer"))
            .map(|n| match n {
                Value::String(s) => s.clone(),
                other => text(other.get("userid")),
            })
            .filter(|id| !id.is_empty())
            .collect(),
        form: Form { controls },
    })
}

/// The word for a form status code (see [`ApprovalInstance::status_name`]).
pub fn status_name(status: u32) -> &'static str {
    match status {
        1 => "in_progress",
        2 => "approved",
        3 => "rejected",
        4 => "withdrawn",
        6 => "revoked",
        7 => "deleted",
        10 => "paid",
        _ => "unknown",
    }
}

impl ApprovalInstance {
    /// The document mappings read.
    ///
    /// It is this instance serialised to JSON (decimals as exact strings, never floats) with
    /// three additions:
    ///
    /// * `form_by_id`: `{ control id → value }` for the top-level controls;
    /// * `form_by_title`: `{ title → value }` for the top-level controls; when titles repeat,
    ///   the first control wins (all of them stay in `form.controls`); empty titles and ids are
    ///   not keyed;
    /// * every `table` value additionally carries `rows_by_id` and `rows_by_title`: one such
    ///   map per row, built with the same rules.
    ///
    /// A value is the [`FormValue`] object with its `type` tag, e.g.
    /// `{"type": "money", "amount": "1280.50"}`.
    pub fn to_document(&self) -> Value {
        // Destructured so that a new field cannot be forgotten here.
        let ApprovalInstance {
            sp_no,
            sp_name,
            template_id,
            status,
            status_name,
            applicant,
            apply_time,
            apply_timestamp,
            approval_nodes,
            comments,
            notifyers,
            form,
        } = self;
        let (controls, by_id, by_title) = controls_document(&form.controls);
        let mut form_doc = Map::new();
        form_doc.insert("controls".to_owned(), Value::Array(controls));

        let mut doc = Map::new();
        doc.insert("sp_no".to_owned(), json_of(sp_no));
        doc.insert("sp_name".to_owned(), json_of(sp_name));
        doc.insert("template_id".to_owned(), json_of(template_id));
        doc.insert("status".to_owned(), json_of(status));
        doc.insert("status_name".to_owned(), json_of(status_name));
        doc.insert("applicant".to_owned(), json_of(applicant));
        doc.insert("apply_time".to_owned(), json_of(apply_time));
        doc.insert("apply_timestamp".to_owned(), json_of(apply_timestamp));
        doc.insert("approval_nodes".to_owned(), json_of(approval_nodes));
        doc.insert("comments".to_owned(), json_of(comments));
        doc.insert("notifyers".to_owned(), json_of(notifyers));
        doc.insert("form".to_owned(), Value::Object(form_doc));
        doc.insert("form_by_id".to_owned(), Value::Object(by_id));
        doc.insert("form_by_title".to_owned(), Value::Object(by_title));
        Value::Object(doc)
    }
}

// ---------------------------------------------------------------------------------------------
// Document helpers

/// Serialises one of this module's types. They only have string keys and infallible
/// `Serialize` impls, so the `Null` fallback is unreachable; it exists to avoid a panic path.
fn json_of<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `(controls as a list, values by id, values by title)`; each value is built once.
fn controls_document(
    controls: &[FormControl],
) -> (Vec<Value>, Map<String, Value>, Map<String, Value>) {
    let mut list = Vec::with_capacity(controls.len());
    let mut by_id = Map::new();
    let mut by_title = Map::new();
    for control in controls {
        let value = value_document(&control.value);
        if !control.id.is_empty() && !by_id.contains_key(&control.id) {
            by_id.insert(control.id.clone(), value.clone());
        }
        if !control.title.is_empty() && !by_title.contains_key(&control.title) {
            by_title.insert(control.title.clone(), value.clone());
        }
        let mut out = Map::new();
        out.insert("id".to_owned(), Value::String(control.id.clone()));
        out.insert("title".to_owned(), Value::String(control.title.clone()));
        out.insert("control".to_owned(), Value::String(control.control.clone()));
        out.insert("hidden".to_owned(), Value::Bool(control.hidden));
        out.insert("value".to_owned(), value);
        list.push(Value::Object(out));
    }
    (list, by_id, by_title)
}

fn value_document(value: &FormValue) -> Value {
    let FormValue::Table { rows } = value else {
        return json_of(value);
    };
    let mut plain = Vec::with_capacity(rows.len());
    let mut rows_by_id = Vec::with_capacity(rows.len());
    let mut rows_by_title = Vec::with_capacity(rows.len());
    for row in rows {
        let (cells, by_id, by_title) = controls_document(row);
        plain.push(Value::Array(cells));
        rows_by_id.push(Value::Object(by_id));
        rows_by_title.push(Value::Object(by_title));
    }
    let mut out = Map::new();
    out.insert("type".to_owned(), Value::String("table".to_owned()));
    out.insert("rows".to_owned(), Value::Array(plain));
    out.insert("rows_by_id".to_owned(), Value::Array(rows_by_id));
    out.insert("rows_by_title".to_owned(), Value::Array(rows_by_title));
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Header

fn required_id(value: Option<&Value>, field: &'static str) -> Result<String, NormaliseError> {
    let s = match value {
        None | Some(Value::Null) => return Err(NormaliseError::MissingField { field }),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(NormaliseError::InvalidField {
                field,
                reason: "not a string",
            });
        }
    };
    if s.is_empty() {
        return Err(NormaliseError::MissingField { field });
    }
    Ok(s)
}

fn header_status(value: Option<&Value>) -> Result<u32, NormaliseError> {
    const FIELD: &str = "sp_status";
    match integer(value) {
        Ok(Some(n)) => u32::try_from(n).map_err(|_| NormaliseError::InvalidField {
            field: FIELD,
            reason: "out of range",
        }),
        Ok(None) => Err(NormaliseError::MissingField { field: FIELD }),
        Err(reason) => Err(NormaliseError::InvalidField {
            field: FIELD,
            reason,
        }),
    }
}

fn header_time(value: Option<&Value>, tz: &TimeZone) -> Result<(String, i64), NormaliseError> {
    const FIELD: &str = "apply_time";
    let invalid = |reason| NormaliseError::InvalidField {
        field: FIELD,
        reason,
    };
    match timestamp(value) {
        Ok(Some(ts)) => {
            let (text, _) = render(ts, tz).map_err(invalid)?;
            Ok((text, ts.as_second()))
        }
        Ok(None) => Err(NormaliseError::MissingField { field: FIELD }),
        Err(reason) => Err(invalid(reason)),
    }
}

fn applicant(info: &Value) -> Result<Applicant, NormaliseError> {
    if let Some(applyer) = info.get("applyer") {
        let user_id = text(applyer.get("userid"));
        if !user_id.is_empty() {
            let department = Some(text(applyer.get("partyid"))).filter(|d| !d.is_empty());
            return Ok(Applicant {
                user_id,
                department,
                batch: false,
            });
        }
    }
    if let Some(batch) = info.get("batch_applyer") {
        // Documented as an object; take the first entry should it ever arrive as a list.
        let batch = match batch {
            Value::Array(list) => list.first().unwrap_or(&Value::Null),
            other => other,
        };
        let user_id = text(batch.get("userid"));
        if !user_id.is_empty() {
            return Ok(Applicant {
                user_id,
                department: None,
                batch: true,
            });
        }
    }
    Err(NormaliseError::MissingField { field: "applyer" })
}

// ---------------------------------------------------------------------------------------------
// Process, comments

fn approval_nodes(info: &Value, tz: &TimeZone) -> Vec<ApprovalNode> {
    let process: Vec<&Value> =
        items(info.get("process_list").and_then(|p| p.get("node_list"))).collect();
    if !process.is_empty() {
        return process
            .into_iter()
            .map(|node| ApprovalNode {
                node_type: code(node.get("node_type")),
                status: code(node.get("sp_status")),
                approve_rel: code(node.get("apv_rel")),
                approvers: items(node.get("sub_node_list"))
                    .map(|sub| {
                        let mut user_id = text(sub.get("userid"));
                        if user_id.is_empty() {
                            // The callback XML nests it as UserInfo/UserId; accept that here too.
                            let info = sub.get("userinfo").or_else(|| sub.get("user_info"));
                            user_id = text(info.and_then(|u| u.get("userid")));
                        }
                        Approver {
                            user_id,
                            status: code(sub.get("sp_yj")),
                            speech: text(sub.get("speech")),
                            time: lenient_time(sub.get("sptime"), tz),
                            media_ids: strings(
                                sub.get("media_ids").or_else(|| sub.get("media_id")),
                            ),
                        }
                    })
                    .collect(),
            })
            .collect();
    }
    items(info.get("sp_record"))
        .map(|record| ApprovalNode {
            node_type: Some(1),
            status: code(record.get("sp_status")),
            approve_rel: match code(record.get("approverattr")) {
                Some(1) => Some(2),
                Some(2) => Some(1),
                _ => None,
            },
            approvers: items(record.get("details"))
                .map(|detail| Approver {
                    user_id: text(detail.get("approver").and_then(|a| a.get("userid"))),
                    status: code(detail.get("sp_status")),
                    speech: text(detail.get("speech")),
                    time: lenient_time(detail.get("sptime"), tz),
                    media_ids: strings(detail.get("media_id").or_else(|| detail.get("media_ids"))),
                })
                .collect(),
        })
        .collect()
}

fn comments(value: Option<&Value>, tz: &TimeZone) -> Vec<Comment> {
    items(value)
        .map(|c| {
            let author = c
                .get("commentUserInfo")
                .or_else(|| c.get("comment_user_info"))
                .or_else(|| c.get("commentuserinfo"));
            Comment {
                user_id: text(author.and_then(|a| a.get("userid"))),
                time: lenient_time(c.get("commenttime"), tz),
                content: text(c.get("commentcontent")),
                comment_id: text(c.get("commentid")),
                media_ids: strings(c.get("media_id").or_else(|| c.get("media_ids"))),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Form

fn controls(list: &Value, tz: &TimeZone, depth: usize) -> Result<Vec<FormControl>, NormaliseError> {
    let mut out = Vec::new();
    for item in items(Some(list)) {
        if let Some(control) = control(item, tz, depth)? {
            out.push(control);
        }
    }
    Ok(out)
}

/// Reads one `contents[]` item; `None` for `Tips`.
fn control(
    item: &Value,
    tz: &TimeZone,
    depth: usize,
) -> Result<Option<FormControl>, NormaliseError> {
    let Value::Object(fields) = item else {
        return Ok(Some(FormControl {
            id: String::new(),
            title: String::new(),
            control: String::new(),
            hidden: false,
            value: FormValue::Unknown {
                control: String::new(),
                raw: item.clone(),
            },
        }));
    };
    let kind = text(fields.get("control"));
    if kind == "Tips" {
        return Ok(None);
    }
    let id = text(fields.get("id"));
    let ctx = Ctx { id: &id, tz };
    let raw = fields.get("value").unwrap_or(&Value::Null);
    let value = match kind.as_str() {
        "Text" | "Textarea" => FormValue::Text {
            text: text(raw.get("text")),
        },
        "Number" => FormValue::Number {
            value: ctx.decimal(raw.get("new_number"), "new_number")?,
        },
        "Money" => FormValue::Money {
            amount: ctx.decimal(raw.get("new_money"), "new_money")?,
        },
        "Date" => {
            // The doc's JSON example omits the `date` wrapper its table shows; accept both.
            let date = raw.get("date").filter(|d| d.is_object()).unwrap_or(raw);
            let zone = zone(date.get("timezone_info"), tz);
            let instant = ctx.time(date.get("s_timestamp"), "s_timestamp")?;
            let rendered = instant
                .map(|ts| ctx.render(ts, &zone, "s_timestamp"))
                .transpose()?;
            let (at, day) = rendered.unzip();
            FormValue::Date {
                kind: text(date.get("type")),
                at,
                date: day,
                timestamp: instant.map(|ts| ts.as_second()),
            }
        }
        "DateRange" => {
            let range = raw
                .get("date_range")
                .filter(|d| d.is_object())
                .unwrap_or(raw);
            let r = ctx.range(range)?;
            FormValue::DateRange {
                kind: r.kind,
                begin: r.begin,
                end: r.end,
                begin_timestamp: r.begin_timestamp,
                end_timestamp: r.end_timestamp,
                duration_secs: r.duration_secs,
            }
        }
        "Selector" => selector(raw.get("selector")),
        "Contact" => FormValue::Contact {
            users: items(raw.get("members"))
                .map(|m| ContactUser {
                    user_id: text(m.get("userid")),
                    name: text(m.get("name")),
                })
                .collect(),
            departments: items(raw.get("departments"))
                .map(|d| ContactDept {
                    id: text(d.get("openapi_id")),
                    name: text(d.get("name")),
                })
                .collect(),
        },
        "File" => FormValue::File {
            file_ids: items(raw.get("files"))
                .map(|f| text(f.get("file_id")))
                .filter(|f| !f.is_empty())
                .collect(),
        },
        "Table" => {
            if depth >= MAX_TABLE_DEPTH {
                return Err(ctx.invalid("children", "tables nested too deeply"));
            }
            let mut rows = Vec::new();
            for row in items(raw.get("children")) {
                let cells = match row.get("list") {
                    Some(list) => controls(list, tz, depth + 1)?,
                    None => Vec::new(),
                };
                rows.push(cells);
            }
            FormValue::Table { rows }
        }
        "Vacation" => {
            let vacation = raw.get("vacation").unwrap_or(&Value::Null);
            let option = items(vacation.get("selector").and_then(|s| s.get("options"))).next();
            let attendance = vacation.get("attendance").unwrap_or(&Value::Null);
            let r = ctx.attendance(attendance)?;
            FormValue::Vacation {
                type_key: text(option.and_then(|o| o.get("key"))),
                type_name: lang_text(option.and_then(|o| o.get("value"))),
                range_kind: r.range.kind,
                begin: r.range.begin,
                end: r.range.end,
                begin_timestamp: r.range.begin_timestamp,
                end_timestamp: r.range.end_timestamp,
                duration_secs: r.range.duration_secs,
                day_items: r.day_items,
                slice_duration_secs: r.slice_duration_secs,
            }
        }
        "Attendance" => {
            let attendance = raw.get("attendance").unwrap_or(&Value::Null);
            let r = ctx.attendance(attendance)?;
            FormValue::Attendance {
                kind: code(attendance.get("type")),
                range_kind: r.range.kind,
                begin: r.range.begin,
                end: r.range.end,
                begin_timestamp: r.range.begin_timestamp,
                end_timestamp: r.range.end_timestamp,
                duration_secs: r.range.duration_secs,
                day_items: r.day_items,
                slice_duration_secs: r.slice_duration_secs,
            }
        }
        "PunchCorrection" => {
            let pc = raw.get("punch_correction").unwrap_or(&Value::Null);
            FormValue::PunchCorrection {
                state: text(pc.get("state")),
                time: ctx.rfc3339(pc.get("time"), "time", tz)?,
                day: ctx.day(pc.get("daymonthyear"), "daymonthyear", tz)?,
            }
        }
        "Location" => {
            let loc = raw.get("location").unwrap_or(&Value::Null);
            FormValue::Location {
                latitude: text(loc.get("latitude")),
                longitude: text(loc.get("longitude")),
                title: text(loc.get("title")),
                address: text(loc.get("address")),
                time: ctx.rfc3339(loc.get("time"), "time", tz)?,
            }
        }
        "RelatedApproval" => {
            let mut related = Vec::new();
            for item in items(raw.get("related_approval")) {
                related.push(RelatedApprovalItem {
                    sp_no: text(item.get("sp_no")),
                    template_name: lang_text(item.get("template_names")),
                    status: code(item.get("sp_status")),
                    name: text(item.get("name")),
                    create_time: ctx.rfc3339(item.get("create_time"), "create_time", tz)?,
                });
            }
            FormValue::RelatedApproval { items: related }
        }
        "Formula" => {
            let raw_text = text(raw.get("formula").and_then(|f| f.get("value")));
            FormValue::Formula {
                value: parse_decimal(&raw_text).ok().flatten(),
                raw: raw_text,
            }
        }
        "BankAccount" => {
            let account = raw.get("bank_account").unwrap_or(&Value::Null);
            let bank = account.get("bank").unwrap_or(&Value::Null);
            FormValue::BankAccount {
                account_type: code(account.get("account_type")),
                account_name: text(account.get("account_name")),
                account_number: text(account.get("account_number")),
                bank_name: text(bank.get("bank_alias")),
                bank_code: text(bank.get("bank_alias_code")),
                branch_name: text(bank.get("bank_branch_name")),
                branch_id: text(bank.get("bank_branch_id")),
                province: text(bank.get("province")),
                city: text(bank.get("city")),
                remark: text(account.get("remark")),
            }
        }
        "PhoneNumber" => FormValue::PhoneNumber { raw: raw.clone() },
        _ => FormValue::Unknown {
            control: kind.clone(),
            raw: raw.clone(),
        },
    };
    Ok(Some(FormControl {
        title: lang_text(fields.get("title")),
        hidden: flag(fields.get("hidden")),
        control: kind,
        id,
        value,
    }))
}

fn selector(selector: Option<&Value>) -> FormValue {
    let selector = selector.unwrap_or(&Value::Null);
    FormValue::Selector {
        multi: text(selector.get("type")) == "multi",
        options: items(selector.get("options"))
            .map(|o| SelectorOption {
                key: text(o.get("key")),
                text: lang_text(o.get("value")),
            })
            .collect(),
    }
}

/// A normalised `date_range`.
struct Range {
    kind: String,
    begin: Option<String>,
    end: Option<String>,
    begin_timestamp: Option<i64>,
    end_timestamp: Option<i64>,
    duration_secs: Option<i64>,
}

/// A normalised `attendance` object (also used inside `vacation`).
struct AttendanceParts {
    range: Range,
    day_items: Vec<DayItem>,
    slice_duration_secs: Option<i64>,
}

/// The control being read: its id for errors and the caller's zone.
struct Ctx<'a> {
    id: &'a str,
    tz: &'a TimeZone,
}

impl Ctx<'_> {
    fn invalid(&self, field: &'static str, reason: &'static str) -> NormaliseError {
        NormaliseError::InvalidControl {
            control_id: self.id.chars().take(MAX_ID_IN_ERROR).collect(),
            field,
            reason,
        }
    }

    fn decimal(
        &self,
        value: Option<&Value>,
        field: &'static str,
    ) -> Result<Option<Decimal>, NormaliseError> {
        let s = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(self.invalid(field, "not a decimal string")),
        };
        parse_decimal(&s).map_err(|reason| self.invalid(field, reason))
    }

    fn time(
        &self,
        value: Option<&Value>,
        field: &'static str,
    ) -> Result<Option<Timestamp>, NormaliseError> {
        timestamp(value).map_err(|reason| self.invalid(field, reason))
    }

    fn render(
        &self,
        ts: Timestamp,
        zone: &TimeZone,
        field: &'static str,
    ) -> Result<(String, String), NormaliseError> {
        render(ts, zone).map_err(|reason| self.invalid(field, reason))
    }

    fn rfc3339(
        &self,
        value: Option<&Value>,
        field: &'static str,
        zone: &TimeZone,
    ) -> Result<Option<String>, NormaliseError> {
        match self.time(value, field)? {
            Some(ts) => Ok(Some(self.render(ts, zone, field)?.0)),
            None => Ok(None),
        }
    }

    fn day(
        &self,
        value: Option<&Value>,
        field: &'static str,
        zone: &TimeZone,
    ) -> Result<Option<String>, NormaliseError> {
        match self.time(value, field)? {
            Some(ts) => Ok(Some(self.render(ts, zone, field)?.1)),
            None => Ok(None),
        }
    }

    fn seconds(
        &self,
        value: Option<&Value>,
        field: &'static str,
    ) -> Result<Option<i64>, NormaliseError> {
        integer(value).map_err(|reason| self.invalid(field, reason))
    }

    fn range(&self, range: &Value) -> Result<Range, NormaliseError> {
        let zone = zone(range.get("timezone_info"), self.tz);
        let begin = self.time(range.get("new_begin"), "new_begin")?;
        let end = self.time(range.get("new_end"), "new_end")?;
        Ok(Range {
            kind: text(range.get("type")),
            begin: begin
                .map(|ts| self.render(ts, &zone, "new_begin"))
                .transpose()?
                .map(|r| r.0),
            end: end
                .map(|ts| self.render(ts, &zone, "new_end"))
                .transpose()?
                .map(|r| r.0),
            begin_timestamp: begin.map(|ts| ts.as_second()),
            end_timestamp: end.map(|ts| ts.as_second()),
            duration_secs: self.seconds(range.get("new_duration"), "new_duration")?,
        })
    }

    fn attendance(&self, attendance: &Value) -> Result<AttendanceParts, NormaliseError> {
        let date_range = attendance.get("date_range").unwrap_or(&Value::Null);
        let zone = zone(date_range.get("timezone_info"), self.tz);
        let range = self.range(date_range)?;
        let slice = attendance.get("slice_info").unwrap_or(&Value::Null);
        let mut day_items = Vec::new();
        for item in items(slice.get("day_items")) {
            let rendered = match self.time(item.get("daytime"), "daytime")? {
                Some(ts) => Some(self.render(ts, &zone, "daytime")?),
                None => None,
            };
            let (at, date) = rendered.unzip();
            day_items.push(DayItem {
                date,
                at,
                duration_secs: self.seconds(item.get("duration"), "duration")?,
            });
        }
        Ok(AttendanceParts {
            range,
            day_items,
            slice_duration_secs: self.seconds(slice.get("duration"), "duration")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars

/// Iterates a JSON array; anything else (absent, `null`, a stray object) yields nothing.
fn items(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter())
        .into_iter()
        .flatten()
}

/// A string field: strings as they are, numbers and booleans in their JSON spelling, anything
/// else empty.
fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A list of strings (media ids); non-strings and empty strings are skipped.
fn strings(value: Option<&Value>) -> Vec<String> {
    items(value)
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `[{text, lang}]` → the `zh_CN` text, else the first; a bare string is taken as is.
fn lang_text(value: Option<&Value>) -> String {
    if let Some(Value::String(s)) = value {
        return s.clone();
    }
    let mut first = None;
    for entry in items(value) {
        if entry.get("lang").and_then(Value::as_str) == Some("zh_CN") {
            return text(entry.get("text"));
        }
        first.get_or_insert(entry);
    }
    first.map(|e| text(e.get("text"))).unwrap_or_default()
}

/// `hidden`: 1, `"1"` or `true`.
fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(other) => matches!(integer(Some(other)), Ok(Some(n)) if n != 0),
        None => false,
    }
}

/// A tolerant status or type code.
fn code(value: Option<&Value>) -> Option<u32> {
    integer(value)
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
}

/// An integer given as a JSON number or a decimal string; `None` when absent, `null` or `""`.
fn integer(value: Option<&Value>) -> Result<Option<i64>, &'static str> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.is_u64() {
                Err("integer out of range")
            } else {
                Err("not an integer")
            }
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else if s
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-' && s.len() > 1))
            {
                s.parse::<i64>()
                    .map(Some)
                    .map_err(|_| "integer out of range")
            } else {
                Err("not an integer")
            }
        }
        Some(_) => Err("not an integer"),
    }
}

/// A unix-seconds timestamp; `0` counts as "not set".
fn timestamp(value: Option<&Value>) -> Result<Option<Timestamp>, &'static str> {
    match integer(value)? {
        None | Some(0) => Ok(None),
        Some(s) if s < 0 => Err("timestamp before 1970"),
        Some(s) => Timestamp::from_second(s)
            .map(Some)
            .map_err(|_| "timestamp out of range"),
    }
}

/// A timestamp where unreadable means "unknown" (process nodes, comments).
fn lenient_time(value: Option<&Value>, tz: &TimeZone) -> Option<String> {
    let ts = timestamp(value).ok().flatten()?;
    render(ts, tz).ok().map(|(text, _)| text)
}

/// `(RFC 3339, YYYY-MM-DD)` of `ts` in `zone`, offsets rounded to whole minutes (RFC 3339 has no
/// offset seconds; only historic local-mean-time offsets have them).
fn render(ts: Timestamp, zone: &TimeZone) -> Result<(String, String), &'static str> {
    let offset = zone.to_offset(ts);
    let seconds = offset.seconds();
    let offset = if seconds % 60 == 0 {
        offset
    } else {
        Offset::from_seconds(seconds - seconds % 60).map_err(|_| "time zone offset out of range")?
    };
    let zoned = ts.to_zoned(TimeZone::fixed(offset));
    let text = jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%:z", &zoned)
        .map_err(|_| "timestamp cannot be rendered")?;
    Ok((text, zoned.date().to_string()))
}

/// Parses an exact decimal (see the module docs); `Ok(None)` for an empty string.
fn parse_decimal(s: &str) -> Result<Option<Decimal>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let digits_ok = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(whole) || !fraction.is_none_or(digits_ok) {
        return Err("not a plain decimal");
    }
    let fraction = fraction.unwrap_or("");
    let significant = whole.trim_start_matches('0').len() + fraction.len();
    if significant > MAX_DECIMAL_DIGITS || fraction.len() > MAX_DECIMAL_DIGITS {
        return Err("too many digits to represent exactly");
    }
    Decimal::from_str(s)
        .map(Some)
        .map_err(|_| "not representable")
}

/// The zone of a control's `timezone_info`, or `default` (see the module docs).
fn zone(info: Option<&Value>, default: &TimeZone) -> TimeZone {
    let Some(info) = info.filter(|i| i.is_object()) else {
        return default.clone();
    };
    let from_desc = info
        .get("zone_desc")
        .and_then(Value::as_str)
        .and_then(parse_zone_desc);
    let offset = from_desc.or_else(|| {
        let raw = text(info.get("zone_offset"));
        // Hours west of UTC (JS getTimezoneOffset sign): negate.
        parse_hours(raw.trim()).and_then(|secs| secs.checked_neg())
    });
    offset
        .filter(|secs| secs.abs() <= MAX_ZONE_OFFSET_SECS)
        .and_then(|secs| Offset::from_seconds(secs).ok())
        .map(TimeZone::fixed)
        .unwrap_or_else(|| default.clone())
}

/// `"UTC+9"`, `"UTC-3:30"`, `"GMT+05:30"`, `"UTC"` → seconds east of UTC.
fn parse_zone_desc(desc: &str) -> Option<i32> {
    let desc = desc.trim();
    let prefix = desc.get(..3)?;
    if !prefix.eq_ignore_ascii_case("UTC") && !prefix.eq_ignore_ascii_case("GMT") {
        return None;
    }
    let rest = desc.get(3..)?.trim();
    if rest.is_empty() {
        return Some(0);
    }
    if !rest.starts_with(['+', '-']) {
        return None;
    }
    parse_hours(rest)
}

/// `"[+-]H"`, `"[+-]H:MM"`, `"[+-]H.5"` (hours with a fraction that is a whole number of
/// minutes) → seconds, keeping the sign as written.
fn parse_hours(s: &str) -> Option<i32> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let number = |part: &str, max_len: usize| -> Option<i32> {
        if part.is_empty() || part.len() > max_len || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let minutes = if let Some((h, m)) = unsigned.split_once(':') {
        if m.len() != 2 {
            return None;
        }
        let m = number(m, 2).filter(|m| *m < 60)?;
        number(h, 2)? * 60 + m
    } else if let Some((h, f)) = unsigned.split_once('.') {
        let fraction = number(f, 4)?;
        let scale = 10_i32.pow(u32::try_from(f.len()).ok()?);
        let frac_minutes = fraction * 60;
        if frac_minutes % scale != 0 {
            return None;
        }
        number(h, 2)? * 60 + frac_minutes / scale
    } else {
        number(unsigned, 2)? * 60
    };
    let seconds = minutes * 60;
    Some(if negative { -seconds } else { seconds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EXPENSE: &str = include_str!("../../tests/fixtures/wecom/approval_detail_expense.json");
    const LEAVE: &str = include_str!("../../tests/fixtures/wecom/approval_detail_leave.json");

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").expect("tzdb has Asia/Shanghai")
    }

    fn info(fixture: &str) -> Value {
        let response: Value = serde_json::from_str(fixture).expect("fixture is JSON");
        assert_eq!(response["errcode"], 0);
        response["info"].clone()
    }

    fn expense() -> ApprovalInstance {
        normalise(&info(EXPENSE), &shanghai()).expect("expense fixture normalises")
    }

    fn leave() -> ApprovalInstance {
        normalise(&info(LEAVE), &shanghai()).expect("leave fixture normalises")
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("test decimal")
    }

    fn by_id<'a>(instance: &'a ApprovalInstance, id: &str) -> &'a FormControl {
        instance
            .form
            .controls
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("control {id} present"))
    }

    /// A minimal valid `info` with the given controls.
    fn minimal(contents: Value) -> Value {
        json!({
            "sp_no": "202506050099",
            "template_id": "tpl-fake",
            "sp_status": 2,
            "apply_time": 1749021127,
            "applyer": {"userid": "ZhangSan", "partyid": "5"},
            "apply_data": {"contents": contents}
        })
    }

    fn one(control: &str, value: Value) -> Result<ApprovalInstance, NormaliseError> {
        let contents = json!([{
            "control": control, "id": format!("{control}-1"),
            "title": [{"text": "字段", "lang": "zh_CN"}], "value": value, "hidden": 0
        }]);
        normalise(&minimal(contents), &shanghai())
    }

    fn one_value(control: &str, value: Value) -> FormValue {
        let instance = one(control, value).expect("normalises");
        instance
            .form
            .controls
            .into_iter()
            .next()
            .expect("one control")
            .value
    }

    // -- header, process, comments -------------------------------------------------------------

    #[test]
    fn header_is_normalised() {
        let a = expense();
        assert_eq!(a.sp_no, "202506050012");
        assert_eq!(a.sp_name, "费用报销");
        assert_eq!(a.template_id, "C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT");
        assert_eq!((a.status, a.status_name.as_str()), (2, "approved"));
        assert_eq!(
            a.applicant,
            Applicant {
                user_id: "ZhangSan".into(),
                department: Some("5".into()),
                batch: false
            }
        );
        assert_eq!(a.apply_time, "2025-06-04T15:12:07+08:00");
        assert_eq!(a.apply_timestamp, 1_749_021_127);
        assert_eq!(a.notifyers, vec!["WangWu".to_owned()]);
    }

    #[test]
    fn apply_time_follows_the_given_zone() {
        let a = normalise(&info(EXPENSE), &TimeZone::UTC).expect("normalises");
        assert_eq!(a.apply_time, "2025-06-04T07:12:07+00:00");
        // A control without timezone_info follows the caller's zone too …
        let FormValue::Date { at, date, .. } = &by_id(&a, "Date-1748000000007").value else {
            panic!("date");
        };
        assert_eq!(at.as_deref(), Some("2025-05-31T16:00:00+00:00"));
        assert_eq!(date.as_deref(), Some("2025-05-31"));
        // … while one with timezone_info keeps its own.
        let FormValue::Date { at, .. } = &by_id(&a, "Date-1748000000008").value else {
            panic!("date");
        };
        assert_eq!(at.as_deref(), Some("2025-06-02T14:00:00+09:00"));
    }

    #[test]
    fn status_names_cover_every_documented_code() {
        let names: Vec<_> = [1, 2, 3, 4, 5, 6, 7, 8, 10, 99]
            .into_iter()
            .map(status_name)
            .collect();
        assert_eq!(
            names,
            [
                "in_progress",
                "approved",
                "rejected",
                "withdrawn",
                "unknown",
                "revoked",
                "deleted",
                "unknown",
                "paid",
                "unknown"
            ]
        );
    }

    #[test]
    fn process_list_is_preferred_over_sp_record() {
        let a = expense();
        assert_eq!(
            a.approval_nodes.len(),
            3,
            "process_list has the CC node, sp_record does not"
        );
        let n0 = &a.approval_nodes[0];
        assert_eq!(
            (n0.node_type, n0.status, n0.approve_rel),
            (Some(1), Some(2), Some(2))
        );
        assert_eq!(
            n0.approvers,
            vec![Approver {
                user_id: "LiSi".into(),
                status: Some(2),
                speech: "同意，按差旅标准报销".into(),
                time: Some("2025-06-05T02:56:30+08:00".into()),
                media_ids: vec![],
            }]
        );
        let n1 = &a.approval_nodes[1];
        assert_eq!(n1.approve_rel, Some(1));
        let ids: Vec<_> = n1.approvers.iter().map(|p| p.user_id.as_str()).collect();
        assert_eq!(ids, ["ChenCaiWu", "ZhaoKuaiJi"]);
        assert_eq!(
            n1.approvers[0].time.as_deref(),
            Some("2025-06-05T14:56:22+08:00")
        );
        assert_eq!(n1.approvers[1].media_ids, ["WWCISP_fake_stamp_0001"]);
        let cc = &a.approval_nodes[2];
        assert_eq!(cc.node_type, Some(2));
        assert_eq!(cc.approvers[0].user_id, "WangWu");
        assert_eq!(cc.approvers[0].time, None, "sptime 0 means not acted");
    }

    #[test]
    fn sp_record_is_the_fallback_and_its_codes_are_translated() {
        let a = leave();
        assert_eq!((a.status, a.status_name.as_str()), (1, "in_progress"));
        assert_eq!(
            a.apply_time, "2025-06-09T08:01:40+08:00",
            "string apply_time accepted"
        );
        assert_eq!(a.approval_nodes.len(), 2);
        let n0 = &a.approval_nodes[0];
        assert_eq!(
            (n0.node_type, n0.status, n0.approve_rel),
            (Some(1), Some(2), Some(2)),
            "或签 → 2"
        );
        assert_eq!(
            n0.approvers[0].time.as_deref(),
            Some("2025-06-09T08:46:40+08:00")
        );
        assert_eq!(n0.approvers[1].user_id, "ZhouZhuGuan");
        assert_eq!(
            (n0.approvers[1].status, n0.approvers[1].time.as_deref()),
            (Some(1), None)
        );
        assert_eq!(a.approval_nodes[1].approve_rel, Some(1), "会签 → 1");
        assert!(a.comments.is_empty() && a.notifyers.is_empty());

        // An empty process_list also falls back.
        let mut with_empty = info(LEAVE);
        with_empty["process_list"] = json!({"node_list": []});
        let b = normalise(&with_empty, &shanghai()).expect("normalises");
        assert_eq!(b.approval_nodes, a.approval_nodes);
    }

    #[test]
    fn comments_are_read_with_camel_case_author() {
        let a = expense();
        assert_eq!(
            a.comments,
            vec![
                Comment {
                    user_id: "ZhaoKuaiJi".into(),
                    time: Some("2025-06-05T14:10:00+08:00".into()),
                    content: "请补充酒店水单".into(),
                    comment_id: "7512345678901234567".into(),
                    media_ids: vec![],
                },
                Comment {
                    user_id: "ZhangSan".into(),
                    time: Some("2025-06-05T14:20:00+08:00".into()),
                    content: "已补充，见附件".into(),
                    comment_id: "7512345678901234599".into(),
                    media_ids: vec!["WWCISP_fake_comment_media_01".into()],
                },
            ]
        );
    }

    #[test]
    fn batch_applyer_is_accepted() {
        let mut i = minimal(json!([]));
        i.as_object_mut().expect("object").remove("applyer");
        i["batch_applyer"] = json!({"userid": "PiLiang"});
        let a = normalise(&i, &shanghai()).expect("normalises");
        assert_eq!(
            a.applicant,
            Applicant {
                user_id: "PiLiang".into(),
                department: None,
                batch: true
            }
        );
    }

    #[test]
    fn numeric_sp_no_and_string_status_are_accepted() {
        let mut i = minimal(json!([]));
        i["sp_no"] = json!(202506050099_u64);
        i["sp_status"] = json!("10");
        let a = normalise(&i, &shanghai()).expect("normalises");
        assert_eq!(
            (a.sp_no.as_str(), a.status_name.as_str()),
            ("202506050099", "paid")
        );
        assert!(a.form.controls.is_empty() && a.approval_nodes.is_empty());
    }

    // -- form: every control type ---------------------------------------------------------------

    #[test]
    fn form_keeps_order_skips_tips_and_keeps_everything_else() {
        let a = expense();
        let kinds: Vec<_> = a.form.controls.iter().map(|c| c.control.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Text",
                "Textarea",
                "Number",
                "Money",
                "Formula",
                "Date",
                "Date",
                "DateRange",
                "Selector",
                "Selector",
                "Contact",
                "Contact",
                "File",
                "Table",
                "Vacation",
                "Attendance",
                "PunchCorrection",
                "Location",
                "RelatedApproval",
                "BankAccount",
                "PhoneNumber",
                "Text",
                "Fancy",
                "Text",
            ]
        );
        assert!(!a.form.controls.iter().any(|c| c.id.starts_with("Tips")));
    }

    #[test]
    fn text_and_textarea() {
        let a = expense();
        let reason = by_id(&a, "Text-1748000000001");
        assert_eq!(reason.title, "报销事由");
        assert_eq!(
            reason.value,
            FormValue::Text {
                text: "6月上海-北京客户拜访差旅报销".into()
            }
        );
        let remarks = by_id(&a, "Textarea-1748000000002");
        assert_eq!(
            remarks.title, "备注",
            "zh_CN title wins even when listed second"
        );
        assert_eq!(
            remarks.value,
            FormValue::Text {
                text: "含<高铁>&住宿费用\n纸质发票已交财务".into()
            }
        );
        assert!(!remarks.hidden);
    }

    #[test]
    fn hidden_control_is_kept_and_flagged() {
        let a = expense();
        let cc = by_id(&a, "Text-1748000000026");
        assert!(cc.hidden);
        assert_eq!(
            cc.value,
            FormValue::Text {
                text: "CC-SH-0421".into()
            }
        );
    }

    #[test]
    fn number_money_and_formula_are_exact() {
        let a = expense();
        assert_eq!(
            by_id(&a, "Number-1748000000004").value,
            FormValue::Number {
                value: Some(dec("7"))
            }
        );
        let FormValue::Money {
            amount: Some(total),
        } = by_id(&a, "Money-1748000000005").value
        else {
            panic!("money");
        };
        assert_eq!(total.to_string(), "100001280.79");
        let FormValue::Formula { value, raw } = &by_id(&a, "Formula-1748000000006").value else {
            panic!("formula");
        };
        assert_eq!((value, raw.as_str()), (&Some(total), "100001280.79"));
    }

    #[test]
    fn table_rows_sum_exactly_to_the_cent() {
        let a = expense();
        let FormValue::Table { rows } = &by_id(&a, "Table-1748000000018").value else {
            panic!("table");
        };
        assert_eq!(rows.len(), 4);
        let mut amounts = Vec::new();
        for row in rows {
            let kinds: Vec<_> = row.iter().map(|c| c.control.as_str()).collect();
            assert_eq!(kinds, ["Selector", "Money", "Text", "Date"]);
            let FormValue::Money {
                amount: Some(amount),
            } = row[1].value
            else {
                panic!("money cell");
            };
            amounts.push(amount);
        }
        let rendered: Vec<_> = amounts.iter().map(Decimal::to_string).collect();
        assert_eq!(
            rendered,
            ["1280.50", "0.10", "99999999.99", "0.20"],
            "scale kept"
        );
        let sum: Decimal = amounts.iter().sum();
        assert_eq!(sum, dec("100001280.79"));
        assert_eq!(sum.to_string(), "100001280.79");
        let FormValue::Money {
            amount: Some(total),
        } = by_id(&a, "Money-1748000000005").value
        else {
            panic!("money");
        };
        assert_eq!(sum, total, "table lines add up to the claimed total");
        assert_eq!(
            amounts[1] + amounts[3],
            dec("0.30"),
            "0.1 + 0.2 is exactly 0.3"
        );

        let first = &rows[0];
        assert_eq!(first[0].title, "费用类型");
        assert_eq!(
            first[0].value,
            FormValue::Selector {
                multi: false,
                options: vec![SelectorOption {
                    key: "option-1748000000001".into(),
                    text: "交通费".into()
                }],
            }
        );
        assert_eq!(
            first[2].value,
            FormValue::Text {
                text: "上海虹桥-北京南 高铁往返".into()
            }
        );
        assert_eq!(
            first[3].value,
            FormValue::Date {
                kind: "day".into(),
                at: Some("2025-05-28T00:00:00+08:00".into()),
                date: Some("2025-05-28".into()),
                timestamp: Some(1_748_361_600),
            }
        );
    }

    #[test]
    fn decimal_arithmetic_from_strings_is_exact() {
        assert_eq!(
            parse_decimal("0.1")
                .ok()
                .flatten()
                .zip(parse_decimal("0.2").ok().flatten())
                .map(|(a, b)| a + b),
            Some(dec("0.3"))
        );
        assert_ne!(0.1_f64 + 0.2_f64, 0.3_f64, "what floats would have done");
    }

    #[test]
    fn dates_in_shanghai_and_in_their_own_zone() {
        let a = expense();
        assert_eq!(
            by_id(&a, "Date-1748000000007").value,
            FormValue::Date {
                kind: "day".into(),
                at: Some("2025-06-01T00:00:00+08:00".into()),
                date: Some("2025-06-01".into()),
                timestamp: Some(1_748_707_200),
            }
        );
        assert_eq!(
            by_id(&a, "Date-1748000000008").value,
            FormValue::Date {
                kind: "hour".into(),
                at: Some("2025-06-02T14:00:00+09:00".into()),
                date: Some("2025-06-02".into()),
                timestamp: Some(1_748_840_400),
            }
        );
    }

    #[test]
    fn date_range() {
        assert_eq!(
            by_id(&expense(), "DateRange-1748000000009").value,
            FormValue::DateRange {
                kind: "halfday".into(),
                begin: Some("2025-05-28T00:00:00+08:00".into()),
                end: Some("2025-05-30T12:00:00+08:00".into()),
                begin_timestamp: Some(1_748_361_600),
                end_timestamp: Some(1_748_577_600),
                duration_secs: Some(216_000),
            }
        );
    }

    #[test]
    fn selectors_single_and_multi() {
        let a = expense();
        assert_eq!(
            by_id(&a, "Selector-1748000000010").value,
            FormValue::Selector {
                multi: false,
                options: vec![SelectorOption {
                    key: "option-1748000000011".into(),
                    text: "差旅费".into()
                }],
            }
        );
        assert_eq!(
            by_id(&a, "Selector-1748000000012").value,
            FormValue::Selector {
                multi: true,
                options: vec![
                    SelectorOption {
                        key: "option-1748000000013".into(),
                        text: "客户拜访".into()
                    },
                    SelectorOption {
                        key: "option-1748000000014".into(),
                        text: "含跨境费用".into()
                    },
                ],
            }
        );
    }

    #[test]
    fn contacts_members_and_departments() {
        let a = expense();
        assert_eq!(
            by_id(&a, "Contact-1748000000015").value,
            FormValue::Contact {
                users: vec![
                    ContactUser {
                        user_id: "WuJunJie".into(),
                        name: "吴俊杰".into()
                    },
                    ContactUser {
                        user_id: "LiuYang".into(),
                        name: "刘洋".into()
                    },
                ],
                departments: vec![],
            }
        );
        assert_eq!(
            by_id(&a, "Contact-1748000000016").value,
            FormValue::Contact {
                users: vec![],
                departments: vec![ContactDept {
                    id: "5".into(),
                    name: "华东销售部".into()
                }],
            }
        );
    }

    #[test]
    fn files() {
        assert_eq!(
            by_id(&expense(), "File-1748000000017").value,
            FormValue::File {
                file_ids: vec![
                    "WWCISP_fake_invoice_0001".into(),
                    "WWCISP_fake_invoice_0002".into()
                ]
            }
        );
    }

    #[test]
    fn vacation_in_expense_and_leave() {
        assert_eq!(
            by_id(&expense(), "Vacation-1748000000019").value,
            FormValue::Vacation {
                type_key: "1".into(),
                type_name: "年假".into(),
                range_kind: "hour".into(),
                begin: Some("2025-06-09T08:00:00+08:00".into()),
                end: Some("2025-06-09T16:00:00+08:00".into()),
                begin_timestamp: Some(1_749_427_200),
                end_timestamp: Some(1_749_456_000),
                duration_secs: Some(28_800),
                day_items: vec![DayItem {
                    date: Some("2025-06-09".into()),
                    at: Some("2025-06-09T00:00:00+08:00".into()),
                    duration_secs: Some(28_800),
                }],
                slice_duration_secs: Some(28_800),
            }
        );
        let l = leave();
        let vacation = by_id(&l, "vacation-1563793073898");
        assert_eq!(vacation.title, "请假类型");
        let FormValue::Vacation {
            type_key,
            type_name,
            begin,
            end,
            duration_secs,
            day_items,
            slice_duration_secs,
            ..
        } = &vacation.value
        else {
            panic!("vacation");
        };
        assert_eq!((type_key.as_str(), type_name.as_str()), ("3", "病假"));
        assert_eq!(begin.as_deref(), Some("2025-06-10T09:00:00+08:00"));
        assert_eq!(end.as_deref(), Some("2025-06-11T18:00:00+08:00"));
        assert_eq!(
            (*duration_secs, *slice_duration_secs),
            (Some(118_800), Some(61_200))
        );
        let days: Vec<_> = day_items
            .iter()
            .map(|d| (d.date.as_deref(), d.duration_secs))
            .collect();
        assert_eq!(
            days,
            [
                (Some("2025-06-10"), Some(28_800)),
                (Some("2025-06-11"), Some(32_400))
            ]
        );
    }

    #[test]
    fn attendance_in_expense_and_leave() {
        let a = expense();
        let FormValue::Attendance {
            kind,
            range_kind,
            begin,
            end,
            duration_secs,
            day_items,
            slice_duration_secs,
            ..
        } = &by_id(&a, "Attendance-1748000000020").value
        else {
            panic!("attendance");
        };
        assert_eq!((*kind, range_kind.as_str()), (Some(3), "halfday"));
        assert_eq!(begin.as_deref(), Some("2025-05-28T00:00:00+08:00"));
        assert_eq!(end.as_deref(), Some("2025-05-30T12:00:00+08:00"));
        assert_eq!(
            (*duration_secs, *slice_duration_secs),
            (Some(216_000), Some(216_000))
        );
        let total: i64 = day_items.iter().filter_map(|d| d.duration_secs).sum();
        assert_eq!(total, 216_000);
        assert_eq!(
            day_items[2].at.as_deref(),
            Some("2025-05-30T00:00:00+08:00")
        );

        // Outing without slice_info (older forms).
        assert_eq!(
            by_id(&leave(), "Attendance-1749000000001").value,
            FormValue::Attendance {
                kind: Some(4),
                range_kind: "hour".into(),
                begin: Some("2025-06-11T14:00:00+08:00".into()),
                end: Some("2025-06-11T16:00:00+08:00".into()),
                begin_timestamp: Some(1_749_621_600),
                end_timestamp: Some(1_749_628_800),
                duration_secs: Some(7_200),
                day_items: vec![],
                slice_duration_secs: None,
            }
        );
    }

    #[test]
    fn punch_correction_location_related_approval() {
        let a = expense();
        assert_eq!(
            by_id(&a, "PunchCorrection-1748000000021").value,
            FormValue::PunchCorrection {
                state: "上班-未打卡".into(),
                time: Some("2025-06-03T09:00:00+08:00".into()),
                day: Some("2025-06-03".into()),
            }
        );
        assert_eq!(
            by_id(&a, "Location-1748000000022").value,
            FormValue::Location {
                latitude: "31.194260".into(),
                longitude: "121.320500".into(),
                title: "上海虹桥站".into(),
                address: "上海市闵行区申贵路1500号".into(),
                time: Some("2025-05-27T07:45:00+08:00".into()),
            }
        );
        assert_eq!(
            by_id(&a, "RelatedApproval-1748000000023").value,
            FormValue::RelatedApproval {
                items: vec![RelatedApprovalItem {
                    sp_no: "202505200007".into(),
                    template_name: "出差申请".into(),
                    status: Some(2),
                    name: "张三".into(),
                    create_time: Some("2025-05-20T10:03:11+08:00".into()),
                }]
            }
        );
    }

    #[test]
    fn bank_account() {
        assert_eq!(
            by_id(&expense(), "BankAccount-1748000000024").value,
            FormValue::BankAccount {
                account_type: Some(2),
                account_name: "张三".into(),
                account_number: "6222000000000000001".into(),
                bank_name: "工商银行".into(),
                bank_code: "1000009547".into(),
                branch_name: "中国工商银行股份有限公司上海市示例支行".into(),
                branch_id: "102290000121".into(),
                province: "上海市".into(),
                city: "上海市".into(),
                remark: "工资卡".into(),
            }
        );
    }

    #[test]
    fn phone_number_and_unknown_controls_keep_their_raw_value() {
        let a = expense();
        let source = info(EXPENSE);
        let raw_of = |id: &str| {
            source["apply_data"]["contents"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["id"] == id))
                .map(|c| c["value"].clone())
                .expect("in fixture")
        };
        let FormValue::PhoneNumber { raw } = &by_id(&a, "PhoneNumber-1748000000025").value else {
            panic!("phone");
        };
        assert_eq!(raw, &raw_of("PhoneNumber-1748000000025"));
        assert_eq!(raw["phone_number"]["number"], "13800000000");
        let fancy = by_id(&a, "Fancy-1748000000027");
        assert_eq!(fancy.title, "满意度");
        assert_eq!(
            fancy.value,
            FormValue::Unknown {
                control: "Fancy".into(),
                raw: raw_of("Fancy-1748000000027")
            }
        );
        // A contents item that is not even an object is kept too.
        let a = normalise(&minimal(json!(["junk", {"control": "Tips"}])), &shanghai())
            .expect("normalises");
        assert_eq!(
            a.form.controls[0].value,
            FormValue::Unknown {
                control: String::new(),
                raw: json!("junk")
            }
        );
        assert_eq!(a.form.controls.len(), 1);
    }

    // -- tolerance ------------------------------------------------------------------------------

    #[test]
    fn empty_and_absent_values_are_none_not_errors() {
        assert_eq!(
            one_value("Money", json!({"new_money": ""})),
            FormValue::Money { amount: None }
        );
        assert_eq!(
            one_value("Money", json!({})),
            FormValue::Money { amount: None }
        );
        assert_eq!(
            one_value("Number", json!(null)),
            FormValue::Number { value: None }
        );
        assert_eq!(
            one_value("Text", json!({"members": []})),
            FormValue::Text {
                text: String::new()
            }
        );
        assert_eq!(
            one_value("Date", json!({"date": {"type": "day", "s_timestamp": ""}})),
            FormValue::Date {
                kind: "day".into(),
                at: None,
                date: None,
                timestamp: None
            }
        );
        assert_eq!(
            one_value("Selector", json!({"selector": {"type": "multi"}})),
            FormValue::Selector {
                multi: true,
                options: vec![]
            }
        );
        assert_eq!(
            one_value("Table", json!({"children": [{"list": []}, {}]})),
            FormValue::Table {
                rows: vec![vec![], vec![]]
            }
        );
        assert_eq!(
            one_value("Formula", json!({"formula": {"value": "#DIV/0"}})),
            FormValue::Formula {
                value: None,
                raw: "#DIV/0".into()
            }
        );
    }

    #[test]
    fn timestamps_and_numbers_accept_both_encodings() {
        let date = |ts: Value| match one_value(
            "Date",
            json!({"date": {"type": "hour", "s_timestamp": ts}}),
        ) {
            FormValue::Date { at, .. } => at,
            other => panic!("{other:?}"),
        };
        assert_eq!(date(json!("1749021127")), date(json!(1749021127)));
        assert_eq!(
            date(json!(1749021127)).as_deref(),
            Some("2025-06-04T15:12:07+08:00")
        );
        let range = one_value(
            "DateRange",
            json!({"date_range": {"type": "hour", "new_begin": "1749021127", "new_end": 1749024727, "new_duration": "3600"}}),
        );
        let FormValue::DateRange {
            begin,
            end,
            duration_secs,
            ..
        } = range
        else {
            panic!("range");
        };
        assert_eq!(begin.as_deref(), Some("2025-06-04T15:12:07+08:00"));
        assert_eq!(end.as_deref(), Some("2025-06-04T16:12:07+08:00"));
        assert_eq!(duration_secs, Some(3600));
        // The doc's JSON example leaves out the `date` wrapper.
        let FormValue::Date { timestamp, .. } =
            one_value("Date", json!({"type": "day", "s_timestamp": "1748707200"}))
        else {
            panic!("date");
        };
        assert_eq!(timestamp, Some(1_748_707_200));
        // Money as a JSON number (not what WeCom sends, but exact for what it says).
        assert_eq!(
            one_value("Money", json!({"new_money": 12.5})),
            FormValue::Money {
                amount: Some(dec("12.5"))
            }
        );
    }

    #[test]
    fn decimal_syntax() {
        let ok = |s: &str| parse_decimal(s).map(|d| d.map(|d| d.to_string()));
        assert_eq!(ok(" 12.50 "), Ok(Some("12.50".into())));
        assert_eq!(ok("-0.01"), Ok(Some("-0.01".into())));
        assert_eq!(ok("+7"), Ok(Some("7".into())));
        assert_eq!(ok("00012.30"), Ok(Some("12.30".into())));
        assert_eq!(
            ok("9999999999999999999999999999"),
            Ok(Some("9999999999999999999999999999".into()))
        );
        assert_eq!(ok(""), Ok(None));
        for bad in [
            "1_000",
            "1e3",
            "NaN",
            "inf",
            ".5",
            "5.",
            "1,280.50",
            "¥12",
            "--1",
            "1.2.3",
            "0x10",
            "99999999999999999999999999999",
            "0.00000000000000000000000000001",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn zone_desc_is_authoritative_and_zone_offset_is_hours_west() {
        let at = |tzi: Value| match one_value(
            "Date",
            json!({"date": {"type": "hour", "s_timestamp": "1749021127", "timezone_info": tzi}}),
        ) {
            FormValue::Date { at, .. } => at.expect("set"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            at(json!({"zone_offset": "-9", "zone_desc": "UTC+9"})),
            "2025-06-04T16:12:07+09:00"
        );
        assert_eq!(
            at(json!({"zone_offset": "whatever", "zone_desc": "UTC-3:30"})),
            "2025-06-04T03:42:07-03:30"
        );
        assert_eq!(
            at(json!({"zone_desc": "GMT+05:30"})),
            "2025-06-04T12:42:07+05:30"
        );
        assert_eq!(at(json!({"zone_desc": "UTC"})), "2025-06-04T07:12:07+00:00");
        assert_eq!(
            at(json!({"zone_offset": "-9"})),
            "2025-06-04T16:12:07+09:00"
        );
        assert_eq!(at(json!({"zone_offset": 3})), "2025-06-04T04:12:07-03:00");
        assert_eq!(
            at(json!({"zone_offset": "-5.5"})),
            "2025-06-04T12:42:07+05:30"
        );
        assert_eq!(
            at(json!({"zone_offset": "8", "zone_desc": "nonsense"})),
            "2025-06-03T23:12:07-08:00"
        );
        // Unusable → the caller's zone.
        for bad in [
            json!({}),
            json!({"zone_desc": "UTC+99"}),
            json!({"zone_offset": "x"}),
            json!("UTC+9"),
            json!({"zone_desc": "UTC+9:7"}),
        ] {
            assert_eq!(at(bad), "2025-06-04T15:12:07+08:00");
        }
        assert_eq!(parse_zone_desc("utc+8"), Some(8 * 3600));
        assert_eq!(parse_zone_desc("UTC 9"), None);
        assert_eq!(parse_zone_desc("CST"), None);
    }

    // -- errors ---------------------------------------------------------------------------------

    #[test]
    fn missing_header_fields_are_errors() {
        assert_eq!(
            normalise(&json!([]), &shanghai()),
            Err(NormaliseError::NotAnObject)
        );
        for field in ["sp_no", "template_id", "sp_status", "apply_time"] {
            let mut i = minimal(json!([]));
            i.as_object_mut().expect("object").remove(field);
            assert_eq!(
                normalise(&i, &shanghai()),
                Err(NormaliseError::MissingField { field }),
                "{field}"
            );
            i[field] = json!("");
            assert_eq!(
                normalise(&i, &shanghai()),
                Err(NormaliseError::MissingField { field }),
                "{field} empty"
            );
        }
        let mut i = minimal(json!([]));
        i["apply_time"] = json!(0);
        assert_eq!(
            normalise(&i, &shanghai()),
            Err(NormaliseError::MissingField {
                field: "apply_time"
            }),
            "0 is WeCom's 'not set'"
        );
        let mut i = minimal(json!([]));
        i["applyer"] = json!({"userid": "", "partyid": "5"});
        assert_eq!(
            normalise(&i, &shanghai()),
            Err(NormaliseError::MissingField { field: "applyer" })
        );
        i.as_object_mut().expect("object").remove("applyer");
        assert_eq!(
            normalise(&i, &shanghai()),
            Err(NormaliseError::MissingField { field: "applyer" })
        );
    }

    #[test]
    fn invalid_header_fields_are_errors() {
        let cases = [
            ("sp_status", json!("approved"), "not an integer"),
            ("sp_status", json!(-1), "out of range"),
            ("apply_time", json!("yesterday"), "not an integer"),
            ("apply_time", json!(-5), "timestamp before 1970"),
            (
                "apply_time",
                json!(99_999_999_999_999_i64),
                "timestamp out of range",
            ),
            ("apply_time", json!(1.5), "not an integer"),
            ("sp_no", json!({"no": 1}), "not a string"),
        ];
        for (field, value, reason) in cases {
            let mut i = minimal(json!([]));
            i[field] = value;
            assert_eq!(
                normalise(&i, &shanghai()),
                Err(NormaliseError::InvalidField { field, reason }),
                "{field}"
            );
        }
    }

    #[test]
    fn invalid_money_names_the_control_but_not_the_data() {
        let mut i = info(EXPENSE);
        // Corrupt the second cost line's amount.
        let table = i["apply_data"]["contents"]
            .as_array_mut()
            .and_then(|c| c.iter_mut().find(|c| c["id"] == "Table-1748000000018"))
            .expect("table in fixture");
        table["value"]["children"][1]["list"][1]["value"]["new_money"] =
            json!("0,10 SECRET-ACCT-4242");
        let err = normalise(&i, &shanghai()).expect_err("invalid money");
        assert_eq!(
            err,
            NormaliseError::InvalidControl {
                control_id: "Money-1748000000101".into(),
                field: "new_money",
                reason: "not a plain decimal"
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("Money-1748000000101") && message.contains("new_money"),
            "{message}"
        );
        assert!(
            !message.contains("SECRET") && !message.contains("0,10"),
            "{message}"
        );
        assert!(
            !message.contains("ZhangSan") && !message.contains("202506050012"),
            "{message}"
        );
    }

    #[test]
    fn other_invalid_control_values_are_errors() {
        let cases = [
            (
                "Number",
                json!({"new_number": "seven"}),
                "new_number",
                "not a plain decimal",
            ),
            (
                "Number",
                json!({"new_number": [7]}),
                "new_number",
                "not a decimal string",
            ),
            (
                "Money",
                json!({"new_money": "1e3"}),
                "new_money",
                "not a plain decimal",
            ),
            (
                "Date",
                json!({"date": {"s_timestamp": "soon"}}),
                "s_timestamp",
                "not an integer",
            ),
            (
                "DateRange",
                json!({"date_range": {"new_begin": 1, "new_end": -1}}),
                "new_end",
                "timestamp before 1970",
            ),
            (
                "DateRange",
                json!({"date_range": {"new_duration": 1.5}}),
                "new_duration",
                "not an integer",
            ),
            (
                "Attendance",
                json!({"attendance": {"slice_info": {"day_items": [{"daytime": "x"}]}}}),
                "daytime",
                "not an integer",
            ),
            (
                "Location",
                json!({"location": {"time": "noon"}}),
                "time",
                "not an integer",
            ),
        ];
        for (control, value, field, reason) in cases {
            assert_eq!(
                one(control, value),
                Err(NormaliseError::InvalidControl {
                    control_id: format!("{control}-1"),
                    field,
                    reason
                }),
                "{control}"
            );
        }
    }

    #[test]
    fn long_control_ids_are_truncated_in_errors() {
        let id = "X".repeat(500);
        let contents = json!([{"control": "Money", "id": id, "value": {"new_money": "bad"}}]);
        let Err(NormaliseError::InvalidControl { control_id, .. }) =
            normalise(&minimal(contents), &shanghai())
        else {
            panic!("error expected");
        };
        assert_eq!(control_id.len(), MAX_ID_IN_ERROR);
    }

    #[test]
    fn nested_tables_are_bounded() {
        let mut value = json!({"children": [{"list": [{"control": "Money", "id": "m", "value": {"new_money": "1.00"}}]}]});
        for _ in 0..MAX_TABLE_DEPTH - 1 {
            value =
                json!({"children": [{"list": [{"control": "Table", "id": "t", "value": value}]}]});
        }
        assert!(
            one("Table", value.clone()).is_ok(),
            "{MAX_TABLE_DEPTH} levels are fine"
        );
        let deeper =
            json!({"children": [{"list": [{"control": "Table", "id": "t", "value": value}]}]});
        assert_eq!(
            one("Table", deeper),
            Err(NormaliseError::InvalidControl {
                control_id: "t".into(),
                field: "children",
                reason: "tables nested too deeply"
            })
        );
    }

    #[test]
    fn process_and_comment_oddities_are_tolerated() {
        let mut i = minimal(json!([]));
        i["process_list"] = json!({"node_list": [
            {"node_type": "1", "sub_node_list": [{"userinfo": {"userid": "Nested"}, "sptime": "garbage", "media_ids": [1, "m1", ""]}]},
            "junk"
        ]});
        i["comments"] = json!([{"commenttime": -4, "commentid": 123}, 7]);
        i["notifyer"] = json!([{"userid": "A"}, "B", {"userid": ""}, 5]);
        let a = normalise(&i, &shanghai()).expect("tolerated");
        assert_eq!(a.approval_nodes.len(), 2);
        assert_eq!(a.approval_nodes[0].node_type, Some(1));
        let p = &a.approval_nodes[0].approvers[0];
        assert_eq!(
            (
                p.user_id.as_str(),
                p.time.as_deref(),
                p.media_ids.as_slice()
            ),
            ("Nested", None, &["m1".to_owned()][..])
        );
        assert_eq!(a.approval_nodes[1].approvers, vec![]);
        assert_eq!(
            (
                a.comments[0].comment_id.as_str(),
                a.comments[0].time.as_deref()
            ),
            ("123", None)
        );
        assert_eq!(a.comments[1].user_id, "");
        assert_eq!(a.notifyers, ["A", "B"]);
    }

    #[test]
    fn never_panics_on_mutated_fixtures() {
        // Replace every node of both fixtures, one at a time, with junk of each JSON kind.
        let junk = [
            json!(null),
            json!("x"),
            json!(-1),
            json!(1.5),
            json!([{}]),
            json!({"": []}),
        ];
        let tz = shanghai();
        for fixture in [EXPENSE, LEAVE] {
            let mut doc = info(fixture);
            let mut paths = Vec::new();
            collect_paths(&doc, &mut Vec::new(), &mut paths);
            for path in &paths {
                // to_document is total but slow in debug builds: check it once per path.
                let mut documented = false;
                for j in &junk {
                    let Some(slot) = pointer_mut(&mut doc, path) else {
                        continue;
                    };
                    let original = std::mem::replace(slot, j.clone());
                    if let Ok(a) = normalise(&doc, &tz)
                        && !documented
                    {
                        documented = a.to_document().is_object();
                    }
                    if let Some(slot) = pointer_mut(&mut doc, path) {
                        *slot = original;
                    }
                }
            }
        }
    }

    fn collect_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(prefix.clone());
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    prefix.push(k.clone());
                    collect_paths(v, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    prefix.push(i.to_string());
                    collect_paths(v, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }

    fn pointer_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
        path.iter().try_fold(value, |v, key| match v {
            Value::Object(map) => map.get_mut(key),
            Value::Array(list) => key.parse::<usize>().ok().and_then(|i| list.get_mut(i)),
            _ => None,
        })
    }

    // -- document -------------------------------------------------------------------------------

    #[test]
    fn document_is_keyed_by_title_and_id() {
        let doc = expense().to_document();
        assert_eq!(doc["sp_no"], "202506050012");
        assert_eq!(doc["status_name"], "approved");
        assert_eq!(doc["applicant"]["user_id"], "ZhangSan");
        assert_eq!(
            doc["form_by_title"]["报销总额"],
            json!({"type": "money", "amount": "100001280.79"})
        );
        assert_eq!(
            doc["form_by_id"]["Money-1748000000005"],
            doc["form_by_title"]["报销总额"]
        );
        assert_eq!(
            doc["form_by_title"]["票据张数"],
            json!({"type": "number", "value": "7"})
        );
        assert_eq!(
            doc["form_by_title"]["合计（自动计算）"]["value"],
            "100001280.79"
        );
        assert_eq!(
            doc["form_by_title"]["费用类别"]["options"][0]["key"],
            "option-1748000000011"
        );
        assert_eq!(doc["form_by_title"]["成本中心"]["text"], "CC-SH-0421");
        assert_eq!(doc["form_by_title"]["满意度"]["type"], "unknown");
        assert_eq!(doc["form_by_title"]["满意度"]["raw"]["fancy"]["rating"], 5);
        assert!(
            doc["form_by_title"].get("报销须知").is_none(),
            "Tips are not in the document"
        );

        // Duplicate titles: the first wins in the map; both stay in the list.
        assert_eq!(
            doc["form_by_title"]["备注"]["text"],
            "含<高铁>&住宿费用\n纸质发票已交财务"
        );
        assert_eq!(
            doc["form_by_id"]["Text-1748000000028"]["text"],
            "第二个同名控件"
        );
        let titled: Vec<_> = doc["form"]["controls"]
            .as_array()
            .expect("controls")
            .iter()
            .filter(|c| c["title"] == "备注")
            .map(|c| c["id"].clone())
            .collect();
        assert_eq!(
            titled,
            [json!("Textarea-1748000000002"), json!("Text-1748000000028")]
        );
        assert_eq!(doc["form"]["controls"].as_array().map(Vec::len), Some(24));
        assert_eq!(doc["form_by_id"].as_object().map(|m| m.len()), Some(24));

        // Tables: rows plus per-row keyed maps.
        let table = &doc["form_by_title"]["费用明细"];
        assert_eq!(table["type"], "table");
        let amounts: Vec<_> = table["rows_by_title"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["金额"]["amount"].clone())
            .collect();
        assert_eq!(
            amounts,
            [
                json!("1280.50"),
                json!("0.10"),
                json!("99999999.99"),
                json!("0.20")
            ]
        );
        assert_eq!(
            table["rows_by_id"][0]["Selector-1748000000100"]["options"][0]["text"],
            "交通费"
        );
        assert_eq!(
            table["rows"][3][3]["value"]["at"],
            "2025-05-30T00:00:00+08:00"
        );
    }

    #[test]
    fn document_has_no_floats() {
        fn check(value: &Value, path: &str) {
            match value {
                Value::Number(n) => assert!(n.is_i64() || n.is_u64(), "float at {path}"),
                Value::Array(list) => list
                    .iter()
                    .enumerate()
                    .for_each(|(i, v)| check(v, &format!("{path}/{i}"))),
                Value::Object(map) => map
                    .iter()
                    .for_each(|(k, v)| check(v, &format!("{path}/{k}"))),
                _ => {}
            }
        }
        check(&expense().to_document(), "");
        check(&leave().to_document(), "");
    }

    #[test]
    fn instance_round_trips_through_serde() {
        for a in [expense(), leave()] {
            let text = serde_json::to_string(&a).expect("serialises");
            assert!(text.contains(r#""amount":"1280.50""#) || a.sp_no != "202506050012");
            let back: ApprovalInstance = serde_json::from_str(&text).expect("deserialises");
            assert_eq!(back, a);
        }
    }
}
