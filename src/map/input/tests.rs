use serde_json::json;

use super::*;
use crate::wecom::event::{InboundEvent, parse_event};

const CREATE_USER: &str = "<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749123456</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event><ChangeType>create_user</ChangeType><UserID><![CDATA[SunQi]]></UserID><Name><![CDATA[孙七]]></Name><Department><![CDATA[5,12]]></Department><MainDepartment>5</MainDepartment><IsLeaderInDept><![CDATA[0,1]]></IsLeaderInDept><DirectLeader><![CDATA[LiSi]]></DirectLeader><Position><![CDATA[财务专员]]></Position><Mobile>13800000007</Mobile><Gender>2</Gender><Email><![CDATA[sunqi@example.com]]></Email><Status>4</Status><ExtAttr><Item><Name><![CDATA[工号]]></Name><Type>0</Type><Text><Value><![CDATA[E10086]]></Value></Text></Item></ExtAttr></xml>";

const ADD_CUSTOMER: &str = "<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1749130000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[ZhangSan]]></UserID><ExternalUserID><![CDATA[wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw]]></ExternalUserID><State><![CDATA[expo2025_booth_b12]]></State></xml>";

fn contact() -> ContactRecord {
    match parse_event(CREATE_USER).unwrap() {
        InboundEvent::ContactChange(c) => ContactRecord::from_event(&c),
        other => panic!("not a contact change: {other:?}"),
    }
}

#[test]
fn a_contact_event_reads_in_snake_case() {
    let v = MapInput::Contact(contact()).to_value();
    assert_eq!(v["change_type"], "create_user");
    assert_eq!(v["user_id"], "SunQi");
    assert_eq!(v["name"], "孙七");
    assert_eq!(v["department_ids"], json!(["5", "12"]));
    assert_eq!(v["mobile"], "13800000007");
    assert_eq!(v["is_leader_in_dept"], json!([false, true]));
    assert_eq!(v["direct_leaders"], json!(["LiSi"]));
    assert_eq!(v["gender"], 2);
    assert_eq!(v["status"], 4);
    assert_eq!(v["event_time"], 1_749_123_456);
    assert_eq!(v["attributes"][0]["name"], "工号");
    assert_eq!(v["attributes"][0]["text"], "E10086");
    assert_eq!(v["directory_fetched"], false);
    assert!(
        !v.to_string().contains("UserID"),
        "no PascalCase names: {v}"
    );
}

#[test]
fn the_directory_record_wins_where_it_has_a_value() {
    let mut c = contact();
    c.merge_directory(&json!({
        "errcode": 0, "userid": "SunQi", "name": "孙七七", "department": [5, 12, 30],
        "is_leader_in_dept": [1, 0, 0], "position": "", "gender": "2", "status": 1,
        "open_userid": "woAbc", "extattr": {"attrs": [
            {"type": 0, "name": "工号", "text": {"value": "E10087"}},
            {"type": 1, "name": "主页", "web": {"url": "https://example.com", "title": "home"}}
        ]}
    }));
    let v = MapInput::Contact(c).to_value();
    assert_eq!(v["name"], "孙七七");
    assert_eq!(v["department_ids"], json!(["5", "12", "30"]));
    assert_eq!(v["is_leader_in_dept"], json!([true, false, false]));
    assert_eq!(
        v["position"], "财务专员",
        "an empty directory value keeps the event's"
    );
    assert_eq!(v["mobile"], "13800000007");
    assert_eq!(v["status"], 1);
    assert_eq!(v["open_user_id"], "woAbc");
    assert_eq!(v["attributes"][1]["web_url"], "https://example.com");
    assert_eq!(v["directory_fetched"], true);
}

#[test]
fn a_customer_event_merges_the_customer_record() {
    let InboundEvent::ExternalContactChange(x) = parse_event(ADD_CUSTOMER).unwrap() else {
        panic!("not a customer change")
    };
    let mut c = CustomerRecord::from_event(&x);
    c.merge_customer(&json!({
        "external_contact": {"external_userid": "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw", "name": "李客户",
            "type": 1, "gender": 1, "corp_name": "客户公司"},
        "follow_user": [{"userid": "ZhangSan", "remark": "展会", "createtime": 1749130000,
            "tags": [{"group_name": "来源", "tag_name": "展会", "type": 1, "tag_id": "et1"}],
            "remark_mobiles": ["13800000001"], "add_way": 1, "state": "expo2025_booth_b12"}]
    }));
    let v = MapInput::Customer(c).to_value();
    assert_eq!(v["change_type"], "add_external_contact");
    assert_eq!(v["user_id"], "ZhangSan");
    assert_eq!(v["external_user_id"], "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw");
    assert_eq!(v["state"], "expo2025_booth_b12");
    assert_eq!(v["name"], "李客户");
    assert_eq!(v["customer_type"], 1);
    assert_eq!(v["follow_users"][0]["tags"][0]["tag_name"], "展会");
    assert_eq!(
        v["follow_users"][0]["remark_mobiles"],
        json!(["13800000001"])
    );
    assert_eq!(v["customer_fetched"], true);
}

#[test]
fn typed_inputs_survive_a_serde_round_trip() {
    let input = MapInput::Contact(contact());
    let back: MapInput = serde_json::from_value(serde_json::to_value(&input).unwrap()).unwrap();
    assert_eq!(back, input);
    assert_eq!(back.kind(), "contact");
}

#[test]
fn v1_documents_become_typed_records() {
    let InboundEvent::ContactChange(c) = parse_event(CREATE_USER).unwrap() else {
        panic!("not a contact change")
    };
    // exactly what the v1 route stage queued
    let doc = json!({
        "event": InboundEvent::ContactChange(c),
        "user": {"userid": "SunQi", "name": "孙七", "department": [5, 12]}
    });
    let MapInput::Contact(rec) = MapInput::from_v1_document(doc).unwrap() else {
        panic!("not a contact")
    };
    assert_eq!(rec, {
        let mut want = contact();
        want.merge_directory(&json!({"userid": "SunQi", "name": "孙七", "department": [5, 12]}));
        want
    });
    let approval = json!({"sp_no": "202506050012", "form_by_title": {}});
    assert_eq!(
        MapInput::from_v1_document(approval.clone())
            .unwrap()
            .to_value(),
        approval
    );
    assert!(MapInput::from_v1_document(json!({"x": 1})).is_err());
}
