//! `change_external_contact`: a customer (external contact) change (PROTOCOL.md §3.4): its
//! typed value, the `element!` table of its root children and the conversion.

use serde::Serialize;

use super::element::element;
use super::xml::Txt;
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

element! {
    /// The root children of a `change_external_contact` callback other than the header and
    /// `UserID`.
    pub(super) struct RawExternalContact<'a> in "" {
        external_user_id: Txt<'a> = leaf "ExternalUserID",
        state: Txt<'a> = leaf "State",
        welcome_code: Txt<'a> = leaf "WelcomeCode",
        source: Txt<'a> = leaf "Source",
        fail_reason: Txt<'a> = leaf "FailReason",
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
