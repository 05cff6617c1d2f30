//! The typed input of a mapping: what a delivery job carries and what mapping paths address.
//!
//! Every input is snake_case JSON through [`MapInput::to_value`]: an approval is the normalised
//! instance (`sp_no`, `form_by_title`, …); a directory change is a [`ContactRecord`]; a customer
//! change is a [`CustomerRecord`]. The contact and customer records merge the callback's fields
//! with the record WeCom's API returned for them (`user/get`, `externalcontact/get`) when the
//! route stage could fetch it. `docs/mapping-input.md` lists every field.
//!
//! Pure data: no I/O. It must not change a field's name or type once mappings are written
//! against it (add fields instead).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::wecom::approval::ApprovalInstance;
use crate::wecom::event::{ContactChange, ExternalContactChange};

/// What a mapping reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "one input per job, built once and moved into the job"
)]
pub enum MapInput {
    /// A normalised approval instance (the detail fetched from `oa/getapprovaldetail`).
    Approval(ApprovalInstance),
    /// A directory (member, department, tag) change.
    Contact(ContactRecord),
    /// A customer (external contact) change.
    Customer(CustomerRecord),
    /// An approval from a version 1 job, already normalised into its document by
    /// `ApprovalInstance::to_document` before it was queued. [`MapInput::to_value`] returns
    /// it unchanged, so it reads exactly like [`MapInput::Approval`].
    ApprovalDocument(Value),
}

impl MapInput {
    /// The JSON document mapping paths address (snake_case throughout).
    pub fn to_value(&self) -> Value {
        match self {
            MapInput::Approval(a) => a.to_document(),
            MapInput::Contact(c) => to_json(c),
            MapInput::Customer(c) => to_json(c),
            MapInput::ApprovalDocument(v) => v.clone(),
        }
    }

    /// `approval`, `contact` or `customer`.
    pub fn kind(&self) -> &'static str {
        match self {
            MapInput::Approval(_) | MapInput::ApprovalDocument(_) => "approval",
            MapInput::Contact(_) => "contact",
            MapInput::Customer(_) => "customer",
        }
    }

    /// Reads the untyped document of a version 1 job: an approval document (it has
    /// `sp_no`), or `{"event": {"ContactChange" | "ExternalContactChange": …}, "user" |
    /// "customer": …}` with the event in WeCom's PascalCase names.
    pub fn from_v1_document(doc: Value) -> Result<MapInput, &'static str> {
        if doc.get("sp_no").is_some() {
            return Ok(MapInput::ApprovalDocument(doc));
        }
        let event = doc
            .get("event")
            .ok_or("document has neither `sp_no` nor `event`")?;
        if let Some(e) = event.get("ContactChange") {
            let mut c = ContactRecord::from_v1_event(e);
            if let Some(user) = doc.get("user") {
                c.merge_directory(user);
            }
            return Ok(MapInput::Contact(c));
        }
        if let Some(e) = event.get("ExternalContactChange") {
            let mut c = CustomerRecord::from_v1_event(e);
            if let Some(customer) = doc.get("customer") {
                c.merge_customer(customer);
            }
            return Ok(MapInput::Customer(c));
        }
        Err("`event` is neither a ContactChange nor an ExternalContactChange")
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    // plain structs of strings, numbers, booleans and vectors always serialise
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A directory change (`change_contact`), merged with the member's `user/get` record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    /// `create_user`, `update_user`, `delete_user`, `create_party`, `update_party`,
    /// `delete_party` or `update_tag`.
    pub change_type: String,
    /// When WeCom sent the event (Unix seconds, `CreateTime`).
    pub event_time: i64,
    /// The member's user id (member events).
    pub user_id: Option<String>,
    /// The member's new user id when `update_user` changed it.
    pub new_user_id: Option<String>,
    /// Member name (member events) or department name (department events).
    pub name: Option<String>,
    /// The member's department ids.
    pub department_ids: Vec<String>,
    /// The member's main department id.
    pub main_department: Option<String>,
    /// Per entry of `department_ids`: whether the member leads that department.
    pub is_leader_in_dept: Vec<bool>,
    /// User ids of the member's direct leaders.
    pub direct_leaders: Vec<String>,
    /// Job title.
    pub position: Option<String>,
    /// Mobile number.
    pub mobile: Option<String>,
    /// 0 unknown, 1 male, 2 female.
    pub gender: Option<u32>,
    /// E-mail address.
    pub email: Option<String>,
    /// Business (corp) e-mail address.
    pub biz_mail: Option<String>,
    /// 1 active, 2 disabled, 4 not activated, 5 left.
    pub status: Option<u32>,
    /// Avatar URL.
    pub avatar: Option<String>,
    /// Alias.
    pub alias: Option<String>,
    /// Landline.
    pub telephone: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// The member's cross-corp open user id (`user/get` only).
    pub open_user_id: Option<String>,
    /// Custom member attributes.
    pub attributes: Vec<ContactAttribute>,
    /// Department events: the department's id.
    pub department_id: Option<String>,
    /// Department events: the parent department's id.
    pub parent_department_id: Option<String>,
    /// Department events: the department's order value.
    pub order: Option<String>,
    /// `update_tag`: the tag's id.
    pub tag_id: Option<String>,
    /// `update_tag`: user ids added to the tag.
    pub added_user_ids: Vec<String>,
    /// `update_tag`: user ids removed from the tag.
    pub removed_user_ids: Vec<String>,
    /// `update_tag`: department ids added to the tag.
    pub added_department_ids: Vec<String>,
    /// `update_tag`: department ids removed from the tag.
    pub removed_department_ids: Vec<String>,
    /// Whether the member's `user/get` record was fetched and merged in.
    pub directory_fetched: bool,
}

/// A custom member attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactAttribute {
    /// Attribute name.
    pub name: Option<String>,
    /// Text value (text attributes).
    pub text: Option<String>,
    /// Link title (web attributes).
    pub web_title: Option<String>,
    /// Link URL (web attributes).
    pub web_url: Option<String>,
}

impl ContactRecord {
    /// From the parsed callback; merge the directory record with
    /// [`ContactRecord::merge_directory`].
    pub fn from_event(e: &ContactChange) -> ContactRecord {
        ContactRecord {
            change_type: e.change_type.clone(),
            event_time: e.header.create_time,
            user_id: e.user_id.clone(),
            new_user_id: e.new_user_id.clone(),
            name: e.name.clone(),
            department_ids: e.department.clone(),
            main_department: e.main_department.clone(),
            is_leader_in_dept: flags(e.is_leader_in_dept.as_deref()),
            direct_leaders: list(e.direct_leader.as_deref()),
            position: e.position.clone(),
            mobile: e.mobile.clone(),
            gender: number(e.gender.as_deref()),
            email: e.email.clone(),
            biz_mail: e.biz_mail.clone(),
            status: number(e.status.as_deref()),
            avatar: e.avatar.clone(),
            alias: e.alias.clone(),
            telephone: e.telephone.clone(),
            address: e.address.clone(),
            open_user_id: None,
            attributes: e
                .ext_attr
                .iter()
                .map(|a| ContactAttribute {
                    name: a.name.clone(),
                    text: a.text_value.clone(),
                    web_title: a.web_title.clone(),
                    web_url: a.web_url.clone(),
                })
                .collect(),
            department_id: e.id.clone(),
            parent_department_id: e.parent_id.clone(),
            order: e.order.clone(),
            tag_id: e.tag_id.clone(),
            added_user_ids: list(e.add_user_items.as_deref()),
            removed_user_ids: list(e.del_user_items.as_deref()),
            added_department_ids: list(e.add_party_items.as_deref()),
            removed_department_ids: list(e.del_party_items.as_deref()),
            directory_fetched: false,
        }
    }

    /// From a v1 job's event object (WeCom's PascalCase names, as the event serialised).
    fn from_v1_event(e: &Value) -> ContactRecord {
        let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
        ContactRecord {
            change_type: s("ChangeType").unwrap_or_default(),
            event_time: e.get("CreateTime").and_then(Value::as_i64).unwrap_or(0),
            user_id: s("UserID"),
            new_user_id: s("NewUserID"),
            name: s("Name"),
            department_ids: strings(e.get("Department")),
            main_department: s("MainDepartment"),
            is_leader_in_dept: flags(s("IsLeaderInDept").as_deref()),
            direct_leaders: list(s("DirectLeader").as_deref()),
            position: s("Position"),
            mobile: s("Mobile"),
            gender: number(s("Gender").as_deref()),
            email: s("Email"),
            biz_mail: s("BizMail"),
            status: number(s("Status").as_deref()),
            avatar: s("Avatar"),
            alias: s("Alias"),
            telephone: s("Telephone"),
            address: s("Address"),
            open_user_id: None,
            attributes: e
                .get("ExtAttr")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|a| {
                            let s = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_owned);
                            ContactAttribute {
                                name: s("Name"),
                                text: s("TextValue"),
                                web_title: s("WebTitle"),
                                web_url: s("WebUrl"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
            department_id: s("Id"),
            parent_department_id: s("ParentId"),
            order: s("Order"),
            tag_id: s("TagId"),
            added_user_ids: list(s("AddUserItems").as_deref()),
            removed_user_ids: list(s("DelUserItems").as_deref()),
            added_department_ids: list(s("AddPartyItems").as_deref()),
            removed_department_ids: list(s("DelPartyItems").as_deref()),
            directory_fetched: false,
        }
    }

    /// Merges the member's `user/get` record: a value the directory has wins over the
    /// event's (the directory is the current state), the event fills the rest.
    pub fn merge_directory(&mut self, user: &Value) {
        let s = |k: &str| text(user.get(k));
        fill(&mut self.name, s("name"));
        let departments = strings(user.get("department"));
        if !departments.is_empty() {
            self.department_ids = departments;
        }
        fill(&mut self.main_department, s("main_department"));
        if let Some(leads) = user.get("is_leader_in_dept").and_then(Value::as_array) {
            self.is_leader_in_dept = leads.iter().map(|v| v.as_i64() == Some(1)).collect();
        }
        let leaders = strings(user.get("direct_leader"));
        if !leaders.is_empty() {
            self.direct_leaders = leaders;
        }
        fill(&mut self.position, s("position"));
        fill(&mut self.mobile, s("mobile"));
        fill(&mut self.gender, number(s("gender").as_deref()));
        fill(&mut self.email, s("email"));
        fill(&mut self.biz_mail, s("biz_mail"));
        fill(&mut self.status, number(s("status").as_deref()));
        fill(&mut self.avatar, s("avatar"));
        fill(&mut self.alias, s("alias"));
        fill(&mut self.telephone, s("telephone"));
        fill(&mut self.address, s("address"));
        fill(&mut self.open_user_id, s("open_userid"));
        if let Some(attrs) = user
            .get("extattr")
            .and_then(|x| x.get("attrs"))
            .and_then(Value::as_array)
        {
            self.attributes = attrs
                .iter()
                .map(|a| ContactAttribute {
                    name: text(a.get("name")),
                    text: text(a.get("text").and_then(|t| t.get("value")))
                        .or_else(|| text(a.get("value"))),
                    web_title: text(a.get("web").and_then(|w| w.get("title"))),
                    web_url: text(a.get("web").and_then(|w| w.get("url"))),
                })
                .collect();
        }
        self.directory_fetched = true;
    }
}

/// A customer change (`change_external_contact`), merged with `externalcontact/get`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// `add_external_contact`, `edit_external_contact`, `add_half_external_contact`,
    /// `del_external_contact`, `del_follow_user`, `transfer_fail`, …
    pub change_type: String,
    /// When WeCom sent the event (Unix seconds).
    pub event_time: i64,
    /// Our member the change is about.
    pub user_id: String,
    /// The customer's external user id.
    pub external_user_id: String,
    /// The 「联系我」 state or customer-channel value.
    pub state: Option<String>,
    /// Welcome code (absent when a welcome message cannot be sent).
    pub welcome_code: Option<String>,
    /// Why it was deleted, e.g. `DELETE_BY_TRANSFER`.
    pub source: Option<String>,
    /// Why a transfer failed, e.g. `customer_refused`.
    pub fail_reason: Option<String>,
    /// The customer's name.
    pub name: Option<String>,
    /// The customer's job title.
    pub position: Option<String>,
    /// Avatar URL.
    pub avatar: Option<String>,
    /// The customer's company short name.
    pub corp_name: Option<String>,
    /// The customer's company full name.
    pub corp_full_name: Option<String>,
    /// 1 a WeChat user, 2 a WeCom user.
    pub customer_type: Option<u32>,
    /// 0 unknown, 1 male, 2 female.
    pub gender: Option<u32>,
    /// WeChat union id (when the app may see it).
    pub union_id: Option<String>,
    /// Our members who have this customer, with their remarks and tags.
    pub follow_users: Vec<FollowUser>,
    /// Whether the `externalcontact/get` record was fetched and merged in.
    pub customer_fetched: bool,
}

/// One of our members who has the customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUser {
    /// The member's user id.
    pub user_id: String,
    /// The member's remark for the customer.
    pub remark: Option<String>,
    /// The member's description of the customer.
    pub description: Option<String>,
    /// When the member added the customer (Unix seconds).
    pub created_at: Option<i64>,
    /// The remarked company name.
    pub remark_corp_name: Option<String>,
    /// Remarked phone numbers.
    pub remark_mobiles: Vec<String>,
    /// How the customer was added (WeCom's `add_way` code).
    pub add_way: Option<u32>,
    /// The 「联系我」 state when added that way.
    pub state: Option<String>,
    /// Tags the member put on the customer.
    pub tags: Vec<CustomerTag>,
}

/// A tag on a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerTag {
    /// Tag group name.
    pub group_name: Option<String>,
    /// Tag name.
    pub tag_name: Option<String>,
    /// Tag id (corp tags).
    pub tag_id: Option<String>,
    /// 1 corp tag, 2 personal tag, 3 rule-group tag.
    pub tag_type: Option<u32>,
}

impl CustomerRecord {
    /// From the parsed callback; merge the API record with
    /// [`CustomerRecord::merge_customer`].
    pub fn from_event(e: &ExternalContactChange) -> CustomerRecord {
        CustomerRecord {
            change_type: e.change_type.clone(),
            event_time: e.header.create_time,
            user_id: e.user_id.clone(),
            external_user_id: e.external_user_id.clone(),
            state: e.state.clone(),
            welcome_code: e.welcome_code.clone(),
            source: e.source.clone(),
            fail_reason: e.fail_reason.clone(),
            ..CustomerRecord::default()
        }
    }

    fn from_v1_event(e: &Value) -> CustomerRecord {
        let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
        CustomerRecord {
            change_type: s("ChangeType").unwrap_or_default(),
            event_time: e.get("CreateTime").and_then(Value::as_i64).unwrap_or(0),
            user_id: s("UserID").unwrap_or_default(),
            external_user_id: s("ExternalUserID").unwrap_or_default(),
            state: s("State"),
            welcome_code: s("WelcomeCode"),
            source: s("Source"),
            fail_reason: s("FailReason"),
            ..CustomerRecord::default()
        }
    }

    /// Merges the `externalcontact/get` answer (`external_contact` and `follow_user`).
    pub fn merge_customer(&mut self, answer: &Value) {
        if let Some(c) = answer.get("external_contact") {
            let s = |k: &str| text(c.get(k));
            fill(&mut self.name, s("name"));
            fill(&mut self.position, s("position"));
            fill(&mut self.avatar, s("avatar"));
            fill(&mut self.corp_name, s("corp_name"));
            fill(&mut self.corp_full_name, s("corp_full_name"));
            fill(&mut self.customer_type, number(s("type").as_deref()));
            fill(&mut self.gender, number(s("gender").as_deref()));
            fill(&mut self.union_id, s("unionid"));
        }
        if let Some(follow) = answer.get("follow_user").and_then(Value::as_array) {
            self.follow_users = follow
                .iter()
                .map(|f| FollowUser {
                    user_id: text(f.get("userid")).unwrap_or_default(),
                    remark: text(f.get("remark")),
                    description: text(f.get("description")),
                    created_at: f.get("createtime").and_then(Value::as_i64),
                    remark_corp_name: text(f.get("remark_corp_name")),
                    remark_mobiles: strings(f.get("remark_mobiles")),
                    add_way: number(text(f.get("add_way")).as_deref()),
                    state: text(f.get("state")),
                    tags: f
                        .get("tags")
                        .and_then(Value::as_array)
                        .map(|tags| {
                            tags.iter()
                                .map(|t| CustomerTag {
                                    group_name: text(t.get("group_name")),
                                    tag_name: text(t.get("tag_name")),
                                    tag_id: text(t.get("tag_id")),
                                    tag_type: number(text(t.get("type")).as_deref()),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect();
        }
        self.customer_fetched = true;
    }
}

/// A JSON string or number as text; empty strings are absent.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON array of strings or numbers as texts.
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| text(Some(x))).collect())
        .unwrap_or_default()
}

/// A comma list as trimmed, non-empty entries.
fn list(s: Option<&str>) -> Vec<String> {
    s.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// A comma list of 0/1 flags.
fn flags(s: Option<&str>) -> Vec<bool> {
    list(s).iter().map(|x| x == "1").collect()
}

fn number(s: Option<&str>) -> Option<u32> {
    s.and_then(|s| s.trim().parse().ok())
}

/// Replaces `slot` with `v` when `v` has a value.
fn fill<T>(slot: &mut Option<T>, v: Option<T>) {
    if v.is_some() {
        *slot = v;
    }
}

#[cfg(test)]
mod tests;
