//! `sys_approval_change`: a status change of a form in WeCom's built-in 审批 app
//! (PROTOCOL.md §3.1): its typed value, the walker methods for `<ApprovalInfo>` and the
//! conversion with its essential-field checks.
//!
//! `<ApprovalInfo>` is shared with `open_approval_change`: [`RawApprovalInfo`] holds the union
//! of both events' fields, and [`super::open_approval`] builds its event from the same value.
//! The callback carries no form data; the form is fetched by the route stage.

use std::borrow::Cow;

use serde::Serialize;

use super::open_approval::{RawApprovalNode, RawItem};
use super::xml::{Txt, Walker};
use super::{EventHeader, EventParseError, malformed, num, req_num, text, texts, token};

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

/// `<ApprovalInfo>`: union of sys_approval_change and open_approval_change fields.
#[derive(Default)]
pub(super) struct RawApprovalInfo<'a> {
    pub(super) sp_no_str: Txt<'a>,
    pub(super) sp_no: Txt<'a>,
    pub(super) sp_name: Txt<'a>,
    pub(super) sp_status: Txt<'a>,
    pub(super) template_id: Txt<'a>,
    pub(super) apply_time: Txt<'a>,
    pub(super) applyer: Option<RawApplyer<'a>>,
    pub(super) sp_record: Vec<RawSpRecord<'a>>,
    /// `Notifyer/UserId` per `Notifyer` element.
    pub(super) notifyer: Vec<Txt<'a>>,
    pub(super) comments: Vec<RawComment<'a>>,
    pub(super) process_list: Vec<RawNode<'a>>,
    pub(super) statu_change_event: Txt<'a>,
    pub(super) third_no: Txt<'a>,
    pub(super) open_sp_name: Txt<'a>,
    pub(super) open_template_id: Txt<'a>,
    pub(super) open_sp_status: Txt<'a>,
    pub(super) apply_user_name: Txt<'a>,
    pub(super) apply_user_id: Txt<'a>,
    pub(super) apply_user_party: Txt<'a>,
    pub(super) apply_user_image: Txt<'a>,
    pub(super) approval_nodes: Vec<RawApprovalNode<'a>>,
    pub(super) notify_nodes: Vec<RawItem<'a>>,
    pub(super) approver_step: Txt<'a>,
}

impl<'a> RawApprovalInfo<'a> {
    /// The text-only children of `<ApprovalInfo>`, by element name.
    fn leaves(&mut self) -> [(&'static str, &mut Txt<'a>); 16] {
        [
            ("SpNoStr", &mut self.sp_no_str),
            ("SpNo", &mut self.sp_no),
            ("SpName", &mut self.sp_name),
            ("SpStatus", &mut self.sp_status),
            ("TemplateId", &mut self.template_id),
            ("ApplyTime", &mut self.apply_time),
            ("StatuChangeEvent", &mut self.statu_change_event),
            ("ThirdNo", &mut self.third_no),
            ("OpenSpName", &mut self.open_sp_name),
            ("OpenTemplateId", &mut self.open_template_id),
            ("OpenSpStatus", &mut self.open_sp_status),
            ("ApplyUserName", &mut self.apply_user_name),
            ("ApplyUserId", &mut self.apply_user_id),
            ("ApplyUserParty", &mut self.apply_user_party),
            ("ApplyUserImage", &mut self.apply_user_image),
            ("approverstep", &mut self.approver_step),
        ]
    }
}

#[derive(Default)]
pub(super) struct RawApplyer<'a> {
    user_id: Txt<'a>,
    party: Txt<'a>,
}

#[derive(Default)]
pub(super) struct RawSpRecord<'a> {
    sp_status: Txt<'a>,
    approver_attr: Txt<'a>,
    details: Vec<RawDetail<'a>>,
}

#[derive(Default)]
pub(super) struct RawDetail<'a> {
    /// `Some` once `<Approver>` was seen; inner value is its `UserId`.
    approver: Option<Txt<'a>>,
    speech: Txt<'a>,
    sp_status: Txt<'a>,
    sp_time: Txt<'a>,
    attach: Vec<Cow<'a, str>>,
}

#[derive(Default)]
pub(super) struct RawComment<'a> {
    /// `CommentUserInfo/UserId`.
    user: Option<Txt<'a>>,
    time: Txt<'a>,
    content: Txt<'a>,
    comment_id: Txt<'a>,
    attach: Vec<Cow<'a, str>>,
}

#[derive(Default)]
pub(super) struct RawNode<'a> {
    node_type: Txt<'a>,
    sp_status: Txt<'a>,
    apv_rel: Txt<'a>,
    sub_node_list: Vec<RawSubNode<'a>>,
}

#[derive(Default)]
pub(super) struct RawSubNode<'a> {
    /// `UserInfo/UserId`.
    user: Option<Txt<'a>>,
    speech: Txt<'a>,
    sp_yj: Txt<'a>,
    sp_time: Txt<'a>,
    media_ids: Vec<Cow<'a, str>>,
}

impl<'a> Walker<'a> {
    /// `<ApprovalInfo>` of either approval event.
    pub(super) fn approval_info(
        &mut self,
        out: &mut RawApprovalInfo<'a>,
    ) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "Applyer" => w.single(&mut out.applyer, empty, "Applyer", Self::applyer)?,
                "SpRecord" => w.repeated(&mut out.sp_record, empty, Self::sp_record)?,
                "Notifyer" => w.repeated(&mut out.notifyer, empty, Self::user)?,
                "Comments" => w.repeated(&mut out.comments, empty, Self::comment)?,
                "ProcessList" => w.list(&mut out.process_list, empty, "NodeList", Self::node)?,
                "ApprovalNodes" => {
                    let nodes = &mut out.approval_nodes;
                    w.list(nodes, empty, "ApprovalNode", Self::approval_node)?;
                }
                "NotifyNodes" => w.list(&mut out.notify_nodes, empty, "NotifyNode", Self::item)?,
                _ => return w.leaf_among(name, empty, out.leaves()),
            }
            Ok(true)
        })
    }

    fn applyer(&mut self, out: &mut RawApplyer<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            let leaves = [
                ("Applyer/UserId", &mut out.user_id),
                ("Applyer/Party", &mut out.party),
            ];
            w.leaf_among(name, empty, leaves)
        })
    }

    /// An element whose only interesting child is `<UserId>`.
    fn user(&mut self, out: &mut Txt<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| w.leaf_among(name, empty, [("UserId", &mut *out)]))
    }

    fn sp_record(&mut self, out: &mut RawSpRecord<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| match name {
            "Details" => w
                .repeated(&mut out.details, empty, Self::detail)
                .map(|()| true),
            _ => {
                let leaves = [
                    ("SpRecord/SpStatus", &mut out.sp_status),
                    ("SpRecord/ApproverAttr", &mut out.approver_attr),
                ];
                w.leaf_among(name, empty, leaves)
            }
        })
    }

    fn detail(&mut self, out: &mut RawDetail<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "Approver" => w.single(&mut out.approver, empty, "Details/Approver", Self::user)?,
                "Attach" => w.all_texts(&mut out.attach, empty)?,
                _ => {
                    let leaves = [
                        ("Details/Speech", &mut out.speech),
                        ("Details/SpStatus", &mut out.sp_status),
                        ("Details/SpTime", &mut out.sp_time),
                    ];
                    return w.leaf_among(name, empty, leaves);
                }
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
                "Attach" => w.all_texts(&mut out.attach, empty)?,
                _ => {
                    let leaves = [
                        ("Comments/CommentTime", &mut out.time),
                        ("Comments/CommentContent", &mut out.content),
                        ("Comments/CommentId", &mut out.comment_id),
                    ];
                    return w.leaf_among(name, empty, leaves);
                }
            }
            Ok(true)
        })
    }

    fn node(&mut self, out: &mut RawNode<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| match name {
            "SubNodeList" => {
                let subs = &mut out.sub_node_list;
                w.repeated(subs, empty, Self::sub_node).map(|()| true)
            }
            _ => {
                let leaves = [
                    ("NodeList/NodeType", &mut out.node_type),
                    ("NodeList/SpStatus", &mut out.sp_status),
                    ("NodeList/ApvRel", &mut out.apv_rel),
                ];
                w.leaf_among(name, empty, leaves)
            }
        })
    }

    fn sub_node(&mut self, out: &mut RawSubNode<'a>) -> Result<(), EventParseError> {
        self.children(|w, name, empty| {
            match name {
                "UserInfo" => w.single(&mut out.user, empty, "SubNodeList/UserInfo", Self::user)?,
                "MediaIds" => w.all_texts(&mut out.media_ids, empty)?,
                _ => {
                    let leaves = [
                        ("SubNodeList/Speech", &mut out.speech),
                        ("SubNodeList/SpYj", &mut out.sp_yj),
                        ("SubNodeList/Sptime", &mut out.sp_time),
                    ];
                    return w.leaf_among(name, empty, leaves);
                }
            }
            Ok(true)
        })
    }
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
