//! Tests of [`parse_event`](super::parse_event): every callback vector of
//! `tests/fixtures/wecom-vectors.json` here, the XML shape rules in [`shape`], and refused or
//! malformed input in [`malformed`]. The plaintexts are read from the fixture, not copied.

use std::sync::OnceLock;

use serde_json::Value;

use super::*;

mod malformed;
mod shape;

/// The plaintext of vector `id` in `tests/fixtures/wecom-vectors.json`: its
/// `expected.plaintext`, or `decrypts_to.plaintext` for a negative vector that decrypts.
fn plaintext(id: &str) -> &'static str {
    static VECTORS: OnceLock<Value> = OnceLock::new();
    let doc = VECTORS.get_or_init(|| {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/wecom-vectors.json"
        ));
        serde_json::from_str(text).expect("wecom-vectors.json is valid JSON")
    });
    let vector = doc["vectors"]
        .as_array()
        .expect("wecom-vectors.json has a `vectors` array")
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("wecom-vectors.json has no vector {id:?}"));
    vector["expected"]["plaintext"]
        .as_str()
        .or_else(|| vector["decrypts_to"]["plaintext"].as_str())
        .unwrap_or_else(|| panic!("vector {id:?} has no plaintext"))
}

/// The `approval_approved` vector as printed (indented) in PROTOCOL.md §3.1.
const APPROVAL_APPROVED_PRETTY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/wecom/approval_approved_pretty.xml"
));

const HEADER: &str = "<ToUserName>ww7a3c1e5b9d2f4a68</ToUserName><FromUserName>sys</FromUserName><CreateTime>1749106583</CreateTime><MsgType>event</MsgType>";

/// A `sys_approval_change` document with the given `ApprovalInfo` children.
fn approval_xml(info: &str) -> String {
    format!(
        "<xml>{HEADER}<Event>sys_approval_change</Event><ApprovalInfo>{info}</ApprovalInfo></xml>"
    )
}

/// Writes one function per row, `name(xml)`: the payload of `parse_event(xml)`, which must be
/// an `InboundEvent::Variant`.
macro_rules! payload_of {
    ($($name:ident: $variant:ident($payload:ty),)*) => {$(
        fn $name(xml: &str) -> $payload {
            match parse_event(xml) {
                Ok(InboundEvent::$variant(event)) => event,
                other => panic!("expected {}, got {other:?}", stringify!($variant)),
            }
        }
    )*};
}

payload_of! {
    approval: ApprovalChange(ApprovalChange),
    open_approval: OpenApprovalChange(OpenApprovalChange),
    contact: ContactChange(ContactChange),
    external_contact: ExternalContactChange(ExternalContactChange),
    other: Other(OtherEvent),
}

fn malformed_msg(xml: &str) -> String {
    match parse_event(xml) {
        Err(EventParseError::Malformed(msg)) => msg,
        other => panic!("expected Malformed for {xml:?}, got {other:?}"),
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// `field` of every entry of `list`, in order.
fn pluck<'t, T, U>(list: &'t [T], field: impl Fn(&'t T) -> U) -> Vec<U> {
    list.iter().map(field).collect()
}

/// For each `(body, field)` of `cases`: the document `xml_of(body)` is malformed, and the
/// message names the missing `field`.
fn assert_each_names_missing(xml_of: impl Fn(&str) -> String, cases: &[(&str, &str)]) {
    for &(body, field) in cases {
        let msg = malformed_msg(&xml_of(body));
        assert!(msg.contains(field), "{body}: {msg:?} does not name {field}");
    }
}

// ----- every vector plaintext -----------------------------------------

#[test]
fn vector_official_python_sample_post() {
    let ev = parse_event(plaintext("official_python_sample_post")).unwrap();
    assert_eq!(ev.kind(), EventKind::Other);
    let h = ev.header();
    assert_eq!(h.to_user_name, "ww1436e0e65a779aee");
    assert_eq!(h.from_user_name, "ChenJiaShun");
    assert_eq!(h.create_time, 1476422779);
    assert_eq!(h.msg_type, "text");
    assert_eq!(h.event, None);
    assert_eq!(h.agent_id, s("1000002"));
    let InboundEvent::Other(o) = &ev else {
        unreachable!()
    };
    assert_eq!(o.msg_id, s("1456453720"));
    assert_eq!(o.change_type, None);
    assert_eq!(ev.business_key(), "1456453720");
}

#[test]
fn vector_official_doc_sample_post_with_newlines() {
    let o = other(plaintext("official_doc_sample_post"));
    assert_eq!(o.header.to_user_name, "wx5823bf96d3bd56c7");
    assert_eq!(o.header.from_user_name, "mycreate");
    assert_eq!(o.header.create_time, 1409659813);
    assert_eq!(o.header.msg_type, "text");
    assert_eq!(o.header.agent_id, s("218"));
    assert_eq!(o.msg_id, s("4561255354251345929"));
    assert_eq!(InboundEvent::Other(o).business_key(), "4561255354251345929");
}

#[test]
fn vectors_url_verification_plaintexts_are_not_events() {
    // GET echostr plaintexts are bare numbers, not XML documents.
    for echo in [
        plaintext("official_python_sample_url_verification"),
        plaintext("official_doc_sample_url_verification"),
        plaintext("bridge_url_verification"),
    ] {
        let msg = malformed_msg(echo);
        assert!(!msg.contains(echo), "message echoes payload: {msg}");
    }
}

#[test]
fn vector_approval_approved() {
    let ev = parse_event(plaintext("approval_approved")).unwrap();
    assert_eq!(ev.kind(), EventKind::ApprovalChange);
    assert_eq!(ev.business_key(), "202506050012:2");
    let InboundEvent::ApprovalChange(a) = ev else {
        unreachable!()
    };
    assert_eq!(a.header.to_user_name, "ww7a3c1e5b9d2f4a68");
    assert_eq!(a.header.from_user_name, "sys");
    assert_eq!(a.header.create_time, 1749106583);
    assert_eq!(a.header.msg_type, "event");
    assert_eq!(a.header.event, s("sys_approval_change"));
    assert_eq!(a.header.agent_id, s("3010040"));
    assert_eq!(a.sp_no, "202506050012");
    assert_eq!(a.sp_name, "费用报销");
    assert_eq!(a.sp_status, 2);
    assert_eq!(a.template_id, "C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT");
    assert_eq!(a.apply_time, 1749021127);
    assert_eq!(a.applicant_user_id, s("ZhangSan"));
    assert_eq!(a.applicant_party, s("5"));
    assert_eq!(a.status_change_event, Some(2));

    assert_eq!(a.sp_records.len(), 2);
    assert_eq!(a.sp_records[0].sp_status, Some(2));
    assert_eq!(a.sp_records[0].approver_attr, Some(1));
    assert_eq!(
        a.sp_records[0].details,
        vec![SpRecordDetail {
            approver_user_id: s("LiSi"),
            speech: s("同意，按差旅标准报销"),
            sp_status: Some(2),
            sp_time: Some(1749063390),
            attach: vec![],
        }]
    );
    assert_eq!(a.sp_records[1].approver_attr, Some(2));
    assert_eq!(a.sp_records[1].details.len(), 2);
    let d = &a.sp_records[1].details;
    assert_eq!(d[0].approver_user_id, s("ChenCaiWu"));
    assert_eq!(d[0].speech, s(""));
    assert_eq!(d[0].sp_time, Some(1749106582));
    assert_eq!(d[1].approver_user_id, s("ZhaoKuaiJi"));
    assert_eq!(d[1].speech, s("票据齐全"));
    assert_eq!(d[1].sp_time, Some(1749105001));

    assert_eq!(a.notifyers, vec!["WangWu".to_owned()]);
    assert!(a.comments.is_empty());

    assert_eq!(a.process_nodes.len(), 3);
    let n = &a.process_nodes;
    assert_eq!(
        (n[0].node_type, n[0].sp_status, n[0].apv_rel),
        (Some(1), Some(2), Some(2))
    );
    assert_eq!(n[0].sub_nodes.len(), 1);
    assert_eq!(n[0].sub_nodes[0].user_id, s("LiSi"));
    assert_eq!(n[0].sub_nodes[0].sp_yj, Some(2));
    assert_eq!(n[0].sub_nodes[0].sp_time, Some(1749063390));
    assert_eq!((n[1].node_type, n[1].apv_rel), (Some(1), Some(1)));
    let ids = pluck(&n[1].sub_nodes, |s| s.user_id.as_deref());
    assert_eq!(ids, [Some("ChenCaiWu"), Some("ZhaoKuaiJi")]);
    assert_eq!(n[2].node_type, Some(2));
    assert_eq!((n[2].sp_status, n[2].apv_rel), (None, None));
    assert_eq!(
        n[2].sub_nodes,
        vec![ProcessSubNode {
            user_id: s("WangWu"),
            speech: None,
            sp_yj: None,
            sp_time: None,
            media_ids: vec![],
        }]
    );
}

#[test]
fn vector_approval_rejected_keeps_special_characters() {
    let a = approval(plaintext("approval_rejected"));
    assert_eq!(a.sp_no, "202506050019");
    assert_eq!(a.sp_name, "采购申请");
    assert_eq!(a.sp_status, 3);
    assert_eq!(a.status_change_event, Some(3));
    assert_eq!(a.applicant_user_id, s("ZhouBa"));
    assert_eq!(a.applicant_party, s("12"));
    assert_eq!(a.sp_records.len(), 1);
    assert_eq!(a.sp_records[0].sp_status, Some(3));
    assert_eq!(
        a.sp_records[0].details[0].speech,
        s("驳回：预算超标 <超出 15%> & 缺少比价单")
    );
    assert_eq!(a.notifyers, vec!["WangWu".to_owned()]);
    assert_eq!(
        a.comments,
        vec![Comment {
            user_id: s("LiSi"),
            time: Some(1749110390),
            content: s("请补充三家供应商报价"),
            comment_id: s("7512099317736620104"),
            attach: vec![],
        }]
    );
    assert!(a.process_nodes.is_empty());
    assert_eq!(
        InboundEvent::ApprovalChange(a).business_key(),
        "202506050019:3"
    );
}

#[test]
fn vector_approval_revoked_after_pass_minimal_payload() {
    let a = approval(plaintext("approval_revoked_after_pass"));
    assert_eq!(a.sp_no, "202506050012");
    assert_eq!(a.sp_status, 6);
    assert_eq!(a.status_change_event, Some(8));
    assert_eq!(a.header.create_time, 1749200001);
    assert!(a.sp_records.is_empty());
    assert!(a.notifyers.is_empty());
    assert!(a.comments.is_empty());
    assert!(a.process_nodes.is_empty());
    assert_eq!(
        InboundEvent::ApprovalChange(a).business_key(),
        "202506050012:6"
    );
}

#[test]
fn vector_contact_create_user_bare_text() {
    let c = contact(plaintext("contact_create_user"));
    assert_eq!(c.header.agent_id, None);
    assert_eq!(c.header.event, s("change_contact"));
    assert_eq!(c.change_type, "create_user");
    assert_eq!(c.user_id, s("SunQi"));
    assert_eq!(c.name, s("孙七"));
    assert_eq!(c.department, vec!["5".to_owned(), "12".to_owned()]);
    assert_eq!(c.main_department, s("5"));
    assert_eq!(c.is_leader_in_dept, s("0,0"));
    assert_eq!(c.direct_leader, s("LiSi"));
    assert_eq!(c.position, s("财务专员"));
    assert_eq!(c.mobile, s("13800000007"));
    assert_eq!(c.gender, s("2"));
    assert_eq!(c.email, s("sunqi@example.com"));
    assert_eq!(c.biz_mail, s("sunqi@example.wecom.work"));
    assert_eq!(c.status, s("4"));
    assert_eq!(c.avatar, s("http://wework.qpic.cn/wwhead/example/0"));
    assert_eq!(c.alias, s("Qi Sun"));
    assert_eq!(c.telephone, s("021-12345678"));
    assert_eq!(c.address, s("上海市浦东新区"));
    assert_eq!(
        c.ext_attr,
        vec![ExtAttrItem {
            name: s("工号"),
            attr_type: Some(0),
            text_value: s("E10086"),
            web_title: None,
            web_url: None,
        }]
    );
    assert_eq!(
        (c.new_user_id.as_ref(), c.id.as_ref(), c.tag_id.as_ref()),
        (None, None, None)
    );
    assert_eq!(
        InboundEvent::ContactChange(c).business_key(),
        "create_user:SunQi"
    );
}

#[test]
fn vector_external_contact_add() {
    let ev = parse_event(plaintext("external_contact_add")).unwrap();
    assert_eq!(ev.kind(), EventKind::ExternalContactChange);
    assert_eq!(
        ev.business_key(),
        "add_external_contact:ZhangSan:wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
    );
    let InboundEvent::ExternalContactChange(e) = ev else {
        unreachable!()
    };
    assert_eq!(e.header.create_time, 1749130000);
    assert_eq!(e.change_type, "add_external_contact");
    assert_eq!(e.user_id, "ZhangSan");
    assert_eq!(e.external_user_id, "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw");
    assert_eq!(e.state, s("expo2025_booth_b12"));
    assert_eq!(
        e.welcome_code,
        s("CCy4aXTdhVKeCLXcBsAYzyBdhd-2eZ_UnYR8j2q-LgQ")
    );
    assert_eq!((e.source, e.fail_reason), (None, None));
}

#[test]
fn vector_text_message_multibyte() {
    let o = other(plaintext("text_message_multibyte"));
    assert_eq!(o.header.from_user_name, "ZhangSan");
    assert_eq!(o.header.msg_type, "text");
    assert_eq!(o.header.create_time, 1749131313);
    assert_eq!(o.header.agent_id, s("1000005"));
    assert_eq!(o.msg_id, s("7512345678901234567"));
    assert_eq!(InboundEvent::Other(o).business_key(), "7512345678901234567");
}

#[test]
fn vector_open_approval_change() {
    let ev = parse_event(plaintext("open_approval_change")).unwrap();
    assert_eq!(ev.kind(), EventKind::OpenApprovalChange);
    assert_eq!(ev.business_key(), "ERP-PO-20250605-0042:2");
    let InboundEvent::OpenApprovalChange(o) = ev else {
        unreachable!()
    };
    assert_eq!(o.header.agent_id, s("1000005"));
    assert_eq!(o.third_no, "ERP-PO-20250605-0042");
    assert_eq!(o.open_sp_name, "付款申请");
    assert_eq!(o.open_template_id, "b6d2e0a3c1f84e7f9a0b");
    assert_eq!(o.open_sp_status, 2);
    assert_eq!(o.apply_time, 1749139000);
    assert_eq!(o.apply_user_id, s("ZhangSan"));
    assert_eq!(o.apply_user_name, s("张三"));
    assert_eq!(o.apply_user_party, s("财务部"));
    assert_eq!(
        o.apply_user_image,
        s("http://wework.qpic.cn/wwhead/example/0")
    );
    assert_eq!(o.approver_step, Some(0));
    assert_eq!(o.nodes.len(), 1);
    assert_eq!(
        (
            o.nodes[0].node_status,
            o.nodes[0].node_attr,
            o.nodes[0].node_type
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(
        o.nodes[0].items,
        vec![OpenApprovalItem {
            item_name: s("李四"),
            item_user_id: s("LiSi"),
            item_image: s("http://wework.qpic.cn/wwhead/example/0"),
            item_status: Some(2),
            item_speech: s("同意"),
            item_op_time: Some(1749139990),
        }]
    );
    assert_eq!(
        o.notify_nodes,
        vec![OpenNotifyNode {
            item_name: s("王五"),
            item_user_id: s("WangWu"),
            item_image: s("http://wework.qpic.cn/wwhead/example/0"),
        }]
    );
}

#[test]
fn vector_batch_job_result_and_neg_wrong_receiveid_plaintext() {
    let o = other(plaintext("batch_job_result"));
    assert_eq!(o.header.event, s("batch_job_result"));
    assert_eq!(o.header.agent_id, None);
    assert_eq!(o.msg_id, None);
    let ev = InboundEvent::Other(o);
    assert_eq!(ev.business_key(), "batch_job_result:1749150000");
    // neg_wrong_receiveid decrypts to the same document (the receiveid is
    // checked by the crypto layer, not here).
    assert_eq!(parse_event(plaintext("neg_wrong_receiveid")).unwrap(), ev);
}

#[test]
fn vector_edge_full_pad_block() {
    let o = other(plaintext("edge_full_pad_block"));
    assert_eq!(o.header.from_user_name, "LiSi");
    assert_eq!(o.header.create_time, 1749160000);
    assert_eq!(o.msg_id, s("7512345678901239999"));
    assert_eq!(InboundEvent::Other(o).business_key(), "7512345678901239999");
}

#[test]
fn vector_passive_reply_text_has_no_msg_id() {
    let o = other(plaintext("passive_reply_text"));
    assert_eq!(o.header.to_user_name, "ZhangSan");
    assert_eq!(o.header.from_user_name, "ww7a3c1e5b9d2f4a68");
    assert_eq!(o.msg_id, None);
    assert_eq!(o.header.event, None);
    assert_eq!(InboundEvent::Other(o).business_key(), "text:1749131314");
}
