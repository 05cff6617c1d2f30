//! Decrypted WeCom (企业微信) callback XML → typed [`InboundEvent`].
//!
//! This module owns exactly one step of the callback pipeline: turning the
//! *already verified and decrypted* plaintext XML into typed events. It does no
//! cryptography, no signature checks and no I/O.
//!
//! Parsing rules (see PROTOCOL.md §3.0 and §6 item 8):
//!
//! * The prolog (everything before the root element) is scanned byte by byte.
//!   Any markup declaration in it (`<!DOCTYPE`, `<!ENTITY`, `<!ELEMENT`, …, in
//!   any letter case) is refused with [`EventParseError::Doctype`]. A DOCTYPE
//!   that shows up anywhere later (inside or after the root) is refused the same
//!   way by the XML reader, so no DTD is ever processed and no custom entity is
//!   ever expanded; only the five predefined entities and character references
//!   are resolved.
//! * The root element must be `<xml>`; exactly one root is allowed.
//! * CDATA and plain text are equivalent and may be mixed inside one element.
//! * Repeated elements (`SpRecord`, `Details`, `Notifyer`, `Comments`,
//!   `NodeList`, `SubNodeList`, `ApprovalNode`, `Item`, `NotifyNode`, `Attach`,
//!   `MediaIds`) are always `Vec`s, also when they occur once or
//!   non-consecutively.
//! * Unknown elements and attributes are ignored.
//! * Identifier-like values (user ids, numbers, codes, URLs) are trimmed and a
//!   blank value counts as absent; free text (names, speeches, comments,
//!   addresses, `State`) is kept exactly as sent (an empty element gives
//!   `Some("")`).
//! * Numbers may be surrounded by whitespace; an empty numeric element counts as
//!   absent. A non-empty value that is not a valid integer is an error.
//! * A known scalar element that occurs twice in the same parent is an error
//!   (the payload would be ambiguous).
//! * Error messages describe what is wrong and where (byte offsets, element
//!   paths) but never echo payload content.
//!
//! Implementation: one serde pass of `quick-xml` into private borrowed "raw"
//! structs whose fields are all optional, then a conversion into the public
//! typed events that checks the essential fields of each known event.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::str::FromStr;

use quick_xml::DeError;
use quick_xml::de::{Deserializer as XmlDeserializer, EntityResolver};
use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::events::BytesText;
use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// Why a decrypted callback could not be turned into an [`InboundEvent`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventParseError {
    /// The document contains a DTD (`<!DOCTYPE …>`) or another markup
    /// declaration such as `<!ENTITY …>`. Such documents are refused and never
    /// expanded (XXE / "billion laughs" protection).
    #[error("callback XML contains a DOCTYPE/ENTITY declaration, refused")]
    Doctype,
    /// The document is not well-formed XML, its root is not `<xml>`, or a known
    /// event lacks an essential field. The message describes the problem
    /// without echoing payload content.
    #[error("malformed callback XML: {0}")]
    Malformed(String),
}

/// Parse the decrypted callback XML.
///
/// Rules: a DOCTYPE (or ENTITY declaration) anywhere in the prolog is refused
/// with [`EventParseError::Doctype`] and never expanded; CDATA and bare text
/// are equivalent; repeated elements (SpRecord, Details, Notifyer, Comments,
/// NodeList, SubNodeList, Item, ApprovalNode, NotifyNode, Attach, …) are `Vec`
/// even when they occur once or non-consecutively; unknown elements are
/// ignored; numbers may be surrounded by whitespace; missing optional fields
/// are `None`/empty. Malformed XML, a wrong root, or a known event whose
/// essential field is missing (e.g. `sys_approval_change` without `SpNoStr`
/// and `SpNo`) → [`EventParseError::Malformed`] with a description of what is
/// wrong that does not echo the payload.
///
/// Every event needs the common header `ToUserName`, `FromUserName`,
/// `CreateTime` and `MsgType`. Essential fields per event:
///
/// * `sys_approval_change`: `ApprovalInfo` with `SpNoStr` or `SpNo`, `SpStatus`;
/// * `open_approval_change`: `ApprovalInfo` with `ThirdNo`, `OpenSpStatus`;
/// * `change_contact`: `ChangeType`, plus `UserID` for `*_user`, `Id` for
///   `*_party` and `TagId` for `update_tag`;
/// * `change_external_contact`: `ChangeType`, `UserID`, `ExternalUserID`.
pub fn parse_event(xml: &str) -> Result<InboundEvent, EventParseError> {
    check_prolog(xml.as_bytes())?;
    let raw = deserialize_raw(xml)?;
    build_event(raw)
}

/// A decrypted WeCom callback, classified by its `Event` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum InboundEvent {
    /// `Event = sys_approval_change`: status change of a form in the built-in 审批 app.
    ApprovalChange(ApprovalChange),
    /// `Event = open_approval_change`: status change in the approval-flow engine of our own app.
    OpenApprovalChange(OpenApprovalChange),
    /// `Event = change_contact`: directory (member / department / tag) change.
    ContactChange(ContactChange),
    /// `Event = change_external_contact`: customer (external contact) change.
    ExternalContactChange(ExternalContactChange),
    /// Anything else: user messages, `batch_job_result`, `subscribe`, menu events, …
    Other(OtherEvent),
}

impl InboundEvent {
    /// The kind of this event, without its payload.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::ApprovalChange(_) => EventKind::ApprovalChange,
            Self::OpenApprovalChange(_) => EventKind::OpenApprovalChange,
            Self::ContactChange(_) => EventKind::ContactChange,
            Self::ExternalContactChange(_) => EventKind::ExternalContactChange,
            Self::Other(_) => EventKind::Other,
        }
    }

    /// The common header fields shared by every callback.
    pub fn header(&self) -> &EventHeader {
        match self {
            Self::ApprovalChange(e) => &e.header,
            Self::OpenApprovalChange(e) => &e.header,
            Self::ContactChange(e) => &e.header,
            Self::ExternalContactChange(e) => &e.header,
            Self::Other(e) => &e.header,
        }
    }

    /// Business key: approval → `"{sp_no}:{sp_status}"` (SpNoStr preferred over
    /// SpNo); open approval → `"{third_no}:{open_sp_status}"`; contact →
    /// `"{change_type}:{UserID|Id|TagId}"` (first present, empty if none);
    /// external contact → `"{change_type}:{user_id}:{external_user_id}"`;
    /// other → `MsgId` if present, else `"{event or msg_type}:{create_time}"`.
    pub fn business_key(&self) -> String {
        match self {
            Self::ApprovalChange(e) => format!("{}:{}", e.sp_no, e.sp_status),
            Self::OpenApprovalChange(e) => format!("{}:{}", e.third_no, e.open_sp_status),
            Self::ContactChange(e) => {
                let subject = e
                    .user_id
                    .as_deref()
                    .or(e.id.as_deref())
                    .or(e.tag_id.as_deref())
                    .unwrap_or("");
                format!("{}:{}", e.change_type, subject)
            }
            Self::ExternalContactChange(e) => {
                format!("{}:{}:{}", e.change_type, e.user_id, e.external_user_id)
            }
            Self::Other(e) => match &e.msg_id {
                Some(id) => id.clone(),
                None => {
                    let h = &e.header;
                    let name = h.event.as_deref().unwrap_or(&h.msg_type);
                    format!("{}:{}", name, h.create_time)
                }
            },
        }
    }
}

/// Payload-free classification of an [`InboundEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// [`InboundEvent::ApprovalChange`], `"approval_change"`.
    ApprovalChange,
    /// [`InboundEvent::OpenApprovalChange`], `"open_approval_change"`.
    OpenApprovalChange,
    /// [`InboundEvent::ContactChange`], `"contact_change"`.
    ContactChange,
    /// [`InboundEvent::ExternalContactChange`], `"external_contact_change"`.
    ExternalContactChange,
    /// [`InboundEvent::Other`], `"other"`.
    Other,
}

impl EventKind {
    /// Stable lowercase name: `"approval_change"`, `"open_approval_change"`,
    /// `"contact_change"`, `"external_contact_change"` or `"other"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApprovalChange => "approval_change",
            Self::OpenApprovalChange => "open_approval_change",
            Self::ContactChange => "contact_change",
            Self::ExternalContactChange => "external_contact_change",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned by [`EventKind::from_str`] for a name that is not one of the
/// strings produced by [`EventKind::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind")]
pub struct UnknownEventKind;

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    /// Inverse of [`EventKind::as_str`] (exact, case-sensitive match).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approval_change" => Ok(Self::ApprovalChange),
            "open_approval_change" => Ok(Self::OpenApprovalChange),
            "contact_change" => Ok(Self::ContactChange),
            "external_contact_change" => Ok(Self::ExternalContactChange),
            "other" => Ok(Self::Other),
            _ => Err(UnknownEventKind),
        }
    }
}

/// Header fields common to every callback (PROTOCOL.md §3.0).
///
/// Identifier-like values (`ToUserName`, `FromUserName`, `MsgType`, `Event`,
/// `AgentID`) are trimmed; an empty `Event`/`AgentID` counts as absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventHeader {
    /// `ToUserName`: the CorpID (or our UserID in a passive reply).
    #[serde(rename = "ToUserName")]
    pub to_user_name: String,
    /// `FromUserName`: `sys` for system events, otherwise a member UserID.
    #[serde(rename = "FromUserName")]
    pub from_user_name: String,
    /// `CreateTime`: unix seconds.
    #[serde(rename = "CreateTime")]
    pub create_time: i64,
    /// `MsgType`: `event` for events, `text`, `image`, … for user messages.
    #[serde(rename = "MsgType")]
    pub msg_type: String,
    /// `Event`: event name; absent for user messages.
    #[serde(rename = "Event")]
    pub event: Option<String>,
    /// `AgentID`: application id, kept as a string; absent for contact events.
    #[serde(rename = "AgentID")]
    pub agent_id: Option<String>,
}

/// `sys_approval_change` (PROTOCOL.md §3.1). The callback carries no form data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalChange {
    /// Common header.
    #[serde(flatten)]
    pub header: EventHeader,
    /// Approval number: `SpNoStr` if present and non-empty, else `SpNo`
    /// (trimmed, kept as a string).
    #[serde(rename = "SpNo")]
    pub sp_no: String,
    /// `SpName`: template name (empty if absent).
    #[serde(rename = "SpName")]
    pub sp_name: String,
    /// `SpStatus`: form status (1 in progress, 2 approved, 3 rejected,
    /// 4 withdrawn, 6 revoked after approval, 7 deleted, 10 paid).
    #[serde(rename = "SpStatus")]
    pub sp_status: u32,
    /// `TemplateId` (empty if absent).
    #[serde(rename = "TemplateId")]
    pub template_id: String,
    /// `ApplyTime`: unix seconds (0 if absent).
    #[serde(rename = "ApplyTime")]
    pub apply_time: i64,
    /// `Applyer/UserId`.
    #[serde(rename = "ApplyerUserId")]
    pub applicant_user_id: Option<String>,
    /// `Applyer/Party`: department id of the applicant.
    #[serde(rename = "ApplyerParty")]
    pub applicant_party: Option<String>,
    /// `StatuChangeEvent` (sic): what just happened (1 submitted, 2 agreed, 3
    /// rejected, 4 transferred, 5 urged, 6 withdrawn, 8 revoked after approval,
    /// 10 comment, 11–15 newer actions).
    #[serde(rename = "StatuChangeEvent")]
    pub status_change_event: Option<u32>,
    /// `SpRecord*`: legacy per-node approval records, in document order.
    #[serde(rename = "SpRecord")]
    pub sp_records: Vec<SpRecord>,
    /// `Notifyer*/UserId` (sic): CC recipients.
    #[serde(rename = "Notifyer")]
    pub notifyers: Vec<String>,
    /// `Comments*`.
    #[serde(rename = "Comments")]
    pub comments: Vec<Comment>,
    /// `ProcessList/NodeList*`: newer flow model.
    #[serde(rename = "NodeList")]
    pub process_nodes: Vec<ProcessNode>,
}

/// One `SpRecord` (approval node of the legacy model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpRecord {
    /// `SpStatus`: node status (1 in progress, 2 agreed, 3 rejected, 4 transferred, …).
    #[serde(rename = "SpStatus")]
    pub sp_status: Option<u32>,
    /// `ApproverAttr`: 1 或签 (any one), 2 会签 (all).
    #[serde(rename = "ApproverAttr")]
    pub approver_attr: Option<u32>,
    /// `Details*`: one entry per approver of this node.
    #[serde(rename = "Details")]
    pub details: Vec<SpRecordDetail>,
}

/// One `SpRecord/Details` entry (one approver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpRecordDetail {
    /// `Approver/UserId`.
    #[serde(rename = "ApproverUserId")]
    pub approver_user_id: Option<String>,
    /// `Speech`: the approver's remark, as sent (may be empty).
    #[serde(rename = "Speech")]
    pub speech: Option<String>,
    /// `SpStatus`: status of this approver's action.
    #[serde(rename = "SpStatus")]
    pub sp_status: Option<u32>,
    /// `SpTime`: unix seconds, 0 = not acted yet.
    #[serde(rename = "SpTime")]
    pub sp_time: Option<i64>,
    /// `Attach*`: media ids of attachments (empty values dropped).
    #[serde(rename = "Attach")]
    pub attach: Vec<String>,
}

/// One `Comments` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// `CommentUserInfo/UserId`.
    #[serde(rename = "CommentUserId")]
    pub user_id: Option<String>,
    /// `CommentTime`: unix seconds.
    #[serde(rename = "CommentTime")]
    pub time: Option<i64>,
    /// `CommentContent`, as sent.
    #[serde(rename = "CommentContent")]
    pub content: Option<String>,
    /// `CommentId` (64-bit id kept as a string).
    #[serde(rename = "CommentId")]
    pub comment_id: Option<String>,
    /// `Attach*`: media ids (empty values dropped).
    #[serde(rename = "Attach")]
    pub attach: Vec<String>,
}

/// One `ProcessList/NodeList` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessNode {
    /// `NodeType`: 1 approver, 2 CC, 3 handler (办理人).
    #[serde(rename = "NodeType")]
    pub node_type: Option<u32>,
    /// `SpStatus`: node status.
    #[serde(rename = "SpStatus")]
    pub sp_status: Option<u32>,
    /// `ApvRel`: 1 会签, 2 或签, 3 sequential.
    #[serde(rename = "ApvRel")]
    pub apv_rel: Option<u32>,
    /// `SubNodeList*`: one entry per person of the node.
    #[serde(rename = "SubNodeList")]
    pub sub_nodes: Vec<ProcessSubNode>,
}

/// One `NodeList/SubNodeList` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessSubNode {
    /// `UserInfo/UserId`.
    #[serde(rename = "UserId")]
    pub user_id: Option<String>,
    /// `Speech`, as sent.
    #[serde(rename = "Speech")]
    pub speech: Option<String>,
    /// `SpYj`: sub-node status.
    #[serde(rename = "SpYj")]
    pub sp_yj: Option<u32>,
    /// `Sptime` (lower-case t): unix seconds, 0 = not acted.
    #[serde(rename = "Sptime")]
    pub sp_time: Option<i64>,
    /// `MediaIds*`: media ids (text of each element and of any nested
    /// elements; empty values dropped).
    #[serde(rename = "MediaIds")]
    pub media_ids: Vec<String>,
}

/// `open_approval_change` (PROTOCOL.md §3.2): approval-flow engine of our own app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenApprovalChange {
    /// Common header.
    #[serde(flatten)]
    pub header: EventHeader,
    /// `ThirdNo`: our own approval number (trimmed).
    #[serde(rename = "ThirdNo")]
    pub third_no: String,
    /// `OpenSpName` (empty if absent).
    #[serde(rename = "OpenSpName")]
    pub open_sp_name: String,
    /// `OpenTemplateId` (empty if absent).
    #[serde(rename = "OpenTemplateId")]
    pub open_template_id: String,
    /// `OpenSpStatus`: 1 in progress, 2 approved, 3 rejected, 4 cancelled/withdrawn.
    #[serde(rename = "OpenSpStatus")]
    pub open_sp_status: u32,
    /// `ApplyTime`: unix seconds (0 if absent).
    #[serde(rename = "ApplyTime")]
    pub apply_time: i64,
    /// `ApplyUserId`.
    #[serde(rename = "ApplyUserId")]
    pub apply_user_id: Option<String>,
    /// `ApplyUserName`.
    #[serde(rename = "ApplyUserName")]
    pub apply_user_name: Option<String>,
    /// `ApplyUserParty`: department *name*.
    #[serde(rename = "ApplyUserParty")]
    pub apply_user_party: Option<String>,
    /// `ApplyUserImage`: avatar URL.
    #[serde(rename = "ApplyUserImage")]
    pub apply_user_image: Option<String>,
    /// `approverstep` (lower-case): 0-based index of the current node.
    #[serde(rename = "approverstep")]
    pub approver_step: Option<u32>,
    /// `ApprovalNodes/ApprovalNode*`.
    #[serde(rename = "ApprovalNode")]
    pub nodes: Vec<OpenApprovalNode>,
    /// `NotifyNodes/NotifyNode*`: CC recipients.
    #[serde(rename = "NotifyNode")]
    pub notify_nodes: Vec<OpenNotifyNode>,
}

/// One `ApprovalNodes/ApprovalNode` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenApprovalNode {
    /// `NodeStatus`: 1 in progress, 2 approved, 3 rejected, 4 transferred.
    #[serde(rename = "NodeStatus")]
    pub node_status: Option<u32>,
    /// `NodeAttr`: 1 或签, 2 会签.
    #[serde(rename = "NodeAttr")]
    pub node_attr: Option<u32>,
    /// `NodeType`: 1 fixed member, 2 tag, 3 superior.
    #[serde(rename = "NodeType")]
    pub node_type: Option<u32>,
    /// `Items/Item*`: the approvers of this node.
    #[serde(rename = "Item")]
    pub items: Vec<OpenApprovalItem>,
}

/// One `ApprovalNode/Items/Item` entry (one approver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenApprovalItem {
    /// `ItemName`: display name.
    #[serde(rename = "ItemName")]
    pub item_name: Option<String>,
    /// `ItemUserId` (also accepted as `ItemUserid`).
    #[serde(rename = "ItemUserId")]
    pub item_user_id: Option<String>,
    /// `ItemImage`: avatar URL.
    #[serde(rename = "ItemImage")]
    pub item_image: Option<String>,
    /// `ItemStatus`: 1 in progress, 2 agreed, 3 rejected, 4 transferred.
    #[serde(rename = "ItemStatus")]
    pub item_status: Option<u32>,
    /// `ItemSpeech`, as sent.
    #[serde(rename = "ItemSpeech")]
    pub item_speech: Option<String>,
    /// `ItemOpTime`: unix seconds.
    #[serde(rename = "ItemOpTime")]
    pub item_op_time: Option<i64>,
}

/// One `NotifyNodes/NotifyNode` entry (CC recipient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenNotifyNode {
    /// `ItemName`: display name.
    #[serde(rename = "ItemName")]
    pub item_name: Option<String>,
    /// `ItemUserId` (also accepted as `ItemUserid`).
    #[serde(rename = "ItemUserId")]
    pub item_user_id: Option<String>,
    /// `ItemImage`: avatar URL.
    #[serde(rename = "ItemImage")]
    pub item_image: Option<String>,
}

/// `change_contact` (PROTOCOL.md §3.3). Which fields are present depends on
/// `ChangeType` and on the callback configuration date (only UserID/Department
/// resp. Id/ParentId for configurations after 2022-08-15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactChange {
    /// Common header.
    #[serde(flatten)]
    pub header: EventHeader,
    /// `ChangeType`: create_user, update_user, delete_user, create_party,
    /// update_party, delete_party, update_tag (trimmed).
    #[serde(rename = "ChangeType")]
    pub change_type: String,
    /// `UserID` (member events).
    #[serde(rename = "UserID")]
    pub user_id: Option<String>,
    /// `NewUserID`: set when update_user changed the userid.
    #[serde(rename = "NewUserID")]
    pub new_user_id: Option<String>,
    /// `Name`: member name or department name.
    #[serde(rename = "Name")]
    pub name: Option<String>,
    /// `Department`: comma list split into department ids (trimmed, empty
    /// entries dropped; empty if absent).
    #[serde(rename = "Department")]
    pub department: Vec<String>,
    /// `MainDepartment`.
    #[serde(rename = "MainDepartment")]
    pub main_department: Option<String>,
    /// `IsLeaderInDept`: raw comma list aligned with `Department`.
    #[serde(rename = "IsLeaderInDept")]
    pub is_leader_in_dept: Option<String>,
    /// `DirectLeader`: raw comma list of userids.
    #[serde(rename = "DirectLeader")]
    pub direct_leader: Option<String>,
    /// `Position`.
    #[serde(rename = "Position")]
    pub position: Option<String>,
    /// `Mobile`.
    #[serde(rename = "Mobile")]
    pub mobile: Option<String>,
    /// `Gender`: 0 unknown, 1 male, 2 female (raw).
    #[serde(rename = "Gender")]
    pub gender: Option<String>,
    /// `Email`.
    #[serde(rename = "Email")]
    pub email: Option<String>,
    /// `BizMail`.
    #[serde(rename = "BizMail")]
    pub biz_mail: Option<String>,
    /// `Status`: 1 active, 2 disabled, 4 not activated, 5 left (raw).
    #[serde(rename = "Status")]
    pub status: Option<String>,
    /// `Avatar`: URL.
    #[serde(rename = "Avatar")]
    pub avatar: Option<String>,
    /// `Alias`.
    #[serde(rename = "Alias")]
    pub alias: Option<String>,
    /// `Telephone`.
    #[serde(rename = "Telephone")]
    pub telephone: Option<String>,
    /// `Address`.
    #[serde(rename = "Address")]
    pub address: Option<String>,
    /// `ExtAttr/Item*`: custom member attributes.
    #[serde(rename = "ExtAttr")]
    pub ext_attr: Vec<ExtAttrItem>,
    /// `Id`: department id (party events).
    #[serde(rename = "Id")]
    pub id: Option<String>,
    /// `ParentId`: parent department id.
    #[serde(rename = "ParentId")]
    pub parent_id: Option<String>,
    /// `Order`: department order value.
    #[serde(rename = "Order")]
    pub order: Option<String>,
    /// `TagId` (update_tag).
    #[serde(rename = "TagId")]
    pub tag_id: Option<String>,
    /// `AddUserItems`: raw comma list.
    #[serde(rename = "AddUserItems")]
    pub add_user_items: Option<String>,
    /// `DelUserItems`: raw comma list.
    #[serde(rename = "DelUserItems")]
    pub del_user_items: Option<String>,
    /// `AddPartyItems`: raw comma list.
    #[serde(rename = "AddPartyItems")]
    pub add_party_items: Option<String>,
    /// `DelPartyItems`: raw comma list.
    #[serde(rename = "DelPartyItems")]
    pub del_party_items: Option<String>,
}

/// One `ExtAttr/Item` entry of a contact event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtAttrItem {
    /// `Name`: attribute name.
    #[serde(rename = "Name")]
    pub name: Option<String>,
    /// `Type`: 0 text, 1 web.
    #[serde(rename = "Type")]
    pub attr_type: Option<u32>,
    /// `Text/Value` (type 0).
    #[serde(rename = "TextValue")]
    pub text_value: Option<String>,
    /// `Web/Title` (type 1).
    #[serde(rename = "WebTitle")]
    pub web_title: Option<String>,
    /// `Web/Url` (type 1).
    #[serde(rename = "WebUrl")]
    pub web_url: Option<String>,
}

/// `change_external_contact` (PROTOCOL.md §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalContactChange {
    /// Common header.
    #[serde(flatten)]
    pub header: EventHeader,
    /// `ChangeType`: add_external_contact, edit_external_contact,
    /// add_half_external_contact, del_external_contact, del_follow_user,
    /// transfer_fail, … (trimmed).
    #[serde(rename = "ChangeType")]
    pub change_type: String,
    /// `UserID`: our member (trimmed).
    #[serde(rename = "UserID")]
    pub user_id: String,
    /// `ExternalUserID`: the customer (trimmed).
    #[serde(rename = "ExternalUserID")]
    pub external_user_id: String,
    /// `State`: 「联系我」 state or customer-channel value.
    #[serde(rename = "State")]
    pub state: Option<String>,
    /// `WelcomeCode`: absent when a welcome message cannot be sent.
    #[serde(rename = "WelcomeCode")]
    pub welcome_code: Option<String>,
    /// `Source`: e.g. `DELETE_BY_TRANSFER` (del_external_contact).
    #[serde(rename = "Source")]
    pub source: Option<String>,
    /// `FailReason`: e.g. `customer_refused` (transfer_fail).
    #[serde(rename = "FailReason")]
    pub fail_reason: Option<String>,
}

/// Any callback that is not one of the typed events above.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherEvent {
    /// Common header.
    #[serde(flatten)]
    pub header: EventHeader,
    /// `ChangeType` if present (e.g. change_external_chat / change_external_tag).
    #[serde(rename = "ChangeType")]
    pub change_type: Option<String>,
    /// `MsgId` if present (user messages; 64-bit id kept as a string).
    #[serde(rename = "MsgId")]
    pub msg_id: Option<String>,
}

// ---------------------------------------------------------------------------
// Prolog scan (DOCTYPE / ENTITY refusal, root check)
// ---------------------------------------------------------------------------

/// Scans only the bytes before the root element: XML declaration, processing
/// instructions, comments and whitespace are skipped; any `<!` + letter (a
/// markup declaration such as DOCTYPE or ENTITY) is refused. Stops at the root
/// start tag and checks that it is `<xml`.
fn check_prolog(b: &[u8]) -> Result<(), EventParseError> {
    let mut i = if b.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    loop {
        while b
            .get(i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        {
            i += 1;
        }
        let rest = b.get(i..).unwrap_or_default();
        match rest {
            [] => return Err(malformed("document has no root element")),
            [b'<', b'?', tail @ ..] => {
                let end = find(tail, b"?>").ok_or_else(|| {
                    malformed("unterminated processing instruction before the root element")
                })?;
                i += 2 + end + 2;
            }
            [b'<', b'!', b'-', b'-', tail @ ..] => {
                let end = find(tail, b"-->")
                    .ok_or_else(|| malformed("unterminated comment before the root element"))?;
                i += 4 + end + 3;
            }
            [b'<', b'!', c, ..] if c.is_ascii_alphabetic() => return Err(EventParseError::Doctype),
            [b'<', b'!', ..] => return Err(malformed("unexpected markup before the root element")),
            [b'<', tail @ ..] => {
                let name_len = tail
                    .iter()
                    .position(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))
                    .unwrap_or(tail.len());
                return if tail.get(..name_len) == Some(b"xml".as_slice()) {
                    Ok(())
                } else {
                    Err(malformed("root element is not <xml>"))
                };
            }
            _ => return Err(malformed("text before the root element")),
        }
    }
}

/// Position of `needle` (non-empty) in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// quick-xml pass
// ---------------------------------------------------------------------------

/// Upper bound of events quick-xml may buffer while collecting a list whose
/// items are interleaved with other elements (`overlapped-lists`).
const MAX_BUFFERED_EVENTS: usize = 1 << 16;
/// Upper bound of nested structs (the schema needs 7).
const MAX_DEPTH: usize = 32;
/// Marker for content after the root element.
const TRAILING_CONTENT: &str = "content after the root element";

/// Entity resolver that refuses every DTD (records that one was seen) and
/// resolves only the five predefined entities.
struct RefuseDtd<'f> {
    seen: &'f Cell<bool>,
}

/// Error raised by [`RefuseDtd`] for any DOCTYPE.
#[derive(Debug)]
struct DtdRefused;

impl fmt::Display for DtdRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DOCTYPE refused")
    }
}

impl std::error::Error for DtdRefused {}

impl EntityResolver for RefuseDtd<'_> {
    type Error = DtdRefused;

    fn capture(&mut self, _doctype: BytesText<'_>) -> Result<(), Self::Error> {
        self.seen.set(true);
        Err(DtdRefused)
    }

    fn resolve(&self, entity: &str) -> Option<&str> {
        quick_xml::escape::resolve_predefined_entity(entity)
    }
}

/// One serde pass over the document into the borrowed raw structs, followed
/// by a check that nothing but whitespace/comments follows the root.
fn deserialize_raw(xml: &str) -> Result<RawXml<'_>, EventParseError> {
    let dtd_seen = Cell::new(false);
    let mut de = XmlDeserializer::from_str_with_resolver(xml, RefuseDtd { seen: &dtd_seen });
    de.event_buffer_size(NonZeroUsize::new(MAX_BUFFERED_EVENTS));
    de.recursion_limit(MAX_DEPTH);

    let result = RawXml::deserialize(&mut de).and_then(|raw| {
        let mut top_level = &mut de;
        match top_level.next_element::<IgnoredAny>()? {
            None => Ok(raw),
            Some(_) => Err(DeError::Custom(TRAILING_CONTENT.to_owned())),
        }
    });
    match result {
        Ok(raw) => Ok(raw),
        Err(_) if dtd_seen.get() => Err(EventParseError::Doctype),
        Err(err) => {
            let reader = de.get_ref().get_ref();
            let pos = match err {
                DeError::InvalidXml(_) => reader.error_position(),
                _ => reader.buffer_position(),
            };
            Err(EventParseError::Malformed(format!(
                "{} (near byte {pos})",
                describe(&err)
            )))
        }
    }
}

/// Payload-free description of a quick-xml / serde error.
fn describe(err: &DeError) -> Cow<'static, str> {
    match err {
        // `duplicate field` messages name one of our static field names only.
        DeError::Custom(msg) if msg.starts_with("duplicate field `") => {
            Cow::Owned(format!("element occurs more than once: {msg}"))
        }
        DeError::Custom(msg) if msg == TRAILING_CONTENT => Cow::Borrowed(TRAILING_CONTENT),
        DeError::Custom(_) => Cow::Borrowed("unexpected document structure"),
        DeError::InvalidXml(e) => match e {
            XmlError::Syntax(s) => Cow::Owned(format!("XML syntax error: {s}")),
            XmlError::IllFormed(IllFormedError::MissingEndTag(_)) => {
                Cow::Borrowed("ill-formed XML: missing end tag")
            }
            XmlError::IllFormed(IllFormedError::UnmatchedEndTag(_)) => {
                Cow::Borrowed("ill-formed XML: end tag without start tag")
            }
            XmlError::IllFormed(IllFormedError::MismatchedEndTag { .. }) => {
                Cow::Borrowed("ill-formed XML: mismatched end tag")
            }
            XmlError::IllFormed(_) => Cow::Borrowed("ill-formed XML"),
            XmlError::Escape(_) => Cow::Borrowed(
                "invalid character reference or unknown entity (only predefined entities are allowed)",
            ),
            XmlError::Encoding(_) => Cow::Borrowed("invalid text encoding"),
            XmlError::InvalidAttr(_) => Cow::Borrowed("invalid attribute"),
            XmlError::Namespace(_) => Cow::Borrowed("invalid namespace declaration"),
            XmlError::Io(_) => Cow::Borrowed("I/O error while reading XML"),
        },
        DeError::MixedContent(_) => {
            Cow::Borrowed("unexpected child element inside a text-only element")
        }
        DeError::UnexpectedEof => Cow::Borrowed("unexpected end of document"),
        DeError::TooDeeplyNested(limit) => {
            Cow::Owned(format!("nesting deeper than {limit} levels"))
        }
        DeError::TooManyEvents(limit) => {
            Cow::Owned(format!("more than {limit} interleaved elements"))
        }
        DeError::KeyNotRead => Cow::Borrowed("internal deserializer error"),
    }
}

/// Text content of one element, borrowed from the input when possible.
#[derive(Debug, Default)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor(PhantomData))
    }
}

/// Visitor for [`Text`].
struct TextVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
    type Value = Text<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text content")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

/// All text inside one element, including the text of nested elements
/// (attributes ignored). Used for `Attach`/`MediaIds`, whose exact shape is not
/// pinned down by the docs, so that a nested form does not fail the event.
#[derive(Debug, Default)]
struct Texts<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Texts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextsVisitor(PhantomData))
    }
}

/// Visitor for [`Texts`].
struct TextsVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TextsVisitor<'a> {
    type Value = Texts<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text or element content")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Texts(vec![Cow::Borrowed(v)]))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Texts(vec![Cow::Owned(v.to_owned())]))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Texts(vec![Cow::Owned(v)]))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<Text<'_>>()? {
            if key.0.starts_with('@') {
                map.next_value::<IgnoredAny>()?;
            } else {
                out.extend(map.next_value::<Texts<'a>>()?.0);
            }
        }
        Ok(Texts(out))
    }
}

/// Root `<xml>`: union of the fields of every event we type.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawXml<'a> {
    #[serde(rename = "ToUserName", borrow)]
    to_user_name: Option<Text<'a>>,
    #[serde(rename = "FromUserName", borrow)]
    from_user_name: Option<Text<'a>>,
    #[serde(rename = "CreateTime", borrow)]
    create_time: Option<Text<'a>>,
    #[serde(rename = "MsgType", borrow)]
    msg_type: Option<Text<'a>>,
    #[serde(rename = "Event", borrow)]
    event: Option<Text<'a>>,
    #[serde(rename = "AgentID", borrow)]
    agent_id: Option<Text<'a>>,
    #[serde(rename = "ChangeType", borrow)]
    change_type: Option<Text<'a>>,
    #[serde(rename = "MsgId", borrow)]
    msg_id: Option<Text<'a>>,
    #[serde(rename = "ApprovalInfo", borrow)]
    approval_info: Option<RawApprovalInfo<'a>>,
    // change_contact / change_external_contact
    #[serde(rename = "UserID", borrow)]
    user_id: Option<Text<'a>>,
    #[serde(rename = "NewUserID", borrow)]
    new_user_id: Option<Text<'a>>,
    #[serde(rename = "Name", borrow)]
    name: Option<Text<'a>>,
    #[serde(rename = "Department", borrow)]
    department: Option<Text<'a>>,
    #[serde(rename = "MainDepartment", borrow)]
    main_department: Option<Text<'a>>,
    #[serde(rename = "IsLeaderInDept", borrow)]
    is_leader_in_dept: Option<Text<'a>>,
    #[serde(rename = "DirectLeader", borrow)]
    direct_leader: Option<Text<'a>>,
    #[serde(rename = "Position", borrow)]
    position: Option<Text<'a>>,
    #[serde(rename = "Mobile", borrow)]
    mobile: Option<Text<'a>>,
    #[serde(rename = "Gender", borrow)]
    gender: Option<Text<'a>>,
    #[serde(rename = "Email", borrow)]
    email: Option<Text<'a>>,
    #[serde(rename = "BizMail", borrow)]
    biz_mail: Option<Text<'a>>,
    #[serde(rename = "Status", borrow)]
    status: Option<Text<'a>>,
    #[serde(rename = "Avatar", borrow)]
    avatar: Option<Text<'a>>,
    #[serde(rename = "Alias", borrow)]
    alias: Option<Text<'a>>,
    #[serde(rename = "Telephone", borrow)]
    telephone: Option<Text<'a>>,
    #[serde(rename = "Address", borrow)]
    address: Option<Text<'a>>,
    #[serde(rename = "ExtAttr", borrow)]
    ext_attr: Option<RawExtAttr<'a>>,
    #[serde(rename = "Id", borrow)]
    id: Option<Text<'a>>,
    #[serde(rename = "ParentId", borrow)]
    parent_id: Option<Text<'a>>,
    #[serde(rename = "Order", borrow)]
    order: Option<Text<'a>>,
    #[serde(rename = "TagId", borrow)]
    tag_id: Option<Text<'a>>,
    #[serde(rename = "AddUserItems", borrow)]
    add_user_items: Option<Text<'a>>,
    #[serde(rename = "DelUserItems", borrow)]
    del_user_items: Option<Text<'a>>,
    #[serde(rename = "AddPartyItems", borrow)]
    add_party_items: Option<Text<'a>>,
    #[serde(rename = "DelPartyItems", borrow)]
    del_party_items: Option<Text<'a>>,
    #[serde(rename = "ExternalUserID", borrow)]
    external_user_id: Option<Text<'a>>,
    #[serde(rename = "State", borrow)]
    state: Option<Text<'a>>,
    #[serde(rename = "WelcomeCode", borrow)]
    welcome_code: Option<Text<'a>>,
    #[serde(rename = "Source", borrow)]
    source: Option<Text<'a>>,
    #[serde(rename = "FailReason", borrow)]
    fail_reason: Option<Text<'a>>,
}

/// `<ApprovalInfo>`: union of sys_approval_change and open_approval_change fields.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawApprovalInfo<'a> {
    #[serde(rename = "SpNoStr", borrow)]
    sp_no_str: Option<Text<'a>>,
    #[serde(rename = "SpNo", borrow)]
    sp_no: Option<Text<'a>>,
    #[serde(rename = "SpName", borrow)]
    sp_name: Option<Text<'a>>,
    #[serde(rename = "SpStatus", borrow)]
    sp_status: Option<Text<'a>>,
    #[serde(rename = "TemplateId", borrow)]
    template_id: Option<Text<'a>>,
    #[serde(rename = "ApplyTime", borrow)]
    apply_time: Option<Text<'a>>,
    #[serde(rename = "Applyer", borrow)]
    applyer: Option<RawApplyer<'a>>,
    #[serde(rename = "SpRecord", borrow)]
    sp_record: Vec<RawSpRecord<'a>>,
    #[serde(rename = "Notifyer", borrow)]
    notifyer: Vec<RawUser<'a>>,
    #[serde(rename = "Comments", borrow)]
    comments: Vec<RawComment<'a>>,
    #[serde(rename = "ProcessList", borrow)]
    process_list: Option<RawProcessList<'a>>,
    #[serde(rename = "StatuChangeEvent", borrow)]
    statu_change_event: Option<Text<'a>>,
    // open_approval_change
    #[serde(rename = "ThirdNo", borrow)]
    third_no: Option<Text<'a>>,
    #[serde(rename = "OpenSpName", borrow)]
    open_sp_name: Option<Text<'a>>,
    #[serde(rename = "OpenTemplateId", borrow)]
    open_template_id: Option<Text<'a>>,
    #[serde(rename = "OpenSpStatus", borrow)]
    open_sp_status: Option<Text<'a>>,
    #[serde(rename = "ApplyUserName", borrow)]
    apply_user_name: Option<Text<'a>>,
    #[serde(rename = "ApplyUserId", borrow)]
    apply_user_id: Option<Text<'a>>,
    #[serde(rename = "ApplyUserParty", borrow)]
    apply_user_party: Option<Text<'a>>,
    #[serde(rename = "ApplyUserImage", borrow)]
    apply_user_image: Option<Text<'a>>,
    #[serde(rename = "ApprovalNodes", borrow)]
    approval_nodes: Option<RawApprovalNodes<'a>>,
    #[serde(rename = "NotifyNodes", borrow)]
    notify_nodes: Option<RawNotifyNodes<'a>>,
    #[serde(rename = "approverstep", borrow)]
    approver_step: Option<Text<'a>>,
}

/// `<Applyer>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawApplyer<'a> {
    #[serde(rename = "UserId", borrow)]
    user_id: Option<Text<'a>>,
    #[serde(rename = "Party", borrow)]
    party: Option<Text<'a>>,
}

/// Any element whose only interesting child is `<UserId>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawUser<'a> {
    #[serde(rename = "UserId", borrow)]
    user_id: Option<Text<'a>>,
}

/// `<SpRecord>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawSpRecord<'a> {
    #[serde(rename = "SpStatus", borrow)]
    sp_status: Option<Text<'a>>,
    #[serde(rename = "ApproverAttr", borrow)]
    approver_attr: Option<Text<'a>>,
    #[serde(rename = "Details", borrow)]
    details: Vec<RawDetail<'a>>,
}

/// `<SpRecord><Details>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawDetail<'a> {
    #[serde(rename = "Approver", borrow)]
    approver: Option<RawUser<'a>>,
    #[serde(rename = "Speech", borrow)]
    speech: Option<Text<'a>>,
    #[serde(rename = "SpStatus", borrow)]
    sp_status: Option<Text<'a>>,
    #[serde(rename = "SpTime", borrow)]
    sp_time: Option<Text<'a>>,
    #[serde(rename = "Attach", borrow)]
    attach: Vec<Texts<'a>>,
}

/// `<Comments>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawComment<'a> {
    #[serde(rename = "CommentUserInfo", borrow)]
    user_info: Option<RawUser<'a>>,
    #[serde(rename = "CommentTime", borrow)]
    time: Option<Text<'a>>,
    #[serde(rename = "CommentContent", borrow)]
    content: Option<Text<'a>>,
    #[serde(rename = "CommentId", borrow)]
    comment_id: Option<Text<'a>>,
    #[serde(rename = "Attach", borrow)]
    attach: Vec<Texts<'a>>,
}

/// `<ProcessList>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawProcessList<'a> {
    #[serde(rename = "NodeList", borrow)]
    node_list: Vec<RawNode<'a>>,
}

/// `<ProcessList><NodeList>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawNode<'a> {
    #[serde(rename = "NodeType", borrow)]
    node_type: Option<Text<'a>>,
    #[serde(rename = "SpStatus", borrow)]
    sp_status: Option<Text<'a>>,
    #[serde(rename = "ApvRel", borrow)]
    apv_rel: Option<Text<'a>>,
    #[serde(rename = "SubNodeList", borrow)]
    sub_node_list: Vec<RawSubNode<'a>>,
}

/// `<NodeList><SubNodeList>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawSubNode<'a> {
    #[serde(rename = "UserInfo", borrow)]
    user_info: Option<RawUser<'a>>,
    #[serde(rename = "Speech", borrow)]
    speech: Option<Text<'a>>,
    #[serde(rename = "SpYj", borrow)]
    sp_yj: Option<Text<'a>>,
    #[serde(rename = "Sptime", borrow)]
    sp_time: Option<Text<'a>>,
    #[serde(rename = "MediaIds", borrow)]
    media_ids: Vec<Texts<'a>>,
}

/// `<ApprovalNodes>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawApprovalNodes<'a> {
    #[serde(rename = "ApprovalNode", borrow)]
    node: Vec<RawApprovalNode<'a>>,
}

/// `<ApprovalNodes><ApprovalNode>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawApprovalNode<'a> {
    #[serde(rename = "NodeStatus", borrow)]
    node_status: Option<Text<'a>>,
    #[serde(rename = "NodeAttr", borrow)]
    node_attr: Option<Text<'a>>,
    #[serde(rename = "NodeType", borrow)]
    node_type: Option<Text<'a>>,
    #[serde(rename = "Items", borrow)]
    items: Option<RawItems<'a>>,
}

/// `<ApprovalNode><Items>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawItems<'a> {
    #[serde(rename = "Item", borrow)]
    item: Vec<RawItem<'a>>,
}

/// `<Items><Item>` and `<NotifyNode>` (same child names).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawItem<'a> {
    #[serde(rename = "ItemName", borrow)]
    name: Option<Text<'a>>,
    #[serde(rename = "ItemUserId", alias = "ItemUserid", borrow)]
    user_id: Option<Text<'a>>,
    #[serde(rename = "ItemImage", borrow)]
    image: Option<Text<'a>>,
    #[serde(rename = "ItemStatus", borrow)]
    status: Option<Text<'a>>,
    #[serde(rename = "ItemSpeech", borrow)]
    speech: Option<Text<'a>>,
    #[serde(rename = "ItemOpTime", borrow)]
    op_time: Option<Text<'a>>,
}

/// `<NotifyNodes>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawNotifyNodes<'a> {
    #[serde(rename = "NotifyNode", borrow)]
    node: Vec<RawItem<'a>>,
}

/// `<ExtAttr>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawExtAttr<'a> {
    #[serde(rename = "Item", borrow)]
    item: Vec<RawExtAttrItem<'a>>,
}

/// `<ExtAttr><Item>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawExtAttrItem<'a> {
    #[serde(rename = "Name", borrow)]
    name: Option<Text<'a>>,
    #[serde(rename = "Type", borrow)]
    attr_type: Option<Text<'a>>,
    #[serde(rename = "Text", borrow)]
    text: Option<RawExtText<'a>>,
    #[serde(rename = "Web", borrow)]
    web: Option<RawExtWeb<'a>>,
}

/// `<ExtAttr><Item><Text>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawExtText<'a> {
    #[serde(rename = "Value", borrow)]
    value: Option<Text<'a>>,
}

/// `<ExtAttr><Item><Web>`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawExtWeb<'a> {
    #[serde(rename = "Title", borrow)]
    title: Option<Text<'a>>,
    #[serde(rename = "Url", borrow)]
    url: Option<Text<'a>>,
}

// ---------------------------------------------------------------------------
// Raw → typed
// ---------------------------------------------------------------------------

const EV_SYS_APPROVAL: &str = "sys_approval_change";
const EV_OPEN_APPROVAL: &str = "open_approval_change";
const EV_CONTACT: &str = "change_contact";
const EV_EXTERNAL_CONTACT: &str = "change_external_contact";

fn malformed(msg: impl Into<String>) -> EventParseError {
    EventParseError::Malformed(msg.into())
}

/// Text as sent (not trimmed); `None` if the element is absent.
fn text(t: Option<Text<'_>>) -> Option<String> {
    t.map(|t| t.0.into_owned())
}

/// Identifier-like value: trimmed; `None` if absent or blank.
fn token(t: Option<Text<'_>>) -> Option<String> {
    t.and_then(|t| {
        let s = t.0.trim();
        (!s.is_empty()).then(|| s.to_owned())
    })
}

/// Required identifier-like value.
fn req_token(t: Option<Text<'_>>, path: &'static str) -> Result<String, EventParseError> {
    token(t).ok_or_else(|| malformed(format!("{path} is missing or empty")))
}

/// Optional integer, whitespace around it allowed; absent or blank → `None`.
fn num<T: FromStr>(t: &Option<Text<'_>>, path: &'static str) -> Result<Option<T>, EventParseError> {
    let Some(t) = t else { return Ok(None) };
    let s = t.0.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| malformed(format!("{path} is not a valid integer")))
}

/// Required integer.
fn req_num<T: FromStr>(t: &Option<Text<'_>>, path: &'static str) -> Result<T, EventParseError> {
    num(t, path)?.ok_or_else(|| malformed(format!("{path} is missing or empty")))
}

/// Flattens lenient multi-text elements into trimmed, non-empty strings.
fn texts(list: Vec<Texts<'_>>) -> Vec<String> {
    list.into_iter()
        .flat_map(|t| t.0)
        .filter_map(|s| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        })
        .collect()
}

fn user_id(u: Option<RawUser<'_>>) -> Option<String> {
    token(u.and_then(|u| u.user_id))
}

fn build_event(mut raw: RawXml<'_>) -> Result<InboundEvent, EventParseError> {
    let header = EventHeader {
        to_user_name: req_token(raw.to_user_name.take(), "ToUserName")?,
        from_user_name: req_token(raw.from_user_name.take(), "FromUserName")?,
        create_time: req_num(&raw.create_time, "CreateTime")?,
        msg_type: req_token(raw.msg_type.take(), "MsgType")?,
        event: token(raw.event.take()),
        agent_id: token(raw.agent_id.take()),
    };
    match header.event.as_deref() {
        Some(EV_SYS_APPROVAL) => build_approval(header, raw).map(InboundEvent::ApprovalChange),
        Some(EV_OPEN_APPROVAL) => {
            build_open_approval(header, raw).map(InboundEvent::OpenApprovalChange)
        }
        Some(EV_CONTACT) => build_contact(header, raw).map(InboundEvent::ContactChange),
        Some(EV_EXTERNAL_CONTACT) => {
            build_external_contact(header, raw).map(InboundEvent::ExternalContactChange)
        }
        _ => Ok(InboundEvent::Other(OtherEvent {
            header,
            change_type: token(raw.change_type),
            msg_id: token(raw.msg_id),
        })),
    }
}

fn build_approval(header: EventHeader, raw: RawXml<'_>) -> Result<ApprovalChange, EventParseError> {
    let info = raw
        .approval_info
        .ok_or_else(|| malformed("sys_approval_change without ApprovalInfo"))?;
    let sp_no = token(info.sp_no_str)
        .or_else(|| token(info.sp_no))
        .ok_or_else(|| malformed("sys_approval_change without SpNoStr and SpNo"))?;
    let sp_status = req_num(&info.sp_status, "ApprovalInfo/SpStatus")?;
    let apply_time = num(&info.apply_time, "ApprovalInfo/ApplyTime")?.unwrap_or(0);
    let status_change_event = num(&info.statu_change_event, "ApprovalInfo/StatuChangeEvent")?;
    let (applicant_user_id, applicant_party) = match info.applyer {
        Some(a) => (token(a.user_id), token(a.party)),
        None => (None, None),
    };

    let sp_records = info
        .sp_record
        .into_iter()
        .map(|r| {
            let details = r
                .details
                .into_iter()
                .map(|d| {
                    Ok(SpRecordDetail {
                        sp_status: num(&d.sp_status, "SpRecord/Details/SpStatus")?,
                        sp_time: num(&d.sp_time, "SpRecord/Details/SpTime")?,
                        approver_user_id: user_id(d.approver),
                        speech: text(d.speech),
                        attach: texts(d.attach),
                    })
                })
                .collect::<Result<Vec<_>, EventParseError>>()?;
            Ok(SpRecord {
                sp_status: num(&r.sp_status, "SpRecord/SpStatus")?,
                approver_attr: num(&r.approver_attr, "SpRecord/ApproverAttr")?,
                details,
            })
        })
        .collect::<Result<Vec<_>, EventParseError>>()?;

    let notifyers = info
        .notifyer
        .into_iter()
        .filter_map(|n| token(n.user_id))
        .collect();

    let comments = info
        .comments
        .into_iter()
        .map(|c| {
            Ok(Comment {
                time: num(&c.time, "Comments/CommentTime")?,
                user_id: user_id(c.user_info),
                content: text(c.content),
                comment_id: token(c.comment_id),
                attach: texts(c.attach),
            })
        })
        .collect::<Result<Vec<_>, EventParseError>>()?;

    let process_nodes = info
        .process_list
        .map(|p| p.node_list)
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            let sub_nodes = n
                .sub_node_list
                .into_iter()
                .map(|s| {
                    Ok(ProcessSubNode {
                        sp_yj: num(&s.sp_yj, "NodeList/SubNodeList/SpYj")?,
                        sp_time: num(&s.sp_time, "NodeList/SubNodeList/Sptime")?,
                        user_id: user_id(s.user_info),
                        speech: text(s.speech),
                        media_ids: texts(s.media_ids),
                    })
                })
                .collect::<Result<Vec<_>, EventParseError>>()?;
            Ok(ProcessNode {
                node_type: num(&n.node_type, "NodeList/NodeType")?,
                sp_status: num(&n.sp_status, "NodeList/SpStatus")?,
                apv_rel: num(&n.apv_rel, "NodeList/ApvRel")?,
                sub_nodes,
            })
        })
        .collect::<Result<Vec<_>, EventParseError>>()?;

    Ok(ApprovalChange {
        header,
        sp_no,
        sp_name: text(info.sp_name).unwrap_or_default(),
        sp_status,
        template_id: token(info.template_id).unwrap_or_default(),
        apply_time,
        applicant_user_id,
        applicant_party,
        status_change_event,
        sp_records,
        notifyers,
        comments,
        process_nodes,
    })
}

fn build_open_approval(
    header: EventHeader,
    raw: RawXml<'_>,
) -> Result<OpenApprovalChange, EventParseError> {
    let info = raw
        .approval_info
        .ok_or_else(|| malformed("open_approval_change without ApprovalInfo"))?;
    let third_no = req_token(info.third_no, "ApprovalInfo/ThirdNo")?;
    let open_sp_status = req_num(&info.open_sp_status, "ApprovalInfo/OpenSpStatus")?;
    let apply_time = num(&info.apply_time, "ApprovalInfo/ApplyTime")?.unwrap_or(0);
    let approver_step = num(&info.approver_step, "ApprovalInfo/approverstep")?;

    let nodes = info
        .approval_nodes
        .map(|n| n.node)
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            let items = n
                .items
                .map(|i| i.item)
                .unwrap_or_default()
                .into_iter()
                .map(|i| {
                    Ok(OpenApprovalItem {
                        item_status: num(&i.status, "ApprovalNode/Items/Item/ItemStatus")?,
                        item_op_time: num(&i.op_time, "ApprovalNode/Items/Item/ItemOpTime")?,
                        item_name: text(i.name),
                        item_user_id: token(i.user_id),
                        item_image: token(i.image),
                        item_speech: text(i.speech),
                    })
                })
                .collect::<Result<Vec<_>, EventParseError>>()?;
            Ok(OpenApprovalNode {
                node_status: num(&n.node_status, "ApprovalNode/NodeStatus")?,
                node_attr: num(&n.node_attr, "ApprovalNode/NodeAttr")?,
                node_type: num(&n.node_type, "ApprovalNode/NodeType")?,
                items,
            })
        })
        .collect::<Result<Vec<_>, EventParseError>>()?;

    let notify_nodes = info
        .notify_nodes
        .map(|n| n.node)
        .unwrap_or_default()
        .into_iter()
        .map(|i| OpenNotifyNode {
            item_name: text(i.name),
            item_user_id: token(i.user_id),
            item_image: token(i.image),
        })
        .collect();

    Ok(OpenApprovalChange {
        header,
        third_no,
        open_sp_name: text(info.open_sp_name).unwrap_or_default(),
        open_template_id: token(info.open_template_id).unwrap_or_default(),
        open_sp_status,
        apply_time,
        apply_user_id: token(info.apply_user_id),
        apply_user_name: text(info.apply_user_name),
        apply_user_party: text(info.apply_user_party),
        apply_user_image: token(info.apply_user_image),
        approver_step,
        nodes,
        notify_nodes,
    })
}

fn build_contact(header: EventHeader, raw: RawXml<'_>) -> Result<ContactChange, EventParseError> {
    let change_type = req_token(raw.change_type, "change_contact ChangeType")?;
    let user_id = token(raw.user_id);
    let id = token(raw.id);
    let tag_id = token(raw.tag_id);
    match change_type.as_str() {
        "create_user" | "update_user" | "delete_user" if user_id.is_none() => {
            return Err(malformed("change_contact member event without UserID"));
        }
        "create_party" | "update_party" | "delete_party" if id.is_none() => {
            return Err(malformed("change_contact department event without Id"));
        }
        "update_tag" if tag_id.is_none() => {
            return Err(malformed("change_contact update_tag without TagId"));
        }
        _ => {}
    }
    let department = raw
        .department
        .map(|d| {
            d.0.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let ext_attr = raw
        .ext_attr
        .map(|e| e.item)
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            let (web_title, web_url) = match i.web {
                Some(w) => (text(w.title), token(w.url)),
                None => (None, None),
            };
            Ok(ExtAttrItem {
                attr_type: num(&i.attr_type, "ExtAttr/Item/Type")?,
                name: text(i.name),
                text_value: text(i.text.and_then(|t| t.value)),
                web_title,
                web_url,
            })
        })
        .collect::<Result<Vec<_>, EventParseError>>()?;

    Ok(ContactChange {
        header,
        change_type,
        user_id,
        new_user_id: token(raw.new_user_id),
        name: text(raw.name),
        department,
        main_department: token(raw.main_department),
        is_leader_in_dept: token(raw.is_leader_in_dept),
        direct_leader: token(raw.direct_leader),
        position: text(raw.position),
        mobile: token(raw.mobile),
        gender: token(raw.gender),
        email: token(raw.email),
        biz_mail: token(raw.biz_mail),
        status: token(raw.status),
        avatar: token(raw.avatar),
        alias: text(raw.alias),
        telephone: token(raw.telephone),
        address: text(raw.address),
        ext_attr,
        id,
        parent_id: token(raw.parent_id),
        order: token(raw.order),
        tag_id,
        add_user_items: token(raw.add_user_items),
        del_user_items: token(raw.del_user_items),
        add_party_items: token(raw.add_party_items),
        del_party_items: token(raw.del_party_items),
    })
}

fn build_external_contact(
    header: EventHeader,
    raw: RawXml<'_>,
) -> Result<ExternalContactChange, EventParseError> {
    Ok(ExternalContactChange {
        header,
        change_type: req_token(raw.change_type, "change_external_contact ChangeType")?,
        user_id: req_token(raw.user_id, "change_external_contact UserID")?,
        external_user_id: req_token(
            raw.external_user_id,
            "change_external_contact ExternalUserID",
        )?,
        state: text(raw.state),
        welcome_code: token(raw.welcome_code),
        source: token(raw.source),
        fail_reason: token(raw.fail_reason),
    })
}
