//! Decrypted WeCom (企业微信) callback XML → typed [`InboundEvent`].
//!
//! This module owns exactly one step of the callback pipeline: turning the
//! *already verified and decrypted* plaintext XML into typed events. It does no
//! cryptography, no signature checks and no I/O.
//!
//! Parsing rules (see PROTOCOL.md §3.0 and §6 item 8):
//!
//! * The prolog (the bytes before the root element) is scanned first: any
//!   markup declaration in it (`<!DOCTYPE`, `<!ENTITY`, `<!ELEMENT`, …, in any
//!   letter case) is refused with [`EventParseError::Doctype`]. A DOCTYPE met
//!   later (inside or after the root, also inside ignored elements) is refused
//!   the same way. No DTD is ever processed and no custom entity is ever
//!   expanded: only character references and the five predefined entities are
//!   resolved, any other `&name;` is an error.
//! * The root element must be `<xml>`; after it only whitespace, comments and
//!   processing instructions may follow.
//! * CDATA and bare text are equivalent and may be mixed inside one element.
//!   Whitespace at the outer edges of *bare text* is formatting and dropped;
//!   CDATA content is kept verbatim. Line ends are normalised (`\r\n` → `\n`).
//! * Repeated elements (`SpRecord`, `Details`, `Notifyer`, `Comments`,
//!   `NodeList`, `SubNodeList`, `ApprovalNode`, `Item`, `NotifyNode`, `Attach`,
//!   `MediaIds`, `ExtAttr/Item`) are always `Vec`s, in document order, also
//!   when they occur once or non-consecutively. Repeated list wrappers
//!   (`ProcessList`, `ApprovalNodes`, `Items`, `NotifyNodes`, `ExtAttr`) add
//!   their children to the same list.
//! * Unknown elements, attributes, comments and processing instructions are
//!   ignored (attributes must still be well-formed).
//! * Identifier-like values (user ids, numbers, codes, URLs) are trimmed and a
//!   blank value counts as absent; free text (names, speeches, comments,
//!   addresses, `State`) is kept as sent (an empty element gives `Some("")`).
//! * Numbers may be surrounded by whitespace; an empty numeric element counts as
//!   absent; a non-empty value that is not a valid integer is an error.
//! * A known single-valued element (e.g. `SpNo`, `Applyer`, `ApprovalInfo`)
//!   that occurs twice in the same parent, or a child element inside a known
//!   text-only element, makes a typed event malformed (ambiguous payload). An
//!   `Other` event ignores such problems in fields it does not use; the header
//!   fields are always checked.
//! * Error messages describe what is wrong and where (byte offsets, element
//!   paths) but never echo payload content.
//!
//! Implementation: one pass over quick-xml's low-level pull reader into
//! private raw structs that borrow from the input and whose fields are all
//! optional, then a conversion into the public typed events that checks the
//! essential fields of each known event. (quick-xml's serde deserializer was
//! measured 2.5× slower on a 2 KB approval: the `overlapped-lists` feature
//! buffers and replays events for every list field, and namespaces are
//! resolved for every element.)
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use quick_xml::Reader;
use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use serde::Serialize;

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
/// with [`EventParseError::Doctype`] and never expanded (a DOCTYPE further
/// down the document is refused too); CDATA and bare text
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
///
/// A typed event is also malformed when a known element is repeated where it
/// may occur only once, contains child elements where text is expected, or
/// holds a non-integer where a number is expected. See the module docs for
/// the full rules.
pub fn parse_event(xml: &str) -> Result<InboundEvent, EventParseError> {
    check_prolog(xml.as_bytes())?;
    let raw = Walker::new(xml).document()?;
    build_event(raw)
}

/// A decrypted WeCom callback, classified by its `Event` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "agreed API keeps the payloads inline; one value per callback, rarely moved"
)]
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
// Single pass over quick-xml events into borrowed raw structs
// ---------------------------------------------------------------------------

/// Borrowed-when-possible text of one element.
type Txt<'a> = Option<Cow<'a, str>>;

/// Pull parser over quick-xml's low-level reader. Every method that is
/// called right after a start tag consumes everything up to and including
/// the matching end tag. Recursion only follows the fixed schema (depth ≤ 7);
/// unknown subtrees are skipped iteratively, so hostile nesting cannot
/// exhaust the stack.
///
/// Well-formedness problems and DOCTYPEs abort at once. Schema problems in
/// known elements (a repeated single-valued element, child elements inside a
/// text-only element) are recorded in `deferred` and the offending element is
/// skipped: they make a typed event malformed, but cannot break an `Other`
/// event that does not use those fields. Only the header fields are strict.
struct Walker<'a> {
    reader: Reader<&'a [u8]>,
    /// First schema problem met, reported when a typed event is built.
    deferred: Option<EventParseError>,
}

impl<'a> Walker<'a> {
    fn new(xml: &'a str) -> Self {
        Self {
            reader: Reader::from_str(xml),
            deferred: None,
        }
    }

    /// Records a schema problem (the first one wins).
    fn defer(&mut self, err: EventParseError) {
        if self.deferred.is_none() {
            self.deferred = Some(err);
        }
    }

    /// Next event; a DOCTYPE anywhere is refused, reader errors are mapped.
    fn next(&mut self) -> Result<Event<'a>, EventParseError> {
        match self.reader.read_event() {
            Ok(Event::DocType(_)) => Err(EventParseError::Doctype),
            Ok(event) => Ok(event),
            Err(err) => Err(EventParseError::Malformed(format!(
                "{} (near byte {})",
                describe_xml_error(&err),
                self.reader.error_position()
            ))),
        }
    }

    /// Malformed error that names the current byte offset.
    fn malformed_here(&self, what: &str) -> EventParseError {
        EventParseError::Malformed(format!(
            "{what} (near byte {})",
            self.reader.buffer_position()
        ))
    }

    fn unexpected_eof(&self) -> EventParseError {
        self.malformed_here("unexpected end of document (unclosed element)")
    }

    /// Attributes are ignored but must be well-formed.
    #[inline]
    fn check_attrs(&self, start: &BytesStart<'_>) -> Result<(), EventParseError> {
        let raw = start.attributes_raw();
        if raw.is_empty() || xml_trim(raw).is_empty() {
            return Ok(());
        }
        for attr in start.attributes() {
            if attr.is_err() {
                return Err(self.malformed_here("invalid attribute"));
            }
        }
        Ok(())
    }

    /// Skips the rest of an element whose start tag was just read.
    fn skip(&mut self) -> Result<(), EventParseError> {
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Event::Start(e) => {
                    self.check_attrs(&e)?;
                    depth += 1;
                }
                Event::Empty(e) => self.check_attrs(&e)?,
                Event::End(_) => match depth.checked_sub(1) {
                    Some(d) => depth = d,
                    None => return Ok(()),
                },
                Event::GeneralRef(r) => {
                    resolve_ref(&r).map_err(|what| self.malformed_here(what))?;
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// Walks the children of the element whose start tag was just read.
    /// `on_child(walker, name, is_empty_tag)` returns `false` for elements it
    /// does not know; those are skipped. Text directly inside a structured
    /// element is ignored.
    fn children<F>(&mut self, mut on_child: F) -> Result<(), EventParseError>
    where
        F: FnMut(&mut Self, &str, bool) -> Result<bool, EventParseError>,
    {
        loop {
            match self.next()? {
                Event::Start(e) => {
                    self.check_attrs(&e)?;
                    if !on_child(self, e.name().0, false)? {
                        self.skip()?;
                    }
                }
                Event::Empty(e) => {
                    self.check_attrs(&e)?;
                    on_child(self, e.name().0, true)?;
                }
                Event::End(_) => return Ok(()),
                Event::GeneralRef(r) => {
                    resolve_ref(&r).map_err(|what| self.malformed_here(what))?;
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// Text content of a text-only element whose start tag was just read.
    /// CDATA and text are concatenated; XML whitespace at the outer edges of
    /// *bare text* is dropped (formatting), CDATA content is kept verbatim.
    /// `Ok(None)` if the element has child elements (the rest of it is then
    /// skipped).
    fn text(&mut self) -> Result<Option<Cow<'a, str>>, EventParseError> {
        let mut acc: Cow<'a, str> = Cow::Borrowed("");
        // Trailing whitespace of the last bare-text piece; dropped if the
        // element ends right after it.
        let mut pending: Cow<'a, str> = Cow::Borrowed("");
        let mut first = true;
        loop {
            let (piece, is_text) = match self.next()? {
                Event::Text(t) => (t.xml10_content(), true),
                Event::CData(c) => (c.xml10_content(), false),
                Event::GeneralRef(r) => (
                    resolve_ref(&r).map_err(|what| self.malformed_here(what))?,
                    false,
                ),
                Event::End(_) => return Ok(Some(acc)),
                Event::Start(e) => {
                    self.check_attrs(&e)?;
                    // Rest of the child, then rest of this element.
                    self.skip()?;
                    self.skip()?;
                    return Ok(None);
                }
                Event::Empty(e) => {
                    self.check_attrs(&e)?;
                    self.skip()?;
                    return Ok(None);
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => continue,
            };
            append(&mut acc, std::mem::take(&mut pending));
            let piece = if is_text && first {
                trim_start_cow(piece)
            } else {
                piece
            };
            first = false;
            if is_text {
                let (body, tail) = split_trailing_ws(piece);
                append(&mut acc, body);
                pending = tail;
            } else {
                append(&mut acc, piece);
            }
        }
    }

    /// Stores the text of a text-only element. A second occurrence or child
    /// elements are deferred schema problems (the first value is kept).
    fn leaf(
        &mut self,
        slot: &mut Txt<'a>,
        empty: bool,
        name: &'static str,
    ) -> Result<(), EventParseError> {
        if let Err(problem) = self.strict_leaf(slot, empty, name) {
            match problem {
                LeafProblem::Fatal(err) => return Err(err),
                LeafProblem::Schema(err) => self.defer(err),
            }
        }
        Ok(())
    }

    /// Like [`Walker::leaf`], but the caller decides what a schema problem
    /// means (header fields treat it as fatal).
    fn strict_leaf(
        &mut self,
        slot: &mut Txt<'a>,
        empty: bool,
        name: &'static str,
    ) -> Result<(), LeafProblem> {
        if slot.is_some() {
            if !empty {
                self.skip().map_err(LeafProblem::Fatal)?;
            }
            return Err(LeafProblem::Schema(duplicate(name)));
        }
        if empty {
            *slot = Some(Cow::Borrowed(""));
            return Ok(());
        }
        match self.text().map_err(LeafProblem::Fatal)? {
            Some(text) => {
                *slot = Some(text);
                Ok(())
            }
            None => Err(LeafProblem::Schema(EventParseError::Malformed(format!(
                "element {name} must contain text only"
            )))),
        }
    }

    /// Header field: any problem is fatal.
    fn header_leaf(
        &mut self,
        slot: &mut Txt<'a>,
        empty: bool,
        name: &'static str,
    ) -> Result<(), EventParseError> {
        self.strict_leaf(slot, empty, name)
            .map_err(|problem| match problem {
                LeafProblem::Fatal(err) | LeafProblem::Schema(err) => err,
            })
    }

    /// A structured element that may occur once: parsed into `slot` by
    /// `parse`; a repetition is a deferred schema problem and is skipped.
    fn single<T: Default>(
        &mut self,
        slot: &mut Option<T>,
        empty: bool,
        name: &'static str,
        parse: impl FnOnce(&mut Self, &mut T) -> Result<(), EventParseError>,
    ) -> Result<(), EventParseError> {
        if slot.is_some() {
            self.defer(duplicate(name));
            return if empty { Ok(()) } else { self.skip() };
        }
        let value = slot.insert(T::default());
        if empty { Ok(()) } else { parse(self, value) }
    }

    /// Every non-blank text run inside the element (including nested
    /// elements), trimmed. Used for `Attach` / `MediaIds`, whose exact shape
    /// is not pinned down by the docs.
    fn all_texts(&mut self, out: &mut Vec<Cow<'a, str>>) -> Result<(), EventParseError> {
        let mut depth = 0usize;
        let mut cur: Cow<'a, str> = Cow::Borrowed("");
        loop {
            match self.next()? {
                Event::Text(t) => append(&mut cur, t.xml10_content()),
                Event::CData(c) => append(&mut cur, c.xml10_content()),
                Event::GeneralRef(r) => {
                    let s = resolve_ref(&r).map_err(|what| self.malformed_here(what))?;
                    append(&mut cur, s);
                }
                Event::Start(e) => {
                    self.check_attrs(&e)?;
                    flush_trimmed(&mut cur, out);
                    depth += 1;
                }
                Event::Empty(e) => {
                    self.check_attrs(&e)?;
                    flush_trimmed(&mut cur, out);
                }
                Event::End(_) => {
                    flush_trimmed(&mut cur, out);
                    match depth.checked_sub(1) {
                        Some(d) => depth = d,
                        None => return Ok(()),
                    }
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// Parses the whole document: prolog, the `<xml>` root, epilog.
    fn document(mut self) -> Result<RawXml<'a>, EventParseError> {
        let mut raw = RawXml::default();
        loop {
            match self.next()? {
                Event::Start(e) => {
                    if e.name().0 != "xml" {
                        return Err(malformed("root element is not <xml>"));
                    }
                    self.check_attrs(&e)?;
                    self.root(&mut raw)?;
                    break;
                }
                Event::Empty(e) => {
                    if e.name().0 != "xml" {
                        return Err(malformed("root element is not <xml>"));
                    }
                    self.check_attrs(&e)?;
                    break;
                }
                Event::Text(t) if xml_trim(&t).is_empty() => {}
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => return Err(malformed("document has no root element")),
                _ => return Err(self.malformed_here("content before the root element")),
            }
        }
        loop {
            match self.next()? {
                Event::Eof => {
                    raw.schema_error = self.deferred;
                    return Ok(raw);
                }
                Event::Text(t) if xml_trim(&t).is_empty() => {}
                Event::PI(_) | Event::Comment(_) => {}
                _ => return Err(self.malformed_here("content after the root element")),
            }
        }
    }

    fn root(&mut self, out: &mut RawXml<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "ToUserName" => w.header_leaf(&mut out.to_user_name, empty, "ToUserName")?,
                "FromUserName" => w.header_leaf(&mut out.from_user_name, empty, "FromUserName")?,
                "CreateTime" => w.header_leaf(&mut out.create_time, empty, "CreateTime")?,
                "MsgType" => w.header_leaf(&mut out.msg_type, empty, "MsgType")?,
                "Event" => w.header_leaf(&mut out.event, empty, "Event")?,
                "AgentID" => w.header_leaf(&mut out.agent_id, empty, "AgentID")?,
                "ChangeType" => w.header_leaf(&mut out.change_type, empty, "ChangeType")?,
                "MsgId" => w.header_leaf(&mut out.msg_id, empty, "MsgId")?,
                "ApprovalInfo" => {
                    w.single(
                        &mut out.approval_info,
                        empty,
                        "ApprovalInfo",
                        Self::approval_info,
                    )?;
                }
                "UserID" => w.leaf(&mut out.user_id, empty, "UserID")?,
                "NewUserID" => w.leaf(&mut out.new_user_id, empty, "NewUserID")?,
                "Name" => w.leaf(&mut out.name, empty, "Name")?,
                "Department" => w.leaf(&mut out.department, empty, "Department")?,
                "MainDepartment" => w.leaf(&mut out.main_department, empty, "MainDepartment")?,
                "IsLeaderInDept" => w.leaf(&mut out.is_leader_in_dept, empty, "IsLeaderInDept")?,
                "DirectLeader" => w.leaf(&mut out.direct_leader, empty, "DirectLeader")?,
                "Position" => w.leaf(&mut out.position, empty, "Position")?,
                "Mobile" => w.leaf(&mut out.mobile, empty, "Mobile")?,
                "Gender" => w.leaf(&mut out.gender, empty, "Gender")?,
                "Email" => w.leaf(&mut out.email, empty, "Email")?,
                "BizMail" => w.leaf(&mut out.biz_mail, empty, "BizMail")?,
                "Status" => w.leaf(&mut out.status, empty, "Status")?,
                "Avatar" => w.leaf(&mut out.avatar, empty, "Avatar")?,
                "Alias" => w.leaf(&mut out.alias, empty, "Alias")?,
                "Telephone" => w.leaf(&mut out.telephone, empty, "Telephone")?,
                "Address" => w.leaf(&mut out.address, empty, "Address")?,
                "ExtAttr" => {
                    if !empty {
                        w.ext_attr(&mut out.ext_attr)?;
                    }
                }
                "Id" => w.leaf(&mut out.id, empty, "Id")?,
                "ParentId" => w.leaf(&mut out.parent_id, empty, "ParentId")?,
                "Order" => w.leaf(&mut out.order, empty, "Order")?,
                "TagId" => w.leaf(&mut out.tag_id, empty, "TagId")?,
                "AddUserItems" => w.leaf(&mut out.add_user_items, empty, "AddUserItems")?,
                "DelUserItems" => w.leaf(&mut out.del_user_items, empty, "DelUserItems")?,
                "AddPartyItems" => w.leaf(&mut out.add_party_items, empty, "AddPartyItems")?,
                "DelPartyItems" => w.leaf(&mut out.del_party_items, empty, "DelPartyItems")?,
                "ExternalUserID" => w.leaf(&mut out.external_user_id, empty, "ExternalUserID")?,
                "State" => w.leaf(&mut out.state, empty, "State")?,
                "WelcomeCode" => w.leaf(&mut out.welcome_code, empty, "WelcomeCode")?,
                "Source" => w.leaf(&mut out.source, empty, "Source")?,
                "FailReason" => w.leaf(&mut out.fail_reason, empty, "FailReason")?,
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn approval_info(&mut self, out: &mut RawApprovalInfo<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "SpNoStr" => w.leaf(&mut out.sp_no_str, empty, "SpNoStr")?,
                "SpNo" => w.leaf(&mut out.sp_no, empty, "SpNo")?,
                "SpName" => w.leaf(&mut out.sp_name, empty, "SpName")?,
                "SpStatus" => w.leaf(&mut out.sp_status, empty, "SpStatus")?,
                "TemplateId" => w.leaf(&mut out.template_id, empty, "TemplateId")?,
                "ApplyTime" => w.leaf(&mut out.apply_time, empty, "ApplyTime")?,
                "Applyer" => w.single(&mut out.applyer, empty, "Applyer", Self::applyer)?,
                "SpRecord" => {
                    let mut record = RawSpRecord::default();
                    if !empty {
                        w.sp_record(&mut record)?;
                    }
                    out.sp_record.push(record);
                }
                "Notifyer" => {
                    let mut user = None;
                    if !empty {
                        w.user(&mut user)?;
                    }
                    out.notifyer.push(user);
                }
                "Comments" => {
                    let mut comment = RawComment::default();
                    if !empty {
                        w.comment(&mut comment)?;
                    }
                    out.comments.push(comment);
                }
                "ProcessList" => {
                    if !empty {
                        w.process_list(&mut out.process_list)?;
                    }
                }
                "StatuChangeEvent" => {
                    w.leaf(&mut out.statu_change_event, empty, "StatuChangeEvent")?;
                }
                "ThirdNo" => w.leaf(&mut out.third_no, empty, "ThirdNo")?,
                "OpenSpName" => w.leaf(&mut out.open_sp_name, empty, "OpenSpName")?,
                "OpenTemplateId" => w.leaf(&mut out.open_template_id, empty, "OpenTemplateId")?,
                "OpenSpStatus" => w.leaf(&mut out.open_sp_status, empty, "OpenSpStatus")?,
                "ApplyUserName" => w.leaf(&mut out.apply_user_name, empty, "ApplyUserName")?,
                "ApplyUserId" => w.leaf(&mut out.apply_user_id, empty, "ApplyUserId")?,
                "ApplyUserParty" => w.leaf(&mut out.apply_user_party, empty, "ApplyUserParty")?,
                "ApplyUserImage" => w.leaf(&mut out.apply_user_image, empty, "ApplyUserImage")?,
                "ApprovalNodes" => {
                    if !empty {
                        w.approval_nodes(&mut out.approval_nodes)?;
                    }
                }
                "NotifyNodes" => {
                    if !empty {
                        w.notify_nodes(&mut out.notify_nodes)?;
                    }
                }
                "approverstep" => w.leaf(&mut out.approver_step, empty, "approverstep")?,
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn applyer(&mut self, out: &mut RawApplyer<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "UserId" => w.leaf(&mut out.user_id, empty, "Applyer/UserId")?,
                "Party" => w.leaf(&mut out.party, empty, "Applyer/Party")?,
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    /// An element whose only interesting child is `<UserId>`.
    fn user(&mut self, out: &mut Txt<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| match name {
            "UserId" => w.leaf(out, empty, "UserId").map(|()| true),
            _ => Ok(false),
        })
    }

    fn sp_record(&mut self, out: &mut RawSpRecord<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "SpStatus" => w.leaf(&mut out.sp_status, empty, "SpRecord/SpStatus")?,
                "ApproverAttr" => w.leaf(&mut out.approver_attr, empty, "SpRecord/ApproverAttr")?,
                "Details" => {
                    let mut detail = RawDetail::default();
                    if !empty {
                        w.detail(&mut detail)?;
                    }
                    out.details.push(detail);
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn detail(&mut self, out: &mut RawDetail<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "Approver" => w.single(&mut out.approver, empty, "Details/Approver", Self::user)?,
                "Speech" => w.leaf(&mut out.speech, empty, "Details/Speech")?,
                "SpStatus" => w.leaf(&mut out.sp_status, empty, "Details/SpStatus")?,
                "SpTime" => w.leaf(&mut out.sp_time, empty, "Details/SpTime")?,
                "Attach" => {
                    if !empty {
                        w.all_texts(&mut out.attach)?;
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn comment(&mut self, out: &mut RawComment<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "CommentUserInfo" => {
                    w.single(&mut out.user, empty, "Comments/CommentUserInfo", Self::user)?;
                }
                "CommentTime" => w.leaf(&mut out.time, empty, "Comments/CommentTime")?,
                "CommentContent" => w.leaf(&mut out.content, empty, "Comments/CommentContent")?,
                "CommentId" => w.leaf(&mut out.comment_id, empty, "Comments/CommentId")?,
                "Attach" => {
                    if !empty {
                        w.all_texts(&mut out.attach)?;
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn process_list(&mut self, out: &mut Vec<RawNode<'a>>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            if name != "NodeList" {
                return Ok(false);
            }
            let mut node = RawNode::default();
            if !empty {
                w.node(&mut node)?;
            }
            out.push(node);
            Ok(true)
        })
    }

    fn node(&mut self, out: &mut RawNode<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "NodeType" => w.leaf(&mut out.node_type, empty, "NodeList/NodeType")?,
                "SpStatus" => w.leaf(&mut out.sp_status, empty, "NodeList/SpStatus")?,
                "ApvRel" => w.leaf(&mut out.apv_rel, empty, "NodeList/ApvRel")?,
                "SubNodeList" => {
                    let mut sub = RawSubNode::default();
                    if !empty {
                        w.sub_node(&mut sub)?;
                    }
                    out.sub_node_list.push(sub);
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn sub_node(&mut self, out: &mut RawSubNode<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "UserInfo" => w.single(&mut out.user, empty, "SubNodeList/UserInfo", Self::user)?,
                "Speech" => w.leaf(&mut out.speech, empty, "SubNodeList/Speech")?,
                "SpYj" => w.leaf(&mut out.sp_yj, empty, "SubNodeList/SpYj")?,
                "Sptime" => w.leaf(&mut out.sp_time, empty, "SubNodeList/Sptime")?,
                "MediaIds" => {
                    if !empty {
                        w.all_texts(&mut out.media_ids)?;
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    /// `<ApprovalNodes>`: its `ApprovalNode` children are appended.
    fn approval_nodes(
        &mut self,
        out: &mut Vec<RawApprovalNode<'a>>,
    ) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            if name != "ApprovalNode" {
                return Ok(false);
            }
            let mut node = RawApprovalNode::default();
            if !empty {
                w.approval_node(&mut node)?;
            }
            out.push(node);
            Ok(true)
        })
    }

    fn approval_node(&mut self, out: &mut RawApprovalNode<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "NodeStatus" => w.leaf(&mut out.node_status, empty, "ApprovalNode/NodeStatus")?,
                "NodeAttr" => w.leaf(&mut out.node_attr, empty, "ApprovalNode/NodeAttr")?,
                "NodeType" => w.leaf(&mut out.node_type, empty, "ApprovalNode/NodeType")?,
                "Items" => {
                    if !empty {
                        w.items(&mut out.items)?;
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn items(&mut self, out: &mut Vec<RawItem<'a>>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            if name != "Item" {
                return Ok(false);
            }
            let mut item = RawItem::default();
            if !empty {
                w.item(&mut item)?;
            }
            out.push(item);
            Ok(true)
        })
    }

    fn notify_nodes(&mut self, out: &mut Vec<RawItem<'a>>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            if name != "NotifyNode" {
                return Ok(false);
            }
            let mut item = RawItem::default();
            if !empty {
                w.item(&mut item)?;
            }
            out.push(item);
            Ok(true)
        })
    }

    /// `<Item>` of an approval node and `<NotifyNode>` (same child names).
    fn item(&mut self, out: &mut RawItem<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "ItemName" => w.leaf(&mut out.name, empty, "ItemName")?,
                "ItemUserId" | "ItemUserid" => w.leaf(&mut out.user_id, empty, "ItemUserId")?,
                "ItemImage" => w.leaf(&mut out.image, empty, "ItemImage")?,
                "ItemStatus" => w.leaf(&mut out.status, empty, "ItemStatus")?,
                "ItemSpeech" => w.leaf(&mut out.speech, empty, "ItemSpeech")?,
                "ItemOpTime" => w.leaf(&mut out.op_time, empty, "ItemOpTime")?,
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn ext_attr(&mut self, out: &mut Vec<RawExtAttrItem<'a>>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            if name != "Item" {
                return Ok(false);
            }
            let mut item = RawExtAttrItem::default();
            if !empty {
                w.ext_attr_item(&mut item)?;
            }
            out.push(item);
            Ok(true)
        })
    }

    fn ext_attr_item(&mut self, out: &mut RawExtAttrItem<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "Name" => w.leaf(&mut out.name, empty, "ExtAttr/Item/Name")?,
                "Type" => w.leaf(&mut out.attr_type, empty, "ExtAttr/Item/Type")?,
                "Text" => {
                    if !empty {
                        w.children(|w, name, empty| match name {
                            "Value" => w
                                .leaf(&mut out.text_value, empty, "ExtAttr/Item/Text/Value")
                                .map(|()| true),
                            _ => Ok(false),
                        })?;
                    }
                }
                "Web" => {
                    if !empty {
                        w.children(|w, name, empty| {
                            match name {
                                "Title" => {
                                    w.leaf(&mut out.web_title, empty, "ExtAttr/Item/Web/Title")?
                                }
                                "Url" => w.leaf(&mut out.web_url, empty, "ExtAttr/Item/Web/Url")?,
                                _ => return Ok(false),
                            }
                            Ok(true)
                        })?;
                    }
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
    }
}

/// Outcome of a failed [`Walker::strict_leaf`].
enum LeafProblem {
    /// Not well-formed / DOCTYPE: parsing cannot continue.
    Fatal(EventParseError),
    /// Repeated element or child elements; the element has been consumed.
    Schema(EventParseError),
}

fn duplicate(name: &'static str) -> EventParseError {
    EventParseError::Malformed(format!("element {name} occurs more than once"))
}

/// Resolves `&…;`: character references and the five predefined entities
/// only. Anything else is an error (no DTD, so nothing else can be defined).
fn resolve_ref<'a>(r: &BytesRef<'_>) -> Result<Cow<'a, str>, &'static str> {
    match r.resolve_char_ref() {
        Ok(Some(c)) => Ok(Cow::Owned(c.to_string())),
        Ok(None) => resolve_predefined_entity(r)
            .map(Cow::Borrowed)
            .ok_or("unknown entity reference (only the predefined XML entities are allowed)"),
        Err(_) => Err("invalid character reference"),
    }
}

/// Payload-free description of a quick-xml reader error.
fn describe_xml_error(err: &XmlError) -> Cow<'static, str> {
    match err {
        // SyntaxError messages are fixed strings.
        XmlError::Syntax(s) => Cow::Owned(format!("XML syntax error: {s}")),
        XmlError::IllFormed(IllFormedError::MismatchedEndTag { .. }) => {
            Cow::Borrowed("ill-formed XML: mismatched end tag")
        }
        XmlError::IllFormed(IllFormedError::UnmatchedEndTag(_)) => {
            Cow::Borrowed("ill-formed XML: end tag without start tag")
        }
        XmlError::IllFormed(IllFormedError::MissingEndTag(_)) => {
            Cow::Borrowed("ill-formed XML: missing end tag")
        }
        XmlError::IllFormed(IllFormedError::UnclosedReference) => {
            Cow::Borrowed("ill-formed XML: `&` without a terminating `;`")
        }
        XmlError::IllFormed(_) => Cow::Borrowed("ill-formed XML"),
        XmlError::Escape(_) => Cow::Borrowed("invalid character or entity reference"),
        XmlError::Encoding(_) => Cow::Borrowed("invalid text encoding"),
        XmlError::InvalidAttr(_) => Cow::Borrowed("invalid attribute"),
        XmlError::Namespace(_) => Cow::Borrowed("invalid namespace declaration"),
        XmlError::Io(_) => Cow::Borrowed("I/O error while reading XML"),
    }
}

/// XML whitespace (space, tab, CR, LF); other Unicode spaces are content.
fn is_xml_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn xml_trim(s: &str) -> &str {
    s.trim_matches(is_xml_ws)
}

/// Appends `piece` to `acc`, borrowing as long as only one piece is non-empty.
fn append<'a>(acc: &mut Cow<'a, str>, piece: Cow<'a, str>) {
    if piece.is_empty() {
    } else if acc.is_empty() {
        *acc = piece;
    } else {
        acc.to_mut().push_str(&piece);
    }
}

fn trim_start_cow(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim_start_matches(is_xml_ws)),
        Cow::Owned(o) => Cow::Owned(o.trim_start_matches(is_xml_ws).to_owned()),
    }
}

/// Splits off trailing XML whitespace: `(body, tail)`.
fn split_trailing_ws(s: Cow<'_, str>) -> (Cow<'_, str>, Cow<'_, str>) {
    let body_len = s.trim_end_matches(is_xml_ws).len();
    match s {
        Cow::Borrowed(b) => {
            let (body, tail) = b.split_at(body_len);
            (Cow::Borrowed(body), Cow::Borrowed(tail))
        }
        Cow::Owned(mut o) => {
            let tail = o.split_off(body_len);
            (Cow::Owned(o), Cow::Owned(tail))
        }
    }
}

/// Moves the trimmed, non-blank content of `cur` into `out`.
fn flush_trimmed<'a>(cur: &mut Cow<'a, str>, out: &mut Vec<Cow<'a, str>>) {
    match std::mem::take(cur) {
        Cow::Borrowed(b) => {
            let t = xml_trim(b);
            if !t.is_empty() {
                out.push(Cow::Borrowed(t));
            }
        }
        Cow::Owned(o) => {
            let t = xml_trim(&o);
            if !t.is_empty() {
                out.push(Cow::Owned(t.to_owned()));
            }
        }
    }
}

/// Root `<xml>`: union of the fields of every event we type.
#[derive(Default)]
struct RawXml<'a> {
    /// First deferred schema problem, see [`Walker`].
    schema_error: Option<EventParseError>,
    to_user_name: Txt<'a>,
    from_user_name: Txt<'a>,
    create_time: Txt<'a>,
    msg_type: Txt<'a>,
    event: Txt<'a>,
    agent_id: Txt<'a>,
    change_type: Txt<'a>,
    msg_id: Txt<'a>,
    approval_info: Option<RawApprovalInfo<'a>>,
    user_id: Txt<'a>,
    new_user_id: Txt<'a>,
    name: Txt<'a>,
    department: Txt<'a>,
    main_department: Txt<'a>,
    is_leader_in_dept: Txt<'a>,
    direct_leader: Txt<'a>,
    position: Txt<'a>,
    mobile: Txt<'a>,
    gender: Txt<'a>,
    email: Txt<'a>,
    biz_mail: Txt<'a>,
    status: Txt<'a>,
    avatar: Txt<'a>,
    alias: Txt<'a>,
    telephone: Txt<'a>,
    address: Txt<'a>,
    ext_attr: Vec<RawExtAttrItem<'a>>,
    id: Txt<'a>,
    parent_id: Txt<'a>,
    order: Txt<'a>,
    tag_id: Txt<'a>,
    add_user_items: Txt<'a>,
    del_user_items: Txt<'a>,
    add_party_items: Txt<'a>,
    del_party_items: Txt<'a>,
    external_user_id: Txt<'a>,
    state: Txt<'a>,
    welcome_code: Txt<'a>,
    source: Txt<'a>,
    fail_reason: Txt<'a>,
}

/// `<ApprovalInfo>`: union of sys_approval_change and open_approval_change fields.
#[derive(Default)]
struct RawApprovalInfo<'a> {
    sp_no_str: Txt<'a>,
    sp_no: Txt<'a>,
    sp_name: Txt<'a>,
    sp_status: Txt<'a>,
    template_id: Txt<'a>,
    apply_time: Txt<'a>,
    applyer: Option<RawApplyer<'a>>,
    sp_record: Vec<RawSpRecord<'a>>,
    /// `Notifyer/UserId` per `Notifyer` element.
    notifyer: Vec<Txt<'a>>,
    comments: Vec<RawComment<'a>>,
    process_list: Vec<RawNode<'a>>,
    statu_change_event: Txt<'a>,
    third_no: Txt<'a>,
    open_sp_name: Txt<'a>,
    open_template_id: Txt<'a>,
    open_sp_status: Txt<'a>,
    apply_user_name: Txt<'a>,
    apply_user_id: Txt<'a>,
    apply_user_party: Txt<'a>,
    apply_user_image: Txt<'a>,
    approval_nodes: Vec<RawApprovalNode<'a>>,
    notify_nodes: Vec<RawItem<'a>>,
    approver_step: Txt<'a>,
}

#[derive(Default)]
struct RawApplyer<'a> {
    user_id: Txt<'a>,
    party: Txt<'a>,
}

#[derive(Default)]
struct RawSpRecord<'a> {
    sp_status: Txt<'a>,
    approver_attr: Txt<'a>,
    details: Vec<RawDetail<'a>>,
}

#[derive(Default)]
struct RawDetail<'a> {
    /// `Some` once `<Approver>` was seen; inner value is its `UserId`.
    approver: Option<Txt<'a>>,
    speech: Txt<'a>,
    sp_status: Txt<'a>,
    sp_time: Txt<'a>,
    attach: Vec<Cow<'a, str>>,
}

#[derive(Default)]
struct RawComment<'a> {
    /// `CommentUserInfo/UserId`.
    user: Option<Txt<'a>>,
    time: Txt<'a>,
    content: Txt<'a>,
    comment_id: Txt<'a>,
    attach: Vec<Cow<'a, str>>,
}

#[derive(Default)]
struct RawNode<'a> {
    node_type: Txt<'a>,
    sp_status: Txt<'a>,
    apv_rel: Txt<'a>,
    sub_node_list: Vec<RawSubNode<'a>>,
}

#[derive(Default)]
struct RawSubNode<'a> {
    /// `UserInfo/UserId`.
    user: Option<Txt<'a>>,
    speech: Txt<'a>,
    sp_yj: Txt<'a>,
    sp_time: Txt<'a>,
    media_ids: Vec<Cow<'a, str>>,
}

#[derive(Default)]
struct RawApprovalNode<'a> {
    node_status: Txt<'a>,
    node_attr: Txt<'a>,
    node_type: Txt<'a>,
    items: Vec<RawItem<'a>>,
}

/// `<Items><Item>` and `<NotifyNode>`.
#[derive(Default)]
struct RawItem<'a> {
    name: Txt<'a>,
    user_id: Txt<'a>,
    image: Txt<'a>,
    status: Txt<'a>,
    speech: Txt<'a>,
    op_time: Txt<'a>,
}

#[derive(Default)]
struct RawExtAttrItem<'a> {
    name: Txt<'a>,
    attr_type: Txt<'a>,
    text_value: Txt<'a>,
    web_title: Txt<'a>,
    web_url: Txt<'a>,
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

/// Free text as sent; `None` if the element is absent.
fn text(t: Txt<'_>) -> Option<String> {
    t.map(Cow::into_owned)
}

/// Identifier-like value: trimmed; `None` if absent or blank.
fn token(t: Txt<'_>) -> Option<String> {
    t.and_then(|t| {
        let s = xml_trim(&t);
        (!s.is_empty()).then(|| s.to_owned())
    })
}

/// Required identifier-like value.
fn req_token(t: Txt<'_>, path: &'static str) -> Result<String, EventParseError> {
    token(t).ok_or_else(|| malformed(format!("{path} is missing or empty")))
}

/// Optional integer, whitespace around it allowed; absent or blank → `None`.
fn num<T: FromStr>(t: &Txt<'_>, path: &'static str) -> Result<Option<T>, EventParseError> {
    let Some(t) = t else { return Ok(None) };
    let s = xml_trim(t);
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| malformed(format!("{path} is not a valid integer")))
}

/// Required integer.
fn req_num<T: FromStr>(t: &Txt<'_>, path: &'static str) -> Result<T, EventParseError> {
    num(t, path)?.ok_or_else(|| malformed(format!("{path} is missing or empty")))
}

/// Owned copies of already trimmed, non-blank text runs.
fn texts(list: Vec<Cow<'_, str>>) -> Vec<String> {
    list.into_iter().map(Cow::into_owned).collect()
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
    let kind = match header.event.as_deref() {
        Some(EV_SYS_APPROVAL) => EventKind::ApprovalChange,
        Some(EV_OPEN_APPROVAL) => EventKind::OpenApprovalChange,
        Some(EV_CONTACT) => EventKind::ContactChange,
        Some(EV_EXTERNAL_CONTACT) => EventKind::ExternalContactChange,
        _ => EventKind::Other,
    };
    // Schema problems in fields an `Other` event does not use are ignored.
    if kind != EventKind::Other
        && let Some(err) = raw.schema_error.take()
    {
        return Err(err);
    }
    match kind {
        EventKind::ApprovalChange => build_approval(header, raw).map(InboundEvent::ApprovalChange),
        EventKind::OpenApprovalChange => {
            build_open_approval(header, raw).map(InboundEvent::OpenApprovalChange)
        }
        EventKind::ContactChange => build_contact(header, raw).map(InboundEvent::ContactChange),
        EventKind::ExternalContactChange => {
            build_external_contact(header, raw).map(InboundEvent::ExternalContactChange)
        }
        EventKind::Other => Ok(InboundEvent::Other(OtherEvent {
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
                        approver_user_id: token(d.approver.flatten()),
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

    let notifyers = info.notifyer.into_iter().filter_map(token).collect();

    let comments = info
        .comments
        .into_iter()
        .map(|c| {
            Ok(Comment {
                time: num(&c.time, "Comments/CommentTime")?,
                user_id: token(c.user.flatten()),
                content: text(c.content),
                comment_id: token(c.comment_id),
                attach: texts(c.attach),
            })
        })
        .collect::<Result<Vec<_>, EventParseError>>()?;

    let process_nodes = info
        .process_list
        .into_iter()
        .map(|n| {
            let sub_nodes = n
                .sub_node_list
                .into_iter()
                .map(|s| {
                    Ok(ProcessSubNode {
                        sp_yj: num(&s.sp_yj, "NodeList/SubNodeList/SpYj")?,
                        sp_time: num(&s.sp_time, "NodeList/SubNodeList/Sptime")?,
                        user_id: token(s.user.flatten()),
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
        .into_iter()
        .map(|n| {
            let items = n
                .items
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
            d.split(',')
                .map(xml_trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let ext_attr = raw
        .ext_attr
        .into_iter()
        .map(|i| {
            Ok(ExtAttrItem {
                attr_type: num(&i.attr_type, "ExtAttr/Item/Type")?,
                name: text(i.name),
                text_value: text(i.text_value),
                web_title: text(i.web_title),
                web_url: token(i.web_url),
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

#[cfg(test)]
mod tests {
    use super::*;

    // Plaintexts copied verbatim from /work/shared/wecom/vectors.json
    // (`vectors[*].expected.plaintext`, and `decrypts_to.plaintext` of
    // `neg_wrong_receiveid`).
    /// Vector `official_python_sample_url_verification`.
    const OFFICIAL_PYTHON_SAMPLE_URL_VERIFICATION: &str = r#"1288432023552776189"#;
    /// Vector `official_python_sample_post`.
    const OFFICIAL_PYTHON_SAMPLE_POST: &str = r#"<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName><CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content><MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>"#;
    /// Vector `official_doc_sample_url_verification`.
    const OFFICIAL_DOC_SAMPLE_URL_VERIFICATION: &str = r#"1616140317555161061"#;
    /// Vector `official_doc_sample_post`.
    const OFFICIAL_DOC_SAMPLE_POST: &str = r#"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>
<FromUserName><![CDATA[mycreate]]></FromUserName>
<CreateTime>1409659813</CreateTime>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[hello]]></Content>
<MsgId>4561255354251345929</MsgId>
<AgentID>218</AgentID>
</xml>"#;
    /// Vector `bridge_url_verification`.
    const BRIDGE_URL_VERIFICATION: &str = r#"8342197503318469025"#;
    /// Vector `approval_approved`.
    const APPROVAL_APPROVED: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749106583</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[sys_approval_change]]></Event><AgentID>3010040</AgentID><ApprovalInfo><SpNoStr><![CDATA[202506050012]]></SpNoStr><SpNo>202506050012</SpNo><SpName><![CDATA[费用报销]]></SpName><SpStatus>2</SpStatus><TemplateId><![CDATA[C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT]]></TemplateId><ApplyTime>1749021127</ApplyTime><Applyer><UserId><![CDATA[ZhangSan]]></UserId><Party><![CDATA[5]]></Party></Applyer><SpRecord><SpStatus>2</SpStatus><ApproverAttr>1</ApproverAttr><Details><Approver><UserId><![CDATA[LiSi]]></UserId></Approver><Speech><![CDATA[同意，按差旅标准报销]]></Speech><SpStatus>2</SpStatus><SpTime>1749063390</SpTime></Details></SpRecord><SpRecord><SpStatus>2</SpStatus><ApproverAttr>2</ApproverAttr><Details><Approver><UserId><![CDATA[ChenCaiWu]]></UserId></Approver><Speech><![CDATA[]]></Speech><SpStatus>2</SpStatus><SpTime>1749106582</SpTime></Details><Details><Approver><UserId><![CDATA[ZhaoKuaiJi]]></UserId></Approver><Speech><![CDATA[票据齐全]]></Speech><SpStatus>2</SpStatus><SpTime>1749105001</SpTime></Details></SpRecord><Notifyer><UserId><![CDATA[WangWu]]></UserId></Notifyer><ProcessList><NodeList><NodeType>1</NodeType><SpStatus>2</SpStatus><ApvRel>2</ApvRel><SubNodeList><UserInfo><UserId><![CDATA[LiSi]]></UserId></UserInfo><Speech><![CDATA[同意，按差旅标准报销]]></Speech><SpYj>2</SpYj><Sptime>1749063390</Sptime></SubNodeList></NodeList><NodeList><NodeType>1</NodeType><SpStatus>2</SpStatus><ApvRel>1</ApvRel><SubNodeList><UserInfo><UserId><![CDATA[ChenCaiWu]]></UserId></UserInfo><Speech><![CDATA[]]></Speech><SpYj>2</SpYj><Sptime>1749106582</Sptime></SubNodeList><SubNodeList><UserInfo><UserId><![CDATA[ZhaoKuaiJi]]></UserId></UserInfo><Speech><![CDATA[票据齐全]]></Speech><SpYj>2</SpYj><Sptime>1749105001</Sptime></SubNodeList></NodeList><NodeList><NodeType>2</NodeType><SubNodeList><UserInfo><UserId><![CDATA[WangWu]]></UserId></UserInfo></SubNodeList></NodeList></ProcessList><StatuChangeEvent>2</StatuChangeEvent></ApprovalInfo></xml>"#;
    /// Vector `approval_rejected`.
    const APPROVAL_REJECTED: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749110402</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[sys_approval_change]]></Event><AgentID>3010040</AgentID><ApprovalInfo><SpNoStr><![CDATA[202506050019]]></SpNoStr><SpNo>202506050019</SpNo><SpName><![CDATA[采购申请]]></SpName><SpStatus>3</SpStatus><TemplateId><![CDATA[3WLJF6naF5jhnXvwisuPmE85wVMYcy1S1ZvYibkw]]></TemplateId><ApplyTime>1749108811</ApplyTime><Applyer><UserId><![CDATA[ZhouBa]]></UserId><Party><![CDATA[12]]></Party></Applyer><SpRecord><SpStatus>3</SpStatus><ApproverAttr>1</ApproverAttr><Details><Approver><UserId><![CDATA[LiSi]]></UserId></Approver><Speech><![CDATA[驳回：预算超标 <超出 15%> & 缺少比价单]]></Speech><SpStatus>3</SpStatus><SpTime>1749110401</SpTime></Details></SpRecord><Notifyer><UserId><![CDATA[WangWu]]></UserId></Notifyer><Comments><CommentUserInfo><UserId><![CDATA[LiSi]]></UserId></CommentUserInfo><CommentTime>1749110390</CommentTime><CommentContent><![CDATA[请补充三家供应商报价]]></CommentContent><CommentId><![CDATA[7512099317736620104]]></CommentId></Comments><StatuChangeEvent>3</StatuChangeEvent></ApprovalInfo></xml>"#;
    /// Vector `approval_revoked_after_pass`.
    const APPROVAL_REVOKED_AFTER_PASS: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749200001</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[sys_approval_change]]></Event><AgentID>3010040</AgentID><ApprovalInfo><SpNoStr><![CDATA[202506050012]]></SpNoStr><SpNo>202506050012</SpNo><SpName><![CDATA[费用报销]]></SpName><SpStatus>6</SpStatus><TemplateId><![CDATA[C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT]]></TemplateId><ApplyTime>1749021127</ApplyTime><Applyer><UserId><![CDATA[ZhangSan]]></UserId><Party><![CDATA[5]]></Party></Applyer><StatuChangeEvent>8</StatuChangeEvent></ApprovalInfo></xml>"#;
    /// Vector `contact_create_user`.
    const CONTACT_CREATE_USER: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749123456</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event><ChangeType>create_user</ChangeType><UserID><![CDATA[SunQi]]></UserID><Name><![CDATA[孙七]]></Name><Department><![CDATA[5,12]]></Department><MainDepartment>5</MainDepartment><IsLeaderInDept><![CDATA[0,0]]></IsLeaderInDept><DirectLeader><![CDATA[LiSi]]></DirectLeader><Position><![CDATA[财务专员]]></Position><Mobile>13800000007</Mobile><Gender>2</Gender><Email><![CDATA[sunqi@example.com]]></Email><BizMail><![CDATA[sunqi@example.wecom.work]]></BizMail><Status>4</Status><Avatar><![CDATA[http://wework.qpic.cn/wwhead/example/0]]></Avatar><Alias><![CDATA[Qi Sun]]></Alias><Telephone><![CDATA[021-12345678]]></Telephone><Address><![CDATA[上海市浦东新区]]></Address><ExtAttr><Item><Name><![CDATA[工号]]></Name><Type>0</Type><Text><Value><![CDATA[E10086]]></Value></Text></Item></ExtAttr></xml>"#;
    /// Vector `external_contact_add`.
    const EXTERNAL_CONTACT_ADD: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749130000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[ZhangSan]]></UserID><ExternalUserID><![CDATA[wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw]]></ExternalUserID><State><![CDATA[expo2025_booth_b12]]></State><WelcomeCode><![CDATA[CCy4aXTdhVKeCLXcBsAYzyBdhd-2eZ_UnYR8j2q-LgQ]]></WelcomeCode></xml>"#;
    /// Vector `text_message_multibyte`.
    const TEXT_MESSAGE_MULTIBYTE: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[ZhangSan]]></FromUserName><CreateTime>1749131313</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[报销单 202506050012 已通过，请财务尽快付款 💰 金额：¥1,280.50（含税）]]></Content><MsgId>7512345678901234567</MsgId><AgentID>1000005</AgentID></xml>"#;
    /// Vector `open_approval_change`.
    const OPEN_APPROVAL_CHANGE: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749140000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[open_approval_change]]></Event><AgentID>1000005</AgentID><ApprovalInfo><ThirdNo><![CDATA[ERP-PO-20250605-0042]]></ThirdNo><OpenSpName><![CDATA[付款申请]]></OpenSpName><OpenTemplateId><![CDATA[b6d2e0a3c1f84e7f9a0b]]></OpenTemplateId><OpenSpStatus>2</OpenSpStatus><ApplyTime>1749139000</ApplyTime><ApplyUserName><![CDATA[张三]]></ApplyUserName><ApplyUserId><![CDATA[ZhangSan]]></ApplyUserId><ApplyUserParty><![CDATA[财务部]]></ApplyUserParty><ApplyUserImage><![CDATA[http://wework.qpic.cn/wwhead/example/0]]></ApplyUserImage><ApprovalNodes><ApprovalNode><NodeStatus>2</NodeStatus><NodeAttr>1</NodeAttr><NodeType>1</NodeType><Items><Item><ItemName><![CDATA[李四]]></ItemName><ItemUserId><![CDATA[LiSi]]></ItemUserId><ItemImage><![CDATA[http://wework.qpic.cn/wwhead/example/0]]></ItemImage><ItemStatus>2</ItemStatus><ItemSpeech><![CDATA[同意]]></ItemSpeech><ItemOpTime>1749139990</ItemOpTime></Item></Items></ApprovalNode></ApprovalNodes><NotifyNodes><NotifyNode><ItemName><![CDATA[王五]]></ItemName><ItemUserId><![CDATA[WangWu]]></ItemUserId><ItemImage><![CDATA[http://wework.qpic.cn/wwhead/example/0]]></ItemImage></NotifyNode></NotifyNodes><approverstep>0</approverstep></ApprovalInfo></xml>"#;
    /// Vector `batch_job_result`.
    const BATCH_JOB_RESULT: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749150000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[batch_job_result]]></Event><BatchJob><JobId><![CDATA[jobid_S0MrnndvRG5fadSlLwiBqiDDbM143UqTmKP3152FZk4]]></JobId><JobType><![CDATA[sync_user]]></JobType><ErrCode>0</ErrCode><ErrMsg><![CDATA[ok]]></ErrMsg></BatchJob></xml>"#;
    /// Vector `edge_full_pad_block`.
    const EDGE_FULL_PAD_BLOCK: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[LiSi]]></FromUserName><CreateTime>1749160000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[pad-test-x]]></Content><MsgId>7512345678901239999</MsgId><AgentID>1000005</AgentID></xml>"#;
    /// Vector `passive_reply_text`.
    const PASSIVE_REPLY_TEXT: &str = r#"<xml><ToUserName><![CDATA[ZhangSan]]></ToUserName><FromUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></FromUserName><CreateTime>1749131314</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[已收到，单据 202506050012 已推送至财务系统]]></Content></xml>"#;
    /// Vector `neg_wrong_receiveid`.
    const NEG_WRONG_RECEIVEID: &str = r#"<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749150000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[batch_job_result]]></Event><BatchJob><JobId><![CDATA[jobid_S0MrnndvRG5fadSlLwiBqiDDbM143UqTmKP3152FZk4]]></JobId><JobType><![CDATA[sync_user]]></JobType><ErrCode>0</ErrCode><ErrMsg><![CDATA[ok]]></ErrMsg></BatchJob></xml>"#;
    /// The `approval_approved` example as printed (indented) in PROTOCOL.md §3.1.
    const APPROVAL_APPROVED_PRETTY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- pretty-printed copy of vector approval_approved -->
<xml>
  <ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1749106583</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[sys_approval_change]]></Event>
  <AgentID>3010040</AgentID>
  <ApprovalInfo>
    <SpNoStr><![CDATA[202506050012]]></SpNoStr>
    <SpNo>202506050012</SpNo>
    <SpName><![CDATA[费用报销]]></SpName>
    <SpStatus>2</SpStatus>
    <TemplateId><![CDATA[C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT]]></TemplateId>
    <ApplyTime>1749021127</ApplyTime>
    <Applyer><UserId><![CDATA[ZhangSan]]></UserId><Party><![CDATA[5]]></Party></Applyer>
    <SpRecord>
      <SpStatus>2</SpStatus><ApproverAttr>1</ApproverAttr>
      <Details><Approver><UserId><![CDATA[LiSi]]></UserId></Approver>
        <Speech><![CDATA[同意，按差旅标准报销]]></Speech><SpStatus>2</SpStatus><SpTime>1749063390</SpTime></Details>
    </SpRecord>
    <SpRecord>
      <SpStatus>2</SpStatus><ApproverAttr>2</ApproverAttr>
      <Details><Approver><UserId><![CDATA[ChenCaiWu]]></UserId></Approver>
        <Speech><![CDATA[]]></Speech><SpStatus>2</SpStatus><SpTime>1749106582</SpTime></Details>
      <Details><Approver><UserId><![CDATA[ZhaoKuaiJi]]></UserId></Approver>
        <Speech><![CDATA[票据齐全]]></Speech><SpStatus>2</SpStatus><SpTime>1749105001</SpTime></Details>
    </SpRecord>
    <Notifyer><UserId><![CDATA[WangWu]]></UserId></Notifyer>
    <ProcessList>
      <NodeList><NodeType>1</NodeType><SpStatus>2</SpStatus><ApvRel>2</ApvRel>
        <SubNodeList><UserInfo><UserId><![CDATA[LiSi]]></UserId></UserInfo>
          <Speech><![CDATA[同意，按差旅标准报销]]></Speech><SpYj>2</SpYj><Sptime>1749063390</Sptime></SubNodeList></NodeList>
      <NodeList><NodeType>1</NodeType><SpStatus>2</SpStatus><ApvRel>1</ApvRel>
        <SubNodeList><UserInfo><UserId><![CDATA[ChenCaiWu]]></UserId></UserInfo>
          <Speech><![CDATA[]]></Speech><SpYj>2</SpYj><Sptime>1749106582</Sptime></SubNodeList>
        <SubNodeList><UserInfo><UserId><![CDATA[ZhaoKuaiJi]]></UserId></UserInfo>
          <Speech><![CDATA[票据齐全]]></Speech><SpYj>2</SpYj><Sptime>1749105001</Sptime></SubNodeList></NodeList>
      <NodeList><NodeType>2</NodeType>
        <SubNodeList><UserInfo><UserId><![CDATA[WangWu]]></UserId></UserInfo></SubNodeList></NodeList>
    </ProcessList>
    <StatuChangeEvent>2</StatuChangeEvent>
  </ApprovalInfo>
</xml>
"#;

    const HEADER: &str = "<ToUserName>ww7a3c1e5b9d2f4a68</ToUserName><FromUserName>sys</FromUserName><CreateTime>1749106583</CreateTime><MsgType>event</MsgType>";

    /// A `sys_approval_change` document with the given `ApprovalInfo` children.
    fn approval_xml(info: &str) -> String {
        format!(
            "<xml>{HEADER}<Event>sys_approval_change</Event><ApprovalInfo>{info}</ApprovalInfo></xml>"
        )
    }

    fn approval(xml: &str) -> ApprovalChange {
        match parse_event(xml) {
            Ok(InboundEvent::ApprovalChange(a)) => a,
            other => panic!("expected ApprovalChange, got {other:?}"),
        }
    }

    fn other(xml: &str) -> OtherEvent {
        match parse_event(xml) {
            Ok(InboundEvent::Other(o)) => o,
            other => panic!("expected Other, got {other:?}"),
        }
    }

    fn contact(xml: &str) -> ContactChange {
        match parse_event(xml) {
            Ok(InboundEvent::ContactChange(c)) => c,
            other => panic!("expected ContactChange, got {other:?}"),
        }
    }

    fn malformed_msg(xml: &str) -> String {
        match parse_event(xml) {
            Err(EventParseError::Malformed(msg)) => msg,
            other => panic!("expected Malformed for {xml:?}, got {other:?}"),
        }
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    // ----- every vector plaintext -----------------------------------------

    #[test]
    fn vector_official_python_sample_post() {
        let ev = parse_event(OFFICIAL_PYTHON_SAMPLE_POST).unwrap();
        assert_eq!(ev.kind(), EventKind::Other);
        let h = ev.header();
        assert_eq!(h.to_user_name, "ww1436e0e65a779aee");
        assert_eq!(h.from_user_name, "ChenJiaShun");
        assert_eq!(h.create_time, 1476422779);
        assert_eq!(h.msg_type, "text");
        assert_eq!(h.event, None);
        assert_eq!(h.agent_id, s("1000002"));
        let InboundEvent::Other(o) = &ev else {
            unreachable!()
        };
        assert_eq!(o.msg_id, s("1456453720"));
        assert_eq!(o.change_type, None);
        assert_eq!(ev.business_key(), "1456453720");
    }

    #[test]
    fn vector_official_doc_sample_post_with_newlines() {
        let o = other(OFFICIAL_DOC_SAMPLE_POST);
        assert_eq!(o.header.to_user_name, "wx5823bf96d3bd56c7");
        assert_eq!(o.header.from_user_name, "mycreate");
        assert_eq!(o.header.create_time, 1409659813);
        assert_eq!(o.header.msg_type, "text");
        assert_eq!(o.header.agent_id, s("218"));
        assert_eq!(o.msg_id, s("4561255354251345929"));
        assert_eq!(InboundEvent::Other(o).business_key(), "4561255354251345929");
    }

    #[test]
    fn vectors_url_verification_plaintexts_are_not_events() {
        // GET echostr plaintexts are bare numbers, not XML documents.
        for echo in [
            OFFICIAL_PYTHON_SAMPLE_URL_VERIFICATION,
            OFFICIAL_DOC_SAMPLE_URL_VERIFICATION,
            BRIDGE_URL_VERIFICATION,
        ] {
            let msg = malformed_msg(echo);
            assert!(!msg.contains(echo), "message echoes payload: {msg}");
        }
    }

    #[test]
    fn vector_approval_approved() {
        let ev = parse_event(APPROVAL_APPROVED).unwrap();
        assert_eq!(ev.kind(), EventKind::ApprovalChange);
        assert_eq!(ev.business_key(), "202506050012:2");
        let InboundEvent::ApprovalChange(a) = ev else {
            unreachable!()
        };
        assert_eq!(a.header.to_user_name, "ww7a3c1e5b9d2f4a68");
        assert_eq!(a.header.from_user_name, "sys");
        assert_eq!(a.header.create_time, 1749106583);
        assert_eq!(a.header.msg_type, "event");
        assert_eq!(a.header.event, s("sys_approval_change"));
        assert_eq!(a.header.agent_id, s("3010040"));
        assert_eq!(a.sp_no, "202506050012");
        assert_eq!(a.sp_name, "费用报销");
        assert_eq!(a.sp_status, 2);
        assert_eq!(a.template_id, "C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT");
        assert_eq!(a.apply_time, 1749021127);
        assert_eq!(a.applicant_user_id, s("ZhangSan"));
        assert_eq!(a.applicant_party, s("5"));
        assert_eq!(a.status_change_event, Some(2));

        assert_eq!(a.sp_records.len(), 2);
        assert_eq!(a.sp_records[0].sp_status, Some(2));
        assert_eq!(a.sp_records[0].approver_attr, Some(1));
        assert_eq!(
            a.sp_records[0].details,
            vec![SpRecordDetail {
                approver_user_id: s("LiSi"),
                speech: s("同意，按差旅标准报销"),
                sp_status: Some(2),
                sp_time: Some(1749063390),
                attach: vec![],
            }]
        );
        assert_eq!(a.sp_records[1].approver_attr, Some(2));
        assert_eq!(a.sp_records[1].details.len(), 2);
        let d = &a.sp_records[1].details;
        assert_eq!(d[0].approver_user_id, s("ChenCaiWu"));
        assert_eq!(d[0].speech, s(""));
        assert_eq!(d[0].sp_time, Some(1749106582));
        assert_eq!(d[1].approver_user_id, s("ZhaoKuaiJi"));
        assert_eq!(d[1].speech, s("票据齐全"));
        assert_eq!(d[1].sp_time, Some(1749105001));

        assert_eq!(a.notifyers, vec!["WangWu".to_owned()]);
        assert!(a.comments.is_empty());

        assert_eq!(a.process_nodes.len(), 3);
        let n = &a.process_nodes;
        assert_eq!(
            (n[0].node_type, n[0].sp_status, n[0].apv_rel),
            (Some(1), Some(2), Some(2))
        );
        assert_eq!(n[0].sub_nodes.len(), 1);
        assert_eq!(n[0].sub_nodes[0].user_id, s("LiSi"));
        assert_eq!(n[0].sub_nodes[0].sp_yj, Some(2));
        assert_eq!(n[0].sub_nodes[0].sp_time, Some(1749063390));
        assert_eq!((n[1].node_type, n[1].apv_rel), (Some(1), Some(1)));
        let ids: Vec<_> = n[1]
            .sub_nodes
            .iter()
            .map(|s| s.user_id.as_deref())
            .collect();
        assert_eq!(ids, [Some("ChenCaiWu"), Some("ZhaoKuaiJi")]);
        assert_eq!(n[2].node_type, Some(2));
        assert_eq!((n[2].sp_status, n[2].apv_rel), (None, None));
        assert_eq!(
            n[2].sub_nodes,
            vec![ProcessSubNode {
                user_id: s("WangWu"),
                speech: None,
                sp_yj: None,
                sp_time: None,
                media_ids: vec![],
            }]
        );
    }

    #[test]
    fn vector_approval_rejected_keeps_special_characters() {
        let a = approval(APPROVAL_REJECTED);
        assert_eq!(a.sp_no, "202506050019");
        assert_eq!(a.sp_name, "采购申请");
        assert_eq!(a.sp_status, 3);
        assert_eq!(a.status_change_event, Some(3));
        assert_eq!(a.applicant_user_id, s("ZhouBa"));
        assert_eq!(a.applicant_party, s("12"));
        assert_eq!(a.sp_records.len(), 1);
        assert_eq!(a.sp_records[0].sp_status, Some(3));
        assert_eq!(
            a.sp_records[0].details[0].speech,
            s("驳回：预算超标 <超出 15%> & 缺少比价单")
        );
        assert_eq!(a.notifyers, vec!["WangWu".to_owned()]);
        assert_eq!(
            a.comments,
            vec![Comment {
                user_id: s("LiSi"),
                time: Some(1749110390),
                content: s("请补充三家供应商报价"),
                comment_id: s("7512099317736620104"),
                attach: vec![],
            }]
        );
        assert!(a.process_nodes.is_empty());
        assert_eq!(
            InboundEvent::ApprovalChange(a).business_key(),
            "202506050019:3"
        );
    }

    #[test]
    fn vector_approval_revoked_after_pass_minimal_payload() {
        let a = approval(APPROVAL_REVOKED_AFTER_PASS);
        assert_eq!(a.sp_no, "202506050012");
        assert_eq!(a.sp_status, 6);
        assert_eq!(a.status_change_event, Some(8));
        assert_eq!(a.header.create_time, 1749200001);
        assert!(a.sp_records.is_empty());
        assert!(a.notifyers.is_empty());
        assert!(a.comments.is_empty());
        assert!(a.process_nodes.is_empty());
        assert_eq!(
            InboundEvent::ApprovalChange(a).business_key(),
            "202506050012:6"
        );
    }

    #[test]
    fn vector_contact_create_user_bare_text() {
        let c = contact(CONTACT_CREATE_USER);
        assert_eq!(c.header.agent_id, None);
        assert_eq!(c.header.event, s("change_contact"));
        assert_eq!(c.change_type, "create_user");
        assert_eq!(c.user_id, s("SunQi"));
        assert_eq!(c.name, s("孙七"));
        assert_eq!(c.department, vec!["5".to_owned(), "12".to_owned()]);
        assert_eq!(c.main_department, s("5"));
        assert_eq!(c.is_leader_in_dept, s("0,0"));
        assert_eq!(c.direct_leader, s("LiSi"));
        assert_eq!(c.position, s("财务专员"));
        assert_eq!(c.mobile, s("13800000007"));
        assert_eq!(c.gender, s("2"));
        assert_eq!(c.email, s("sunqi@example.com"));
        assert_eq!(c.biz_mail, s("sunqi@example.wecom.work"));
        assert_eq!(c.status, s("4"));
        assert_eq!(c.avatar, s("http://wework.qpic.cn/wwhead/example/0"));
        assert_eq!(c.alias, s("Qi Sun"));
        assert_eq!(c.telephone, s("021-12345678"));
        assert_eq!(c.address, s("上海市浦东新区"));
        assert_eq!(
            c.ext_attr,
            vec![ExtAttrItem {
                name: s("工号"),
                attr_type: Some(0),
                text_value: s("E10086"),
                web_title: None,
                web_url: None,
            }]
        );
        assert_eq!(
            (c.new_user_id.as_ref(), c.id.as_ref(), c.tag_id.as_ref()),
            (None, None, None)
        );
        assert_eq!(
            InboundEvent::ContactChange(c).business_key(),
            "create_user:SunQi"
        );
    }

    #[test]
    fn vector_external_contact_add() {
        let ev = parse_event(EXTERNAL_CONTACT_ADD).unwrap();
        assert_eq!(ev.kind(), EventKind::ExternalContactChange);
        assert_eq!(
            ev.business_key(),
            "add_external_contact:ZhangSan:wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
        );
        let InboundEvent::ExternalContactChange(e) = ev else {
            unreachable!()
        };
        assert_eq!(e.header.create_time, 1749130000);
        assert_eq!(e.change_type, "add_external_contact");
        assert_eq!(e.user_id, "ZhangSan");
        assert_eq!(e.external_user_id, "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw");
        assert_eq!(e.state, s("expo2025_booth_b12"));
        assert_eq!(
            e.welcome_code,
            s("CCy4aXTdhVKeCLXcBsAYzyBdhd-2eZ_UnYR8j2q-LgQ")
        );
        assert_eq!((e.source, e.fail_reason), (None, None));
    }

    #[test]
    fn vector_text_message_multibyte() {
        let o = other(TEXT_MESSAGE_MULTIBYTE);
        assert_eq!(o.header.from_user_name, "ZhangSan");
        assert_eq!(o.header.msg_type, "text");
        assert_eq!(o.header.create_time, 1749131313);
        assert_eq!(o.header.agent_id, s("1000005"));
        assert_eq!(o.msg_id, s("7512345678901234567"));
        assert_eq!(InboundEvent::Other(o).business_key(), "7512345678901234567");
    }

    #[test]
    fn vector_open_approval_change() {
        let ev = parse_event(OPEN_APPROVAL_CHANGE).unwrap();
        assert_eq!(ev.kind(), EventKind::OpenApprovalChange);
        assert_eq!(ev.business_key(), "ERP-PO-20250605-0042:2");
        let InboundEvent::OpenApprovalChange(o) = ev else {
            unreachable!()
        };
        assert_eq!(o.header.agent_id, s("1000005"));
        assert_eq!(o.third_no, "ERP-PO-20250605-0042");
        assert_eq!(o.open_sp_name, "付款申请");
        assert_eq!(o.open_template_id, "b6d2e0a3c1f84e7f9a0b");
        assert_eq!(o.open_sp_status, 2);
        assert_eq!(o.apply_time, 1749139000);
        assert_eq!(o.apply_user_id, s("ZhangSan"));
        assert_eq!(o.apply_user_name, s("张三"));
        assert_eq!(o.apply_user_party, s("财务部"));
        assert_eq!(
            o.apply_user_image,
            s("http://wework.qpic.cn/wwhead/example/0")
        );
        assert_eq!(o.approver_step, Some(0));
        assert_eq!(o.nodes.len(), 1);
        assert_eq!(
            (
                o.nodes[0].node_status,
                o.nodes[0].node_attr,
                o.nodes[0].node_type
            ),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(
            o.nodes[0].items,
            vec![OpenApprovalItem {
                item_name: s("李四"),
                item_user_id: s("LiSi"),
                item_image: s("http://wework.qpic.cn/wwhead/example/0"),
                item_status: Some(2),
                item_speech: s("同意"),
                item_op_time: Some(1749139990),
            }]
        );
        assert_eq!(
            o.notify_nodes,
            vec![OpenNotifyNode {
                item_name: s("王五"),
                item_user_id: s("WangWu"),
                item_image: s("http://wework.qpic.cn/wwhead/example/0"),
            }]
        );
    }

    #[test]
    fn vector_batch_job_result_and_neg_wrong_receiveid_plaintext() {
        let o = other(BATCH_JOB_RESULT);
        assert_eq!(o.header.event, s("batch_job_result"));
        assert_eq!(o.header.agent_id, None);
        assert_eq!(o.msg_id, None);
        let ev = InboundEvent::Other(o);
        assert_eq!(ev.business_key(), "batch_job_result:1749150000");
        // neg_wrong_receiveid decrypts to the same document (the receiveid is
        // checked by the crypto layer, not here).
        assert_eq!(parse_event(NEG_WRONG_RECEIVEID).unwrap(), ev);
    }

    #[test]
    fn vector_edge_full_pad_block() {
        let o = other(EDGE_FULL_PAD_BLOCK);
        assert_eq!(o.header.from_user_name, "LiSi");
        assert_eq!(o.header.create_time, 1749160000);
        assert_eq!(o.msg_id, s("7512345678901239999"));
        assert_eq!(InboundEvent::Other(o).business_key(), "7512345678901239999");
    }

    #[test]
    fn vector_passive_reply_text_has_no_msg_id() {
        let o = other(PASSIVE_REPLY_TEXT);
        assert_eq!(o.header.to_user_name, "ZhangSan");
        assert_eq!(o.header.from_user_name, "ww7a3c1e5b9d2f4a68");
        assert_eq!(o.msg_id, None);
        assert_eq!(o.header.event, None);
        assert_eq!(InboundEvent::Other(o).business_key(), "text:1749131314");
    }

    // ----- XML shape rules --------------------------------------------------

    #[test]
    fn single_repeated_elements_are_vecs_of_one() {
        let a = approval(&approval_xml(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus>\
             <SpRecord><Details><Approver><UserId>A</UserId></Approver><Attach>m1</Attach></Details></SpRecord>\
             <Notifyer><UserId>N</UserId></Notifyer>\
             <Comments><CommentUserInfo><UserId>C</UserId></CommentUserInfo><Attach>m2</Attach></Comments>\
             <ProcessList><NodeList><SubNodeList><UserInfo><UserId>S</UserId></UserInfo><MediaIds>m3</MediaIds></SubNodeList></NodeList></ProcessList>",
        ));
        assert_eq!(a.sp_records.len(), 1);
        assert_eq!(a.sp_records[0].details.len(), 1);
        assert_eq!(a.sp_records[0].details[0].attach, vec!["m1".to_owned()]);
        assert_eq!(a.notifyers, vec!["N".to_owned()]);
        assert_eq!(a.comments.len(), 1);
        assert_eq!(a.comments[0].attach, vec!["m2".to_owned()]);
        assert_eq!(a.process_nodes.len(), 1);
        assert_eq!(a.process_nodes[0].sub_nodes.len(), 1);
        assert_eq!(
            a.process_nodes[0].sub_nodes[0].media_ids,
            vec!["m3".to_owned()]
        );
    }

    #[test]
    fn non_consecutive_repeated_elements_are_collected_in_order() {
        let a = approval(&approval_xml(
            "<SpRecord><SpStatus>2</SpStatus>\
               <Details><Approver><UserId>A1</UserId></Approver></Details>\
               <ApproverAttr>2</ApproverAttr>\
               <Details><Approver><UserId>A2</UserId></Approver></Details></SpRecord>\
             <Notifyer><UserId>N1</UserId></Notifyer>\
             <SpNo>9</SpNo>\
             <Comments><CommentContent>c1</CommentContent></Comments>\
             <SpRecord><SpStatus>1</SpStatus></SpRecord>\
             <ProcessList><NodeList><NodeType>1</NodeType></NodeList></ProcessList>\
             <Notifyer><UserId>N2</UserId></Notifyer>\
             <SpStatus>1</SpStatus>\
             <Comments><CommentContent>c2</CommentContent></Comments>\
             <ProcessList><NodeList><NodeType>2</NodeType></NodeList></ProcessList>",
        ));
        assert_eq!(a.sp_records.len(), 2);
        assert_eq!(a.sp_records[0].sp_status, Some(2));
        assert_eq!(a.sp_records[0].approver_attr, Some(2));
        let approvers: Vec<_> = a.sp_records[0]
            .details
            .iter()
            .map(|d| d.approver_user_id.as_deref())
            .collect();
        assert_eq!(approvers, [Some("A1"), Some("A2")]);
        assert_eq!(a.sp_records[1].sp_status, Some(1));
        assert_eq!(a.notifyers, vec!["N1".to_owned(), "N2".to_owned()]);
        let comments: Vec<_> = a.comments.iter().map(|c| c.content.as_deref()).collect();
        assert_eq!(comments, [Some("c1"), Some("c2")]);
        let node_types: Vec<_> = a.process_nodes.iter().map(|n| n.node_type).collect();
        assert_eq!(node_types, [Some(1), Some(2)]);
    }

    #[test]
    fn unknown_elements_attributes_comments_are_ignored() {
        let xml = approval_xml(
            "<FutureField><Deep><Deeper a=\"1\">x</Deeper></Deep><SpNo>999</SpNo></FutureField>\
             <SpNo id=\"7\">5</SpNo><!-- comment --><?pi data?>\
             <SpStatus>2</SpStatus><Unknown/>\
             <SpRecord><NewThing>1</NewThing><Details><Approver><UserId>A</UserId><Extra>z</Extra></Approver><Mood>ok</Mood></Details></SpRecord>",
        );
        let a = approval(&xml);
        assert_eq!(a.sp_no, "5");
        assert_eq!(a.sp_status, 2);
        assert_eq!(a.sp_records[0].details[0].approver_user_id, s("A"));
        // Unknown top-level elements too.
        let o = other(&format!(
            "<xml>{HEADER}<Event>subscribe</Event><Brand-New>1</Brand-New><BizMail>x</BizMail></xml>"
        ));
        assert_eq!(o.header.event, s("subscribe"));
    }

    #[test]
    fn cdata_and_bare_text_are_equivalent() {
        let bare = APPROVAL_APPROVED
            .replace("<![CDATA[", "")
            .replace("]]>", "");
        assert!(!bare.contains("CDATA"));
        assert_eq!(
            parse_event(&bare).unwrap(),
            parse_event(APPROVAL_APPROVED).unwrap()
        );

        // With characters that need escaping in bare text.
        let escaped = APPROVAL_REJECTED
            .replace(
                "<![CDATA[驳回：预算超标 <超出 15%> & 缺少比价单]]>",
                "驳回：预算超标 &lt;超出 15%&gt; &amp; 缺少比价单",
            )
            .replace("<![CDATA[", "")
            .replace("]]>", "");
        assert!(!escaped.contains("CDATA"));
        assert_eq!(
            parse_event(&escaped).unwrap(),
            parse_event(APPROVAL_REJECTED).unwrap()
        );
    }

    #[test]
    fn mixed_text_cdata_and_references_concatenate() {
        let a = approval(&approval_xml(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus>\
             <SpRecord><Details><Speech>  a &amp; <![CDATA[ <b> ]]>&#x4E2D;&#25991; c  </Speech></Details></SpRecord>\
             <Comments><CommentContent><![CDATA[  kept  ]]></CommentContent></Comments>",
        ));
        // Edge whitespace of bare text is dropped, CDATA kept verbatim.
        assert_eq!(a.sp_records[0].details[0].speech, s("a &  <b> 中文 c"));
        assert_eq!(a.comments[0].content, s("  kept  "));
    }

    #[test]
    fn line_ends_are_normalised() {
        let a = approval(&approval_xml(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpRecord><Details><Speech><![CDATA[l1\r\nl2\rl3]]></Speech></Details></SpRecord>",
        ));
        assert_eq!(a.sp_records[0].details[0].speech, s("l1\nl2\nl3"));
    }

    #[test]
    fn pretty_printed_document_equals_compact_vector() {
        let compact = parse_event(APPROVAL_APPROVED).unwrap();
        assert_eq!(parse_event(APPROVAL_APPROVED_PRETTY).unwrap(), compact);
        // A UTF-8 byte-order mark and trailing whitespace/comments are fine.
        let with_bom = format!("\u{feff}{APPROVAL_APPROVED}\n<!-- end -->\n");
        assert_eq!(parse_event(&with_bom).unwrap(), compact);
    }

    #[test]
    fn numbers_may_be_surrounded_by_whitespace() {
        let xml = "<xml><ToUserName> ww1 </ToUserName><FromUserName>sys</FromUserName>\
             <CreateTime>\n 1749106583 \t</CreateTime><MsgType>event</MsgType>\
             <Event> sys_approval_change </Event><AgentID><![CDATA[ 3010040 ]]></AgentID>\
             <ApprovalInfo><SpNo><![CDATA[ 202506050012 ]]></SpNo><SpStatus><![CDATA[ 2 ]]></SpStatus>\
             <ApplyTime> 1749021127 </ApplyTime><StatuChangeEvent>\r\n2\r\n</StatuChangeEvent>\
             <SpRecord><Details><SpTime><![CDATA[\t0 ]]></SpTime></Details></SpRecord></ApprovalInfo></xml>";
        let a = approval(xml);
        assert_eq!(a.header.to_user_name, "ww1");
        assert_eq!(a.header.create_time, 1749106583);
        assert_eq!(a.header.agent_id, s("3010040"));
        assert_eq!(a.sp_no, "202506050012");
        assert_eq!(a.sp_status, 2);
        assert_eq!(a.apply_time, 1749021127);
        assert_eq!(a.status_change_event, Some(2));
        assert_eq!(a.sp_records[0].details[0].sp_time, Some(0));
    }

    #[test]
    fn empty_elements_give_empty_values() {
        let a = approval(&approval_xml(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpName/><StatuChangeEvent></StatuChangeEvent>\
             <SpRecord/><Notifyer/><Comments/><ProcessList><NodeList/></ProcessList>\
             <Applyer/>",
        ));
        assert_eq!(a.sp_name, "");
        assert_eq!(a.status_change_event, None);
        assert_eq!(
            a.sp_records,
            vec![SpRecord {
                sp_status: None,
                approver_attr: None,
                details: vec![]
            }]
        );
        assert!(
            a.notifyers.is_empty(),
            "a Notifyer without UserId carries no user"
        );
        assert_eq!(a.comments.len(), 1);
        assert_eq!(a.comments[0].content, None);
        assert_eq!(a.process_nodes.len(), 1);
        assert_eq!((a.applicant_user_id, a.applicant_party), (None, None));
        assert_eq!(a.template_id, "");
        assert_eq!(a.apply_time, 0);
    }

    #[test]
    fn item_userid_spelling_variant_is_accepted() {
        let xml = format!(
            "<xml>{HEADER}<Event>open_approval_change</Event><ApprovalInfo><ThirdNo>T1</ThirdNo>\
             <OpenSpStatus>1</OpenSpStatus><ApprovalNodes><ApprovalNode><Items>\
             <Item><ItemUserid>u1</ItemUserid></Item><Item><ItemUserId>u2</ItemUserId></Item></Items>\
             </ApprovalNode></ApprovalNodes><NotifyNodes><NotifyNode><ItemUserid>n1</ItemUserid></NotifyNode>\
             </NotifyNodes></ApprovalInfo></xml>"
        );
        let InboundEvent::OpenApprovalChange(o) = parse_event(&xml).unwrap() else {
            panic!("expected OpenApprovalChange")
        };
        let ids: Vec<_> = o.nodes[0]
            .items
            .iter()
            .map(|i| i.item_user_id.as_deref())
            .collect();
        assert_eq!(ids, [Some("u1"), Some("u2")]);
        assert_eq!(o.notify_nodes[0].item_user_id, s("n1"));
        assert_eq!(o.approver_step, None);
        assert_eq!(o.apply_time, 0);
        assert_eq!(InboundEvent::OpenApprovalChange(o).business_key(), "T1:1");
    }

    #[test]
    fn attach_and_media_ids_accept_repeats_and_nesting() {
        let a = approval(&approval_xml(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus>\
             <SpRecord><Details><Attach>m1</Attach><Speech>x</Speech><Attach><![CDATA[ m2 ]]></Attach><Attach/></Details></SpRecord>\
             <ProcessList><NodeList><SubNodeList><MediaIds><MediaId>a</MediaId><MediaId>b</MediaId></MediaIds>\
             <MediaIds>c</MediaIds><MediaIds><![CDATA[]]></MediaIds></SubNodeList></NodeList></ProcessList>",
        ));
        assert_eq!(
            a.sp_records[0].details[0].attach,
            vec!["m1".to_owned(), "m2".to_owned()]
        );
        assert_eq!(
            a.process_nodes[0].sub_nodes[0].media_ids,
            vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]
        );
    }

    // ----- DOCTYPE / entities -------------------------------------------------

    #[test]
    fn billion_laughs_doctype_is_refused() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><ToUserName>&lol9;</ToUserName><FromUserName>sys</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>"#;
        assert_eq!(parse_event(xml), Err(EventParseError::Doctype));
    }

    #[test]
    fn doctype_and_entity_declarations_are_refused_everywhere() {
        let body = format!("{HEADER}<Event>x</Event>");
        let cases = [
            format!("<!DOCTYPE xml><xml>{body}</xml>"),
            format!("<!doctype xml><xml>{body}</xml>"),
            format!(
                "\u{feff}<?xml version=\"1.0\"?>\n<!-- c --> <!DOCTYPE xml SYSTEM \"file:///etc/passwd\"><xml>{body}</xml>"
            ),
            format!("<!ENTITY xxe SYSTEM \"file:///etc/passwd\"><xml>{body}</xml>"),
            format!("<xml>{body}<!DOCTYPE x></xml>"),
            format!("<xml>{body}<Unknown><!DOCTYPE x></Unknown></xml>"),
            format!("<xml>{body}</xml>\n<!DOCTYPE x>"),
        ];
        for xml in &cases {
            assert_eq!(parse_event(xml), Err(EventParseError::Doctype), "{xml}");
        }
        // A DOCTYPE mentioned inside a comment or CDATA is just text.
        let a = approval(&approval_xml(
            "<!-- <!DOCTYPE x> --><SpNo>1</SpNo><SpStatus>1</SpStatus><SpName><![CDATA[<!DOCTYPE x>]]></SpName>",
        ));
        assert_eq!(a.sp_name, "<!DOCTYPE x>");
    }

    #[test]
    fn undefined_entities_are_malformed_never_expanded() {
        let xml = format!("<xml>{HEADER}<Content>&xxe;</Content></xml>");
        let msg = malformed_msg(&xml);
        assert!(msg.contains("entity"), "{msg}");
        let xml = format!("<xml>{HEADER}<Event>&custom;</Event></xml>");
        malformed_msg(&xml);
    }

    // ----- malformed input ----------------------------------------------------

    #[test]
    fn broken_xml_is_malformed() {
        let cases = [
            String::new(),
            "   \n".to_owned(),
            "not xml at all".to_owned(),
            "<xml>".to_owned(),
            "<xml><ToUserName>a</ToUserName>".to_owned(),
            "<xml><ToUserName>a</FromUserName></xml>".to_owned(),
            "<xml></xml></xml>".to_owned(),
            "<xml><ToUserName><![CDATA[a</ToUserName></xml>".to_owned(),
            "<xml><ToUserName a=\"1></ToUserName></xml>".to_owned(),
            "<xml><!-- unterminated </xml>".to_owned(),
            "<?xml version=\"1.0\"".to_owned(),
            "<!-- never closed".to_owned(),
            "<![CDATA[x]]><xml/>".to_owned(),
            format!("<xml>{HEADER}</xml><xml>{HEADER}</xml>"),
            format!("<xml>{HEADER}</xml>trailing"),
            format!("<xml>{HEADER}<Content>a & b</Content></xml>"),
            format!("<xml>{HEADER}<CreateTime>1</CreateTime></xml>"),
            approval_xml("<SpNo><b>1</b></SpNo><SpStatus>1</SpStatus>"),
            approval_xml("<SpNo>1</SpNo><SpNo>2</SpNo><SpStatus>1</SpStatus>"),
            approval_xml("<SpNo>1</SpNo><SpStatus>1</SpStatus><Applyer/><Applyer/>"),
        ];
        for xml in &cases {
            malformed_msg(xml);
        }
    }

    #[test]
    fn wrong_root_is_malformed() {
        for xml in [
            format!("<root>{HEADER}</root>"),
            format!("<xmlx>{HEADER}</xmlx>"),
            format!("<XML>{HEADER}</XML>"),
            format!("<?xml version=\"1.0\"?><Envelope>{HEADER}</Envelope>"),
        ] {
            assert!(malformed_msg(&xml).contains("root"), "{xml}");
        }
    }

    #[test]
    fn malformed_messages_do_not_echo_payload() {
        let secret = "SECRET-PAYLOAD-42";
        let cases = [
            format!("{secret}<xml/>"),
            format!("<xml>{HEADER}<{secret}></xml>"),
            format!("<xml>{HEADER}</{secret}></xml>"),
            format!("<xml>{HEADER}<Content>&{secret};</Content></xml>"),
            format!("<{secret}>{HEADER}</{secret}>"),
            approval_xml(&format!("<SpNo>1</SpNo><SpStatus>{secret}</SpStatus>")),
            approval_xml(&format!(
                "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpTime>{secret}</SpTime><SpRecord><Details><SpTime>{secret}</SpTime></Details></SpRecord>"
            )),
            approval_xml(&format!("<SpNo><{secret}/></SpNo>")),
            format!("<xml>{HEADER}<A x=\"{secret}></A></xml>"),
        ];
        for xml in &cases {
            let msg = malformed_msg(xml);
            assert!(!msg.contains(secret), "{msg}");
            assert!(!msg.is_empty());
        }
    }

    #[test]
    fn approval_without_sp_no_is_malformed() {
        let msg = malformed_msg(&approval_xml("<SpName>x</SpName><SpStatus>2</SpStatus>"));
        assert!(msg.contains("SpNo"), "{msg}");
        malformed_msg(&approval_xml(
            "<SpNoStr> </SpNoStr><SpNo></SpNo><SpStatus>2</SpStatus>",
        ));
        // Other essential parts.
        let msg = malformed_msg(&approval_xml("<SpNo>1</SpNo>"));
        assert!(msg.contains("SpStatus"), "{msg}");
        let msg = malformed_msg(&approval_xml("<SpNo>1</SpNo><SpStatus>two</SpStatus>"));
        assert!(msg.contains("SpStatus") && msg.contains("integer"), "{msg}");
        malformed_msg(&approval_xml("<SpNo>1</SpNo><SpStatus>-2</SpStatus>"));
        let msg = malformed_msg(&format!(
            "<xml>{HEADER}<Event>sys_approval_change</Event></xml>"
        ));
        assert!(msg.contains("ApprovalInfo"), "{msg}");
        // A bad non-essential number is reported too, with its path.
        let msg = malformed_msg(&approval_xml(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpRecord><Details><SpTime>soon</SpTime></Details></SpRecord>",
        ));
        assert!(msg.contains("Details/SpTime"), "{msg}");
    }

    #[test]
    fn sp_no_str_is_preferred_and_sp_no_is_the_fallback() {
        let a = approval(&approval_xml(
            "<SpNoStr>202506050099</SpNoStr><SpNo>1</SpNo><SpStatus>1</SpStatus>",
        ));
        assert_eq!(a.sp_no, "202506050099");
        let a = approval(&approval_xml(
            "<SpNo>202506050012</SpNo><SpStatus>4</SpStatus>",
        ));
        assert_eq!(a.sp_no, "202506050012");
        let a = approval(&approval_xml(
            "<SpNoStr></SpNoStr><SpNo>202506050013</SpNo><SpStatus>7</SpStatus>",
        ));
        assert_eq!(
            InboundEvent::ApprovalChange(a).business_key(),
            "202506050013:7"
        );
        // Longer than u64 would allow: still a string.
        let a = approval(&approval_xml(
            "<SpNoStr>123456789012345678901234567890</SpNoStr><SpStatus>1</SpStatus>",
        ));
        assert_eq!(a.sp_no, "123456789012345678901234567890");
    }

    #[test]
    fn missing_header_fields_are_malformed() {
        for (missing, xml) in [
            (
                "ToUserName",
                "<xml><FromUserName>a</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
            ),
            (
                "FromUserName",
                "<xml><ToUserName>a</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
            ),
            (
                "CreateTime",
                "<xml><ToUserName>a</ToUserName><FromUserName>a</FromUserName><MsgType>text</MsgType></xml>",
            ),
            (
                "MsgType",
                "<xml><ToUserName>a</ToUserName><FromUserName>a</FromUserName><CreateTime>1</CreateTime></xml>",
            ),
        ] {
            assert!(malformed_msg(xml).contains(missing), "{missing}");
        }
    }

    #[test]
    fn contact_events_need_their_subject() {
        let base = |rest: &str| format!("<xml>{HEADER}<Event>change_contact</Event>{rest}</xml>");
        assert!(malformed_msg(&base("<UserID>u</UserID>")).contains("ChangeType"));
        assert!(malformed_msg(&base("<ChangeType>update_user</ChangeType>")).contains("UserID"));
        assert!(malformed_msg(&base("<ChangeType>delete_party</ChangeType>")).contains("Id"));
        assert!(malformed_msg(&base("<ChangeType>update_tag</ChangeType>")).contains("TagId"));

        let c = contact(&base(
            "<ChangeType>update_user</ChangeType><UserID>u1</UserID><NewUserID>u2</NewUserID><Department> 1 ,, 2 </Department>",
        ));
        assert_eq!(c.new_user_id, s("u2"));
        assert_eq!(c.department, vec!["1".to_owned(), "2".to_owned()]);
        assert_eq!(
            InboundEvent::ContactChange(c).business_key(),
            "update_user:u1"
        );

        let c = contact(&base(
            "<ChangeType>create_party</ChangeType><Id>7</Id><Name>研发部</Name><ParentId>1</ParentId><Order>100</Order>",
        ));
        assert_eq!(
            (c.id.as_deref(), c.parent_id.as_deref(), c.order.as_deref()),
            (Some("7"), Some("1"), Some("100"))
        );
        assert!(c.department.is_empty());
        assert_eq!(
            InboundEvent::ContactChange(c).business_key(),
            "create_party:7"
        );

        let c = contact(&base(
            "<ChangeType>update_tag</ChangeType><TagId>3</TagId><AddUserItems>a,b</AddUserItems><DelPartyItems>4</DelPartyItems>",
        ));
        assert_eq!(c.add_user_items, s("a,b"));
        assert_eq!(c.del_party_items, s("4"));
        assert_eq!(
            InboundEvent::ContactChange(c).business_key(),
            "update_tag:3"
        );

        let c = contact(&base("<ChangeType>future_change</ChangeType>"));
        assert_eq!(
            InboundEvent::ContactChange(c).business_key(),
            "future_change:"
        );
    }

    #[test]
    fn external_contact_events_need_both_ids() {
        let base =
            |rest: &str| format!("<xml>{HEADER}<Event>change_external_contact</Event>{rest}</xml>");
        assert!(
            malformed_msg(&base(
                "<ChangeType>del_follow_user</ChangeType><UserID>u</UserID>"
            ))
            .contains("ExternalUserID")
        );
        assert!(
            malformed_msg(&base(
                "<ChangeType>del_follow_user</ChangeType><ExternalUserID>e</ExternalUserID>"
            ))
            .contains("UserID")
        );
        let InboundEvent::ExternalContactChange(e) = parse_event(&base(
            "<ChangeType>transfer_fail</ChangeType><UserID>u</UserID><ExternalUserID>e</ExternalUserID><FailReason>customer_refused</FailReason><Source>DELETE_BY_TRANSFER</Source>",
        ))
        .unwrap() else {
            panic!("expected ExternalContactChange")
        };
        assert_eq!(e.fail_reason, s("customer_refused"));
        assert_eq!(e.source, s("DELETE_BY_TRANSFER"));
        assert_eq!(e.welcome_code, None);
        assert_eq!(
            InboundEvent::ExternalContactChange(e).business_key(),
            "transfer_fail:u:e"
        );
    }

    #[test]
    fn schema_problems_only_break_events_that_use_the_fields() {
        // Contact-only fields with an unexpected shape do not break an
        // unrelated event ...
        let weird = "<Status><Code>1</Code></Status><Name>a</Name><Name>b</Name><ApprovalInfo/><ApprovalInfo/>";
        let o = other(&format!(
            "<xml>{HEADER}<Event>living_status_change</Event>{weird}</xml>"
        ));
        assert_eq!(o.header.event, s("living_status_change"));
        // ... but do break a typed event ...
        let msg = malformed_msg(&format!(
            "<xml>{HEADER}<Event>change_contact</Event><ChangeType>update_user</ChangeType><UserID>u</UserID>{weird}</xml>"
        ));
        assert!(msg.contains("Status") && msg.contains("text only"), "{msg}");
        let msg = malformed_msg(&approval_xml(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpStatus>2</SpStatus>",
        ));
        assert!(
            msg.contains("SpStatus") && msg.contains("more than once"),
            "{msg}"
        );
        let msg = malformed_msg(&approval_xml(
            "<SpNo>1</SpNo><SpStatus>1</SpStatus><SpRecord><Details><Approver/><Approver/></Details></SpRecord>",
        ));
        assert!(msg.contains("Details/Approver"), "{msg}");
        // ... and header fields are always strict.
        let msg = malformed_msg(&format!(
            "<xml>{HEADER}<Event>subscribe</Event><MsgId>1</MsgId><MsgId>2</MsgId></xml>"
        ));
        assert!(msg.contains("MsgId"), "{msg}");
        let msg = malformed_msg(
            "<xml><ToUserName><a>x</a></ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
        );
        assert!(msg.contains("ToUserName"), "{msg}");
    }

    #[test]
    fn other_events_business_key_and_change_type() {
        let o = other(&format!(
            "<xml>{HEADER}<Event>change_external_chat</Event><ChangeType>update</ChangeType></xml>"
        ));
        assert_eq!(o.change_type, s("update"));
        assert_eq!(
            InboundEvent::Other(o).business_key(),
            "change_external_chat:1749106583"
        );
        let o = other(
            "<xml><ToUserName>c</ToUserName><FromUserName>u</FromUserName><CreateTime>5</CreateTime><MsgType>image</MsgType><MsgId> </MsgId></xml>",
        );
        assert_eq!(o.msg_id, None);
        assert_eq!(InboundEvent::Other(o).business_key(), "image:5");
    }

    #[test]
    fn event_kind_strings_round_trip() {
        let all = [
            (EventKind::ApprovalChange, "approval_change"),
            (EventKind::OpenApprovalChange, "open_approval_change"),
            (EventKind::ContactChange, "contact_change"),
            (EventKind::ExternalContactChange, "external_contact_change"),
            (EventKind::Other, "other"),
        ];
        for (kind, name) in all {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(name.parse::<EventKind>(), Ok(kind));
        }
        assert_eq!("Other".parse::<EventKind>(), Err(UnknownEventKind));
        assert_eq!("".parse::<EventKind>(), Err(UnknownEventKind));
        assert_eq!(
            parse_event(CONTACT_CREATE_USER).unwrap().kind(),
            EventKind::ContactChange
        );
        assert_eq!(
            parse_event(OPEN_APPROVAL_CHANGE).unwrap().kind(),
            EventKind::OpenApprovalChange
        );
    }

    #[test]
    fn no_panic_on_truncated_or_mutated_input() {
        // Every strict prefix of a valid document is an error (never a panic).
        for doc in [APPROVAL_APPROVED, OPEN_APPROVAL_CHANGE, CONTACT_CREATE_USER] {
            for (i, _) in doc.char_indices().skip(1) {
                assert!(parse_event(&doc[..i]).is_err(), "prefix {i} accepted");
            }
        }
        // Deterministic pseudo-random single-byte mutations (ASCII only, so the
        // input stays valid UTF-8): must return, Ok or Err.
        let specials = b"<>/!?&;[]\"'= -x0";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut bytes = APPROVAL_REJECTED.as_bytes().to_vec();
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pos = (state % bytes.len() as u64) as usize;
            if bytes[pos].is_ascii() {
                let saved = bytes[pos];
                bytes[pos] = specials[(state >> 32) as usize % specials.len()];
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    let _ = parse_event(text);
                }
                bytes[pos] = saved;
            }
        }
        // Deep nesting inside an unknown element is skipped iteratively.
        let deep = format!(
            "<xml>{HEADER}{}{}</xml>",
            "<a>".repeat(100_000),
            "</a>".repeat(100_000)
        );
        assert_eq!(parse_event(&deep).unwrap().kind(), EventKind::Other);
        let unclosed = format!("<xml>{HEADER}{}", "<a>".repeat(10_000));
        malformed_msg(&unclosed);
    }

    /// Timing-free sanity check: repeated parsing is deterministic and the
    /// typed event serialises with the WeCom element names.
    #[test]
    fn sanity_repeated_parse_is_stable_and_serialises() {
        let first = parse_event(APPROVAL_APPROVED).unwrap();
        for _ in 0..100 {
            assert_eq!(parse_event(APPROVAL_APPROVED).unwrap(), first);
        }
        let json = serde_json::to_value(&first).unwrap();
        let a = &json["ApprovalChange"];
        assert_eq!(a["SpNo"], "202506050012");
        assert_eq!(a["SpStatus"], 2);
        assert_eq!(a["StatuChangeEvent"], 2);
        assert_eq!(a["ToUserName"], "ww7a3c1e5b9d2f4a68");
        assert_eq!(a["Notifyer"][0], "WangWu");
        assert_eq!(
            a["SpRecord"][1]["Details"][1]["ApproverUserId"],
            "ZhaoKuaiJi"
        );
        assert_eq!(a["NodeList"][1]["SubNodeList"][0]["Sptime"], 1749106582);
        assert_eq!(
            serde_json::to_value(EventKind::ExternalContactChange).unwrap(),
            "external_contact_change"
        );
    }
}
