//! `open_approval_change`: a status change in the approval-flow engine of our own app
//! (PROTOCOL.md §3.2): its typed value, the `element!` tables of its nodes and the conversion.
//!
//! The `<ApprovalInfo>` element itself is walked by [`super::approval`], which holds the union
//! of both approval events' fields.

use serde::Serialize;

use super::approval::RawApprovalInfo;
use super::element::element;
use super::xml::Txt;
use super::{EventHeader, EventParseError, each, malformed, num, req_num, req_token, text, token};

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

element! {
    pub(super) struct RawApprovalNode<'a> in "ApprovalNode/" {
        node_status: Txt<'a> = leaf "NodeStatus",
        node_attr: Txt<'a> = leaf "NodeAttr",
        node_type: Txt<'a> = leaf "NodeType",
        items: Vec<RawItem<'a>> = list "Items" of "Item",
    }

    /// `<Items><Item>` and `<NotifyNode>` (same child names).
    pub(super) struct RawItem<'a> in "" {
        name: Txt<'a> = leaf "ItemName",
        /// `ItemUserid` is a spelling WeCom also sends; it fills the same slot.
        user_id: Txt<'a> = leaf "ItemUserId" | "ItemUserid",
        image: Txt<'a> = leaf "ItemImage",
        status: Txt<'a> = leaf "ItemStatus",
        speech: Txt<'a> = leaf "ItemSpeech",
        op_time: Txt<'a> = leaf "ItemOpTime",
    }
}

/// Builds the typed event; `info` is `None` when the callback has no `<ApprovalInfo>`.
pub(super) fn build(
    header: EventHeader,
    info: Option<RawApprovalInfo<'_>>,
) -> Result<OpenApprovalChange, EventParseError> {
    let info = info.ok_or_else(|| malformed("open_approval_change without ApprovalInfo"))?;
    let third_no = req_token(info.third_no, "ApprovalInfo/ThirdNo")?;
    let open_sp_status = req_num(&info.open_sp_status, "ApprovalInfo/OpenSpStatus")?;
    let apply_time = num(&info.apply_time, "ApprovalInfo/ApplyTime")?.unwrap_or(0);
    let approver_step = num(&info.approver_step, "ApprovalInfo/approverstep")?;

    let nodes = each(info.approval_nodes, |n| {
        let items = each(n.items, |i| {
            Ok(OpenApprovalItem {
                item_status: num(&i.status, "ApprovalNode/Items/Item/ItemStatus")?,
                item_op_time: num(&i.op_time, "ApprovalNode/Items/Item/ItemOpTime")?,
                item_name: text(i.name),
                item_user_id: token(i.user_id),
                item_image: token(i.image),
                item_speech: text(i.speech),
            })
        })?;
        Ok(OpenApprovalNode {
            node_status: num(&n.node_status, "ApprovalNode/NodeStatus")?,
            node_attr: num(&n.node_attr, "ApprovalNode/NodeAttr")?,
            node_type: num(&n.node_type, "ApprovalNode/NodeType")?,
            items,
        })
    })?;

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
