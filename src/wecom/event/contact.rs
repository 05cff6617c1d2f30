//! `change_contact`: a directory change (member, department or tag; PROTOCOL.md §3.3): its
//! typed value, the walker method for its root children and the conversion with the
//! per-`ChangeType` subject checks.

use serde::Serialize;

use super::xml::{Txt, Walker, xml_trim};
use super::{EventHeader, EventParseError, malformed, num, req_token, text, token};

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

/// The root children of a `change_contact` callback other than the header and `UserID`.
#[derive(Default)]
pub(super) struct RawContact<'a> {
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
}

#[derive(Default)]
struct RawExtAttrItem<'a> {
    name: Txt<'a>,
    attr_type: Txt<'a>,
    text_value: Txt<'a>,
    web_title: Txt<'a>,
    web_url: Txt<'a>,
}

impl<'a> Walker<'a> {
    /// A root child of a `change_contact` callback; `Ok(false)` if `name` is not one.
    pub(super) fn contact_field(
        &mut self,
        out: &mut RawContact<'a>,
        name: &str,
        empty: bool,
    ) -> Result<bool, EventParseError> {
        if name == "ExtAttr" {
            self.list(&mut out.ext_attr, empty, "Item", Self::ext_attr_item)?;
            return Ok(true);
        }
        let leaves = [
            ("NewUserID", &mut out.new_user_id),
            ("Name", &mut out.name),
            ("Department", &mut out.department),
            ("MainDepartment", &mut out.main_department),
            ("IsLeaderInDept", &mut out.is_leader_in_dept),
            ("DirectLeader", &mut out.direct_leader),
            ("Position", &mut out.position),
            ("Mobile", &mut out.mobile),
            ("Gender", &mut out.gender),
            ("Email", &mut out.email),
            ("BizMail", &mut out.biz_mail),
            ("Status", &mut out.status),
            ("Avatar", &mut out.avatar),
            ("Alias", &mut out.alias),
            ("Telephone", &mut out.telephone),
            ("Address", &mut out.address),
            ("Id", &mut out.id),
            ("ParentId", &mut out.parent_id),
            ("Order", &mut out.order),
            ("TagId", &mut out.tag_id),
            ("AddUserItems", &mut out.add_user_items),
            ("DelUserItems", &mut out.del_user_items),
            ("AddPartyItems", &mut out.add_party_items),
            ("DelPartyItems", &mut out.del_party_items),
        ];
        self.leaf_among(name, empty, leaves)
    }

    fn ext_attr_item(&mut self, out: &mut RawExtAttrItem<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "Text" if !empty => w.children(|w, name, empty| {
                    let leaves = [("ExtAttr/Item/Text/Value", &mut out.text_value)];
                    w.leaf_among(name, empty, leaves)
                })?,
                "Web" if !empty => w.children(|w, name, empty| {
                    let leaves = [
                        ("ExtAttr/Item/Web/Title", &mut out.web_title),
                        ("ExtAttr/Item/Web/Url", &mut out.web_url),
                    ];
                    w.leaf_among(name, empty, leaves)
                })?,
                "Text" | "Web" => {}
                _ => {
                    let leaves = [
                        ("ExtAttr/Item/Name", &mut out.name),
                        ("ExtAttr/Item/Type", &mut out.attr_type),
                    ];
                    return w.leaf_among(name, empty, leaves);
                }
            }
            Ok(true)
        })
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
