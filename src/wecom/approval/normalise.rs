//! The entry point: the header (strict), the approval process and comments (tolerant), and
//! the form through [`super::controls`].

use jiff::tz::TimeZone;
use serde_json::Value;

use super::NormaliseError;
use super::controls::controls;
use super::scalars::{code, integer, items, lenient_time, render, strings, text, timestamp};
use super::types::{
    Applicant, ApprovalInstance, ApprovalNode, Approver, Comment, Form, status_name,
};

/// Normalises the `info` object of an `oa/getapprovaldetail` response.
///
/// `tz` renders instants that carry no zone of their own (header, nodes, comments, and controls
/// without `timezone_info`); pass the corp's zone, typically `Asia/Shanghai`.
///
/// # Errors
///
/// [`NormaliseError`] when `info` is not an object, a header field is missing or invalid, or a
/// control holds an unreadable number, amount or timestamp. Never panics.
pub fn normalise(info: &Value, tz: &TimeZone) -> Result<ApprovalInstance, NormaliseError> {
    if !info.is_object() {
        return Err(NormaliseError::NotAnObject);
    }
    let sp_no = required_id(info.get("sp_no"), "sp_no")?;
    let template_id = required_id(info.get("template_id"), "template_id")?;
    let status = header_status(info.get("sp_status"))?;
    let (apply_time, apply_timestamp) = header_time(info.get("apply_time"), tz)?;
    let applicant = applicant(info)?;

    let controls = match info.get("apply_data").and_then(|d| d.get("contents")) {
        Some(contents) => controls(contents, tz, 0)?,
        None => Vec::new(),
    };

    Ok(ApprovalInstance {
        sp_no,
        sp_name: text(info.get("sp_name")),
        template_id,
        status,
        status_name: status_name(status).to_owned(),
        applicant,
        apply_time,
        apply_timestamp,
        approval_nodes: approval_nodes(info, tz),
        comments: comments(info.get("comments"), tz),
        notifyers: items(info.get("notifyer"))
            .map(|n| match n {
                Value::String(s) => s.clone(),
                other => text(other.get("userid")),
            })
            .filter(|id| !id.is_empty())
            .collect(),
        form: Form { controls },
    })
}

// ---------------------------------------------------------------------------------------------
// Header

fn required_id(value: Option<&Value>, field: &'static str) -> Result<String, NormaliseError> {
    let s = match value {
        None | Some(Value::Null) => return Err(NormaliseError::MissingField { field }),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(NormaliseError::InvalidField {
                field,
                reason: "not a string",
            });
        }
    };
    if s.is_empty() {
        return Err(NormaliseError::MissingField { field });
    }
    Ok(s)
}

fn header_status(value: Option<&Value>) -> Result<u32, NormaliseError> {
    const FIELD: &str = "sp_status";
    match integer(value) {
        Ok(Some(n)) => u32::try_from(n).map_err(|_| NormaliseError::InvalidField {
            field: FIELD,
            reason: "out of range",
        }),
        Ok(None) => Err(NormaliseError::MissingField { field: FIELD }),
        Err(reason) => Err(NormaliseError::InvalidField {
            field: FIELD,
            reason,
        }),
    }
}

fn header_time(value: Option<&Value>, tz: &TimeZone) -> Result<(String, i64), NormaliseError> {
    const FIELD: &str = "apply_time";
    let invalid = |reason| NormaliseError::InvalidField {
        field: FIELD,
        reason,
    };
    match timestamp(value) {
        Ok(Some(ts)) => {
            let (text, _) = render(ts, tz).map_err(invalid)?;
            Ok((text, ts.as_second()))
        }
        Ok(None) => Err(NormaliseError::MissingField { field: FIELD }),
        Err(reason) => Err(invalid(reason)),
    }
}

fn applicant(info: &Value) -> Result<Applicant, NormaliseError> {
    if let Some(applyer) = info.get("applyer") {
        let user_id = text(applyer.get("userid"));
        if !user_id.is_empty() {
            let department = Some(text(applyer.get("partyid"))).filter(|d| !d.is_empty());
            return Ok(Applicant {
                user_id,
                department,
                batch: false,
            });
        }
    }
    if let Some(batch) = info.get("batch_applyer") {
        // Documented as an object; take the first entry should it ever arrive as a list.
        let batch = match batch {
            Value::Array(list) => list.first().unwrap_or(&Value::Null),
            other => other,
        };
        let user_id = text(batch.get("userid"));
        if !user_id.is_empty() {
            return Ok(Applicant {
                user_id,
                department: None,
                batch: true,
            });
        }
    }
    Err(NormaliseError::MissingField { field: "applyer" })
}

// ---------------------------------------------------------------------------------------------
// Process, comments

fn approval_nodes(info: &Value, tz: &TimeZone) -> Vec<ApprovalNode> {
    let process: Vec<&Value> =
        items(info.get("process_list").and_then(|p| p.get("node_list"))).collect();
    if !process.is_empty() {
        return process
            .into_iter()
            .map(|node| ApprovalNode {
                node_type: code(node.get("node_type")),
                status: code(node.get("sp_status")),
                approve_rel: code(node.get("apv_rel")),
                approvers: items(node.get("sub_node_list"))
                    .map(|sub| {
                        let mut user_id = text(sub.get("userid"));
                        if user_id.is_empty() {
                            // The callback XML nests it as UserInfo/UserId; accept that here too.
                            let info = sub.get("userinfo").or_else(|| sub.get("user_info"));
                            user_id = text(info.and_then(|u| u.get("userid")));
                        }
                        Approver {
                            user_id,
                            status: code(sub.get("sp_yj")),
                            speech: text(sub.get("speech")),
                            time: lenient_time(sub.get("sptime"), tz),
                            media_ids: strings(
                                sub.get("media_ids").or_else(|| sub.get("media_id")),
                            ),
                        }
                    })
                    .collect(),
            })
            .collect();
    }
    items(info.get("sp_record"))
        .map(|record| ApprovalNode {
            node_type: Some(1),
            status: code(record.get("sp_status")),
            approve_rel: match code(record.get("approverattr")) {
                Some(1) => Some(2),
                Some(2) => Some(1),
                _ => None,
            },
            approvers: items(record.get("details"))
                .map(|detail| Approver {
                    user_id: text(detail.get("approver").and_then(|a| a.get("userid"))),
                    status: code(detail.get("sp_status")),
                    speech: text(detail.get("speech")),
                    time: lenient_time(detail.get("sptime"), tz),
                    media_ids: strings(detail.get("media_id").or_else(|| detail.get("media_ids"))),
                })
                .collect(),
        })
        .collect()
}

fn comments(value: Option<&Value>, tz: &TimeZone) -> Vec<Comment> {
    items(value)
        .map(|c| {
            let author = c
                .get("commentUserInfo")
                .or_else(|| c.get("comment_user_info"))
                .or_else(|| c.get("commentuserinfo"));
            Comment {
                user_id: text(author.and_then(|a| a.get("userid"))),
                time: lenient_time(c.get("commenttime"), tz),
                content: text(c.get("commentcontent")),
                comment_id: text(c.get("commentid")),
                media_ids: strings(c.get("media_id").or_else(|| c.get("media_ids"))),
            }
        })
        .collect()
}
