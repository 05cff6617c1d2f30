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
//!
//! Layout: `xml` is the pull walker and its text rules; `element` the `element!` tables that
//! declare each known element's raw struct and how its children are read; one module per
//! typed event (`approval`, `open_approval`, `contact`, `external_contact`) holds the event's
//! public value, the tables of its elements and its conversion; this file holds the public
//! entry point, the root's table and the dispatch on `Event`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use quick_xml::events::Event;
use serde::Serialize;

mod approval;
mod contact;
mod element;
mod external_contact;
mod open_approval;
#[cfg(test)]
mod tests;
mod xml;

pub use approval::{
    ApprovalChange, Comment, ProcessNode, ProcessSubNode, SpRecord, SpRecordDetail,
};
pub use contact::{ContactChange, ExtAttrItem};
pub use external_contact::ExternalContactChange;
pub use open_approval::{OpenApprovalChange, OpenApprovalItem, OpenApprovalNode, OpenNotifyNode};

use approval::RawApprovalInfo;
use contact::RawContact;
use element::element;
use external_contact::RawExternalContact;
use xml::{Txt, Walker, check_prolog, xml_trim};

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
    let (raw, schema_error) = Walker::new(xml).document()?;
    build_event(raw, schema_error)
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

element! {
    /// Root `<xml>`: the header, the subject fields several events share, and each typed
    /// event's own root children.
    struct RawXml<'a> in "" {
        to_user_name: Txt<'a> = header "ToUserName",
        from_user_name: Txt<'a> = header "FromUserName",
        create_time: Txt<'a> = header "CreateTime",
        msg_type: Txt<'a> = header "MsgType",
        event: Txt<'a> = header "Event",
        agent_id: Txt<'a> = header "AgentID",
        change_type: Txt<'a> = header "ChangeType",
        msg_id: Txt<'a> = header "MsgId",
        /// `UserID`: the member of a contact event, our member of a customer event.
        user_id: Txt<'a> = leaf "UserID",
        approval_info: Option<RawApprovalInfo<'a>> = single "ApprovalInfo",
        ..
        contact: RawContact<'a>,
        external_contact: RawExternalContact<'a>,
    }
}

impl<'a> Walker<'a> {
    /// Parses the whole document: prolog, the `<xml>` root, epilog. Also answers the first
    /// deferred schema problem, see [`Walker`].
    fn document(mut self) -> Result<(RawXml<'a>, Option<EventParseError>), EventParseError> {
        let mut raw = RawXml::default();
        let (root, empty) = loop {
            match self.next()? {
                Event::Start(e) => break (e, false),
                Event::Empty(e) => break (e, true),
                Event::Text(t) if xml_trim(&t).is_empty() => {}
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => return Err(malformed("document has no root element")),
                _ => return Err(self.malformed_here("content before the root element")),
            }
        };
        if root.name().0 != "xml" {
            return Err(malformed("root element is not <xml>"));
        }
        self.check_attrs(&root)?;
        self.nested(&mut raw, empty, "xml")?;
        loop {
            match self.next()? {
                Event::Eof => return Ok((raw, self.deferred)),
                Event::Text(t) if xml_trim(&t).is_empty() => {}
                Event::PI(_) | Event::Comment(_) => {}
                _ => return Err(self.malformed_here("content after the root element")),
            }
        }
    }
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

/// Converts every entry of a raw list with `convert`; the first error wins.
fn each<R, T>(
    raw: Vec<R>,
    convert: impl FnMut(R) -> Result<T, EventParseError>,
) -> Result<Vec<T>, EventParseError> {
    raw.into_iter().map(convert).collect()
}
/// Builds the event from the document's raw fields; `schema_error` is its first deferred
/// schema problem.
fn build_event(
    mut raw: RawXml<'_>,
    schema_error: Option<EventParseError>,
) -> Result<InboundEvent, EventParseError> {
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
        && let Some(err) = schema_error
    {
        return Err(err);
    }
    match kind {
        EventKind::ApprovalChange => {
            approval::build(header, raw.approval_info).map(InboundEvent::ApprovalChange)
        }
        EventKind::OpenApprovalChange => {
            open_approval::build(header, raw.approval_info).map(InboundEvent::OpenApprovalChange)
        }
        EventKind::ContactChange => {
            contact::build(header, raw.change_type, raw.user_id, raw.contact)
                .map(InboundEvent::ContactChange)
        }
        EventKind::ExternalContactChange => {
            external_contact::build(header, raw.change_type, raw.user_id, raw.external_contact)
                .map(InboundEvent::ExternalContactChange)
        }
        EventKind::Other => Ok(InboundEvent::Other(OtherEvent {
            header,
            change_type: token(raw.change_type),
            msg_id: token(raw.msg_id),
        })),
    }
}
