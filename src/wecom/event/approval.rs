//! `sys_approval_change`: a status change of a form in WeCom's built-in 审批 app
//! (PROTOCOL.md §3.1): its typed value, the `element!` table of `<ApprovalInfo>` and the
//! conversion with its essential-field checks.
//!
//! `<ApprovalInfo>` is shared with `open_approval_change`: [`RawApprovalInfo`] holds the union
//! of both events' fields, and [`super::open_approval`] builds its event from the same value.
//! The callback carries no form data; the form is fetched by the route stage.

use std::borrow::Cow;

use serde::Serialize;

use super::element::element;
use super::open_approval::{RawApprovalNode, RawItem};
use super::xml::Txt;
use super::{EventHeader, EventParseError, each, malformed, num, req_num, text, texts, token};

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

element! {
    /// `<ApprovalInfo>`: union of sys_approval_change and open_approval_change fields.
    pub(super) struct RawApprovalInfo<'a> in "" {
        sp_no_str: Txt<'a> = leaf "SpNoStr",
        sp_no: Txt<'a> = leaf "SpNo",
        sp_name: Txt<'a> = leaf "SpName",
        sp_status: Txt<'a> = leaf "SpStatus",
        template_id: Txt<'a> = leaf "TemplateId",
        apply_time: Txt<'a> = leaf "ApplyTime",
        applyer: Option<RawApplyer<'a>> = single "Applyer",
        sp_record: Vec<RawSpRecord<'a>> = repeated "SpRecord",
        notifyer: Vec<RawUser<'a>> = repeated "Notifyer",
        comments: Vec<RawComment<'a>> = repeated "Comments",
        process_list: Vec<RawNode<'a>> = list "ProcessList" of "NodeList",
        statu_change_event: Txt<'a> = leaf "StatuChangeEvent",
        third_no: Txt<'a> = leaf "ThirdNo",
        open_sp_name: Txt<'a> = leaf "OpenSpName",
        open_template_id: Txt<'a> = leaf "OpenTemplateId",
        open_sp_status: Txt<'a> = leaf "OpenSpStatus",
        apply_user_name: Txt<'a> = leaf "ApplyUserName",
        apply_user_id: Txt<'a> = leaf "ApplyUserId",
        apply_user_party: Txt<'a> = leaf "ApplyUserParty",
        apply_user_image: Txt<'a> = leaf "ApplyUserImage",
        approval_nodes: Vec<RawApprovalNode<'a>> = list "ApprovalNodes" of "ApprovalNode",
        notify_nodes: Vec<RawItem<'a>> = list "NotifyNodes" of "NotifyNode",
        approver_step: Txt<'a> = leaf "approverstep",
    }

    pub(super) struct RawApplyer<'a> in "Applyer/" {
        user_id: Txt<'a> = leaf "UserId",
        party: Txt<'a> = leaf "Party",
    }

    /// An element whose only interesting child is `<UserId>` (`Notifyer`, `Approver`, …).
    pub(super) struct RawUser<'a> in "" {
        user_id: Txt<'a> = leaf "UserId",
    }

    pub(super) struct RawSpRecord<'a> in "SpRecord/" {
        sp_status: Txt<'a> = leaf "SpStatus",
        approver_attr: Txt<'a> = leaf "ApproverAttr",
        details: Vec<RawDetail<'a>> = repeated "Details",
    }

    pub(super) struct RawDetail<'a> in "Details/" {
        approver: Option<RawUser<'a>> = single "Approver",
        speech: Txt<'a> = leaf "Speech",
        sp_status: Txt<'a> = leaf "SpStatus",
        sp_time: Txt<'a> = leaf "SpTime",
        attach: Vec<Cow<'a, str>> = texts "Attach",
    }

    pub(super) struct RawComment<'a> in "Comments/" {
        user: Option<RawUser<'a>> = single "CommentUserInfo",
        time: Txt<'a> = leaf "CommentTime",
        content: Txt<'a> = leaf "CommentContent",
        comment_id: Txt<'a> = leaf "CommentId",
        attach: Vec<Cow<'a, str>> = texts "Attach",
    }

    pub(super) struct RawNode<'a> in "NodeList/" {
        node_type: Txt<'a> = leaf "NodeType",
        sp_status: Txt<'a> = leaf "SpStatus",
        apv_rel: Txt<'a> = leaf "ApvRel",
        sub_node_list: Vec<RawSubNode<'a>> = repeated "SubNodeList",
    }

    pub(super) struct RawSubNode<'a> in "SubNodeList/" {
        user: Option<RawUser<'a>> = single "UserInfo",
        speech: Txt<'a> = leaf "Speech",
        sp_yj: Txt<'a> = leaf "SpYj",
        sp_time: Txt<'a> = leaf "Sptime",
        media_ids: Vec<Cow<'a, str>> = texts "MediaIds",
    }
}

/// The `<UserId>` of an element that holds one (`None` if the element or its id is absent).
fn user_id(user: Option<RawUser<'_>>) -> Option<String> {
    token(user.and_then(|u| u.user_id))
}

/// Builds the typed event; `info` is `None` when the callback has no `<ApprovalInfo>`.
pub(super) fn build(
    header: EventHeader,
    info: Option<RawApprovalInfo<'_>>,
) -> Result<ApprovalChange, EventParseError> {
    let info = info.ok_or_else(|| malformed("sys_approval_change without ApprovalInfo"))?;
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

    let sp_records = each(info.sp_record, |r| {
        let details = each(r.details, |d| {
            Ok(SpRecordDetail {
                sp_status: num(&d.sp_status, "SpRecord/Details/SpStatus")?,
                sp_time: num(&d.sp_time, "SpRecord/Details/SpTime")?,
                approver_user_id: user_id(d.approver),
                speech: text(d.speech),
                attach: texts(d.attach),
            })
        })?;
        Ok(SpRecord {
            sp_status: num(&r.sp_status, "SpRecord/SpStatus")?,
            approver_attr: num(&r.approver_attr, "SpRecord/ApproverAttr")?,
            details,
        })
    })?;

    let notifyers = info
        .notifyer
        .into_iter()
        .filter_map(|n| token(n.user_id))
        .collect();

    let comments = each(info.comments, |c| {
        Ok(Comment {
            time: num(&c.time, "Comments/CommentTime")?,
            user_id: user_id(c.user),
            content: text(c.content),
            comment_id: token(c.comment_id),
            attach: texts(c.attach),
        })
    })?;

    let process_nodes = each(info.process_list, |n| {
        let sub_nodes = each(n.sub_node_list, |s| {
            Ok(ProcessSubNode {
                sp_yj: num(&s.sp_yj, "NodeList/SubNodeList/SpYj")?,
                sp_time: num(&s.sp_time, "NodeList/SubNodeList/Sptime")?,
                user_id: user_id(s.user),
                speech: text(s.speech),
                media_ids: texts(s.media_ids),
            })
        })?;
        Ok(ProcessNode {
            node_type: num(&n.node_type, "NodeList/NodeType")?,
            sp_status: num(&n.sp_status, "NodeList/SpStatus")?,
            apv_rel: num(&n.apv_rel, "NodeList/ApvRel")?,
            sub_nodes,
        })
    })?;

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
