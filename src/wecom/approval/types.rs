//! The normalised approval instance and its parts, as mappings see them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
        /// The period, its fields inline (`range_kind`, `begin`, …).
        #[serde(flatten)]
        period: AttendancePeriod,
    },
    /// `Attendance` (leave, punch correction, business trip, outing, overtime).
    Attendance {
        /// 1 leave, 2 punch correction, 3 business trip, 4 outing, 5 overtime.
        kind: Option<u32>,
        /// The period, its fields inline (`range_kind`, `begin`, …).
        #[serde(flatten)]
        period: AttendancePeriod,
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

/// The period of a `Vacation` or `Attendance` control (its `attendance` object): the date
/// range and its split into days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendancePeriod {
    /// Precision of the range: `halfday`, `hour` or `day`.
    pub range_kind: String,
    /// Start, RFC 3339.
    pub begin: Option<String>,
    /// End, RFC 3339.
    pub end: Option<String>,
    /// Start, unix seconds.
    pub begin_timestamp: Option<i64>,
    /// End, unix seconds.
    pub end_timestamp: Option<i64>,
    /// Range duration (`new_duration`), seconds.
    pub duration_secs: Option<i64>,
    /// Per-day split (`slice_info.day_items`).
    pub day_items: Vec<DayItem>,
    /// Total from `slice_info.duration`, seconds.
    pub slice_duration_secs: Option<i64>,
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
