//! `change_contact`: a directory change (member, department or tag; PROTOCOL.md §3.3): its
//! typed value, the `element!` table of its root children and the conversion with the
//! per-`ChangeType` subject checks.

use serde::Serialize;

use super::element::element;
use super::xml::{Txt, xml_trim};
use super::{EventHeader, EventParseError, each, malformed, num, req_token, text, token};

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

element! {
    /// The root children of a `change_contact` callback other than the header and `UserID`.
    pub(super) struct RawContact<'a> in "" {
        new_user_id: Txt<'a> = leaf "NewUserID",
        name: Txt<'a> = leaf "Name",
        department: Txt<'a> = leaf "Department",
        main_department: Txt<'a> = leaf "MainDepartment",
        is_leader_in_dept: Txt<'a> = leaf "IsLeaderInDept",
        direct_leader: Txt<'a> = leaf "DirectLeader",
        position: Txt<'a> = leaf "Position",
        mobile: Txt<'a> = leaf "Mobile",
        gender: Txt<'a> = leaf "Gender",
        email: Txt<'a> = leaf "Email",
        biz_mail: Txt<'a> = leaf "BizMail",
        status: Txt<'a> = leaf "Status",
        avatar: Txt<'a> = leaf "Avatar",
        alias: Txt<'a> = leaf "Alias",
        telephone: Txt<'a> = leaf "Telephone",
        address: Txt<'a> = leaf "Address",
        ext_attr: Vec<RawExtAttrItem<'a>> = list "ExtAttr" of "Item",
        id: Txt<'a> = leaf "Id",
        parent_id: Txt<'a> = leaf "ParentId",
        order: Txt<'a> = leaf "Order",
        tag_id: Txt<'a> = leaf "TagId",
        add_user_items: Txt<'a> = leaf "AddUserItems",
        del_user_items: Txt<'a> = leaf "DelUserItems",
        add_party_items: Txt<'a> = leaf "AddPartyItems",
        del_party_items: Txt<'a> = leaf "DelPartyItems",
    }

    pub(super) struct RawExtAttrItem<'a> in "ExtAttr/Item/" {
        name: Txt<'a> = leaf "Name",
        attr_type: Txt<'a> = leaf "Type",
        text: RawExtText<'a> = nested "Text",
        web: RawExtWeb<'a> = nested "Web",
    }

    pub(super) struct RawExtText<'a> in "ExtAttr/Item/Text/" {
        value: Txt<'a> = leaf "Value",
    }

    pub(super) struct RawExtWeb<'a> in "ExtAttr/Item/Web/" {
        title: Txt<'a> = leaf "Title",
        url: Txt<'a> = leaf "Url",
    }
}

/// Builds the typed event from the root's `ChangeType` and `UserID` and the rest of its
/// contact fields.
pub(super) fn build(
    header: EventHeader,
    change_type: Txt<'_>,
    user_id: Txt<'_>,
    raw: RawContact<'_>,
) -> Result<ContactChange, EventParseError> {
    let change_type = req_token(change_type, "change_contact ChangeType")?;
    let user_id = token(user_id);
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
    let ext_attr = each(raw.ext_attr, |i| {
        Ok(ExtAttrItem {
            attr_type: num(&i.attr_type, "ExtAttr/Item/Type")?,
            name: text(i.name),
            text_value: text(i.text.value),
            web_title: text(i.web.title),
            web_url: token(i.web.url),
        })
    })?;

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
