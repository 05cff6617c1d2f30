//! Tests of [`normalise`] and [`ApprovalInstance::to_document`] against the fixtures in
//! `tests/fixtures/wecom/` and hand-made controls: header, process and comments and the
//! document here, form controls in [`form`], single values in [`values`], errors in [`errors`].

use std::str::FromStr;

use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::*;

mod errors;
mod form;
mod values;

const EXPENSE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/wecom/approval_detail_expense.json"
));
const LEAVE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/wecom/approval_detail_leave.json"
));

fn shanghai() -> TimeZone {
    TimeZone::get("Asia/Shanghai").expect("tzdb has Asia/Shanghai")
}

fn info(fixture: &str) -> Value {
    let response: Value = serde_json::from_str(fixture).expect("fixture is JSON");
    assert_eq!(response["errcode"], 0);
    response["info"].clone()
}

fn expense() -> ApprovalInstance {
    normalise(&info(EXPENSE), &shanghai()).expect("expense fixture normalises")
}

fn leave() -> ApprovalInstance {
    normalise(&info(LEAVE), &shanghai()).expect("leave fixture normalises")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test decimal")
}

fn by_id<'a>(instance: &'a ApprovalInstance, id: &str) -> &'a FormControl {
    instance
        .form
        .controls
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("control {id} present"))
}

/// A minimal valid `info` with the given controls.
fn minimal(contents: Value) -> Value {
    json!({
        "sp_no": "202506050099",
        "template_id": "tpl-fake",
        "sp_status": 2,
        "apply_time": 1749021127,
        "applyer": {"userid": "ZhangSan", "partyid": "5"},
        "apply_data": {"contents": contents}
    })
}

fn one(control: &str, value: Value) -> Result<ApprovalInstance, NormaliseError> {
    let contents = json!([{
        "control": control, "id": format!("{control}-1"),
        "title": [{"text": "字段", "lang": "zh_CN"}], "value": value, "hidden": 0
    }]);
    normalise(&minimal(contents), &shanghai())
}

fn one_value(control: &str, value: Value) -> FormValue {
    let instance = one(control, value).expect("normalises");
    instance
        .form
        .controls
        .into_iter()
        .next()
        .expect("one control")
        .value
}

// -- header, process, comments -------------------------------------------------------------

#[test]
fn header_is_normalised() {
    let a = expense();
    assert_eq!(a.sp_no, "202506050012");
    assert_eq!(a.sp_name, "费用报销");
    assert_eq!(a.template_id, "C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT");
    assert_eq!((a.status, a.status_name.as_str()), (2, "approved"));
    assert_eq!(
        a.applicant,
        Applicant {
            user_id: "ZhangSan".into(),
            department: Some("5".into()),
            batch: false
        }
    );
    assert_eq!(a.apply_time, "2025-06-04T15:12:07+08:00");
    assert_eq!(a.apply_timestamp, 1_749_021_127);
    assert_eq!(a.notifyers, vec!["WangWu".to_owned()]);
}

#[test]
fn apply_time_follows_the_given_zone() {
    let a = normalise(&info(EXPENSE), &TimeZone::UTC).expect("normalises");
    assert_eq!(a.apply_time, "2025-06-04T07:12:07+00:00");
    // A control without timezone_info follows the caller's zone too …
    let FormValue::Date { at, date, .. } = &by_id(&a, "Date-1748000000007").value else {
        panic!("date");
    };
    assert_eq!(at.as_deref(), Some("2025-05-31T16:00:00+00:00"));
    assert_eq!(date.as_deref(), Some("2025-05-31"));
    // … while one with timezone_info keeps its own.
    let FormValue::Date { at, .. } = &by_id(&a, "Date-1748000000008").value else {
        panic!("date");
    };
    assert_eq!(at.as_deref(), Some("2025-06-02T14:00:00+09:00"));
}

#[test]
fn status_names_cover_every_documented_code() {
    let names: Vec<_> = [1, 2, 3, 4, 5, 6, 7, 8, 10, 99]
        .into_iter()
        .map(status_name)
        .collect();
    assert_eq!(
        names,
        [
            "in_progress",
            "approved",
            "rejected",
            "withdrawn",
            "unknown",
            "revoked",
            "deleted",
            "unknown",
            "paid",
            "unknown"
        ]
    );
}

#[test]
fn process_list_is_preferred_over_sp_record() {
    let a = expense();
    assert_eq!(
        a.approval_nodes.len(),
        3,
        "process_list has the CC node, sp_record does not"
    );
    let n0 = &a.approval_nodes[0];
    assert_eq!(
        (n0.node_type, n0.status, n0.approve_rel),
        (Some(1), Some(2), Some(2))
    );
    assert_eq!(
        n0.approvers,
        vec![Approver {
            user_id: "LiSi".into(),
            status: Some(2),
            speech: "同意，按差旅标准报销".into(),
            time: Some("2025-06-05T02:56:30+08:00".into()),
            media_ids: vec![],
        }]
    );
    let n1 = &a.approval_nodes[1];
    assert_eq!(n1.approve_rel, Some(1));
    let ids: Vec<_> = n1.approvers.iter().map(|p| p.user_id.as_str()).collect();
    assert_eq!(ids, ["ChenCaiWu", "ZhaoKuaiJi"]);
    assert_eq!(
        n1.approvers[0].time.as_deref(),
        Some("2025-06-05T14:56:22+08:00")
    );
    assert_eq!(n1.approvers[1].media_ids, ["WWCISP_fake_stamp_0001"]);
    let cc = &a.approval_nodes[2];
    assert_eq!(cc.node_type, Some(2));
    assert_eq!(cc.approvers[0].user_id, "WangWu");
    assert_eq!(cc.approvers[0].time, None, "sptime 0 means not acted");
}

#[test]
fn sp_record_is_the_fallback_and_its_codes_are_translated() {
    let a = leave();
    assert_eq!((a.status, a.status_name.as_str()), (1, "in_progress"));
    assert_eq!(
        a.apply_time, "2025-06-09T08:01:40+08:00",
        "string apply_time accepted"
    );
    assert_eq!(a.approval_nodes.len(), 2);
    let n0 = &a.approval_nodes[0];
    assert_eq!(
        (n0.node_type, n0.status, n0.approve_rel),
        (Some(1), Some(2), Some(2)),
        "或签 → 2"
    );
    assert_eq!(
        n0.approvers[0].time.as_deref(),
        Some("2025-06-09T08:46:40+08:00")
    );
    assert_eq!(n0.approvers[1].user_id, "ZhouZhuGuan");
    assert_eq!(
        (n0.approvers[1].status, n0.approvers[1].time.as_deref()),
        (Some(1), None)
    );
    assert_eq!(a.approval_nodes[1].approve_rel, Some(1), "会签 → 1");
    assert!(a.comments.is_empty() && a.notifyers.is_empty());

    // An empty process_list also falls back.
    let mut with_empty = info(LEAVE);
    with_empty["process_list"] = json!({"node_list": []});
    let b = normalise(&with_empty, &shanghai()).expect("normalises");
    assert_eq!(b.approval_nodes, a.approval_nodes);
}

#[test]
fn comments_are_read_with_camel_case_author() {
    let a = expense();
    assert_eq!(
        a.comments,
        vec![
            Comment {
                user_id: "ZhaoKuaiJi".into(),
                time: Some("2025-06-05T14:10:00+08:00".into()),
                content: "请补充酒店水单".into(),
                comment_id: "7512345678901234567".into(),
                media_ids: vec![],
            },
            Comment {
                user_id: "ZhangSan".into(),
                time: Some("2025-06-05T14:20:00+08:00".into()),
                content: "已补充，见附件".into(),
                comment_id: "7512345678901234599".into(),
                media_ids: vec!["WWCISP_fake_comment_media_01".into()],
            },
        ]
    );
}

#[test]
fn batch_applyer_is_accepted() {
    let mut i = minimal(json!([]));
    i.as_object_mut().expect("object").remove("applyer");
    i["batch_applyer"] = json!({"userid": "PiLiang"});
    let a = normalise(&i, &shanghai()).expect("normalises");
    assert_eq!(
        a.applicant,
        Applicant {
            user_id: "PiLiang".into(),
            department: None,
            batch: true
        }
    );
}

#[test]
fn numeric_sp_no_and_string_status_are_accepted() {
    let mut i = minimal(json!([]));
    i["sp_no"] = json!(202506050099_u64);
    i["sp_status"] = json!("10");
    let a = normalise(&i, &shanghai()).expect("normalises");
    assert_eq!(
        (a.sp_no.as_str(), a.status_name.as_str()),
        ("202506050099", "paid")
    );
    assert!(a.form.controls.is_empty() && a.approval_nodes.is_empty());
}

// -- form: every control type ---------------------------------------------------------------

// -- document -----------------------------------------------------------------------------

#[test]
fn document_is_keyed_by_title_and_id() {
    let doc = expense().to_document();
    assert_eq!(doc["sp_no"], "202506050012");
    assert_eq!(doc["status_name"], "approved");
    assert_eq!(doc["applicant"]["user_id"], "ZhangSan");
    assert_eq!(
        doc["form_by_title"]["报销总额"],
        json!({"type": "money", "amount": "100001280.79"})
    );
    assert_eq!(
        doc["form_by_id"]["Money-1748000000005"],
        doc["form_by_title"]["报销总额"]
    );
    assert_eq!(
        doc["form_by_title"]["票据张数"],
        json!({"type": "number", "value": "7"})
    );
    assert_eq!(
        doc["form_by_title"]["合计（自动计算）"]["value"],
        "100001280.79"
    );
    assert_eq!(
        doc["form_by_title"]["费用类别"]["options"][0]["key"],
        "option-1748000000011"
    );
    assert_eq!(doc["form_by_title"]["成本中心"]["text"], "CC-SH-0421");
    assert_eq!(doc["form_by_title"]["满意度"]["type"], "unknown");
    assert_eq!(doc["form_by_title"]["满意度"]["raw"]["fancy"]["rating"], 5);
    assert!(
        doc["form_by_title"].get("报销须知").is_none(),
        "Tips are not in the document"
    );

    // Duplicate titles: the first wins in the map; both stay in the list.
    assert_eq!(
        doc["form_by_title"]["备注"]["text"],
        "含<高铁>&住宿费用\n纸质发票已交财务"
    );
    assert_eq!(
        doc["form_by_id"]["Text-1748000000028"]["text"],
        "第二个同名控件"
    );
    let titled: Vec<_> = doc["form"]["controls"]
        .as_array()
        .expect("controls")
        .iter()
        .filter(|c| c["title"] == "备注")
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(
        titled,
        [json!("Textarea-1748000000002"), json!("Text-1748000000028")]
    );
    assert_eq!(doc["form"]["controls"].as_array().map(Vec::len), Some(24));
    assert_eq!(doc["form_by_id"].as_object().map(|m| m.len()), Some(24));

    // Tables: rows plus per-row keyed maps.
    let table = &doc["form_by_title"]["费用明细"];
    assert_eq!(table["type"], "table");
    let amounts: Vec<_> = table["rows_by_title"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["金额"]["amount"].clone())
        .collect();
    assert_eq!(
        amounts,
        [
            json!("1280.50"),
            json!("0.10"),
            json!("99999999.99"),
            json!("0.20")
        ]
    );
    assert_eq!(
        table["rows_by_id"][0]["Selector-1748000000100"]["options"][0]["text"],
        "交通费"
    );
    assert_eq!(
        table["rows"][3][3]["value"]["at"],
        "2025-05-30T00:00:00+08:00"
    );
}

#[test]
fn document_has_no_floats() {
    fn check(value: &Value, path: &str) {
        match value {
            Value::Number(n) => assert!(n.is_i64() || n.is_u64(), "float at {path}"),
            Value::Array(list) => list
                .iter()
                .enumerate()
                .for_each(|(i, v)| check(v, &format!("{path}/{i}"))),
            Value::Object(map) => map
                .iter()
                .for_each(|(k, v)| check(v, &format!("{path}/{k}"))),
            _ => {}
        }
    }
    check(&expense().to_document(), "");
    check(&leave().to_document(), "");
}

#[test]
fn instance_round_trips_through_serde() {
    for a in [expense(), leave()] {
        let text = serde_json::to_string(&a).expect("serialises");
        assert!(text.contains(r#""amount":"1280.50""#) || a.sp_no != "202506050012");
        let back: ApprovalInstance = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, a);
    }
}
