//! `change_external_contact`: a customer (external contact) change (PROTOCOL.md §3.4): its
//! typed value, the walker method for its root children and the conversion.

use serde::Serialize;

use super::xml::{Txt, Walker};
use super::{EventHeader, EventParseError, req_token, text, token};

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

/// The root children of a `change_external_contact` callback other than the header and
/// `UserID`.
#[derive(Default)]
pub(super) struct RawExternalContact<'a> {
    external_user_id: Txt<'a>,
    state: Txt<'a>,
    welcome_code: Txt<'a>,
    source: Txt<'a>,
    fail_reason: Txt<'a>,
}

impl<'a> Walker<'a> {
    /// A root child of a `change_external_contact` callback; `Ok(false)` if `name` is not
    /// one.
    pub(super) fn external_contact_field(
        &mut self,
        out: &mut RawExternalContact<'a>,
        name: &str,
        empty: bool,
    ) -> Result<bool, EventParseError> {
        let leaves = [
            ("ExternalUserID", &mut out.external_user_id),
            ("State", &mut out.state),
            ("WelcomeCode", &mut out.welcome_code),
            ("Source", &mut out.source),
            ("FailReason", &mut out.fail_reason),
        ];
        self.leaf_among(name, empty, leaves)
    }
}

/// Builds the typed event from the root's `ChangeType` and `UserID` and the rest of its
/// customer fields.
pub(super) fn build(
    header: EventHeader,
    change_type: Txt<'_>,
    user_id: Txt<'_>,
    raw: RawExternalContact<'_>,
) -> Result<ExternalContactChange, EventParseError> {
    Ok(ExternalContactChange {
        header,
        change_type: req_token(change_type, "change_external_contact ChangeType")?,
        user_id: req_token(user_id, "change_external_contact UserID")?,
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
