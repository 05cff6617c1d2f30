//! Missing and invalid input: typed errors that never echo data, bounded nesting, no panics.

use super::*;
use crate::wecom::approval::controls::MAX_ID_IN_ERROR;

#[test]
fn missing_header_fields_are_errors() {
    assert_eq!(
        normalise(&json!([]), &shanghai()),
        Err(NormaliseError::NotAnObject)
    );
    for field in ["sp_no", "template_id", "sp_status", "apply_time"] {
        let mut i = minimal(json!([]));
        i.as_object_mut().expect("object").remove(field);
        assert_eq!(
            normalise(&i, &shanghai()),
            Err(NormaliseError::MissingField { field }),
            "{field}"
        );
        i[field] = json!("");
        assert_eq!(
            normalise(&i, &shanghai()),
            Err(NormaliseError::MissingField { field }),
            "{field} empty"
        );
    }
    let mut i = minimal(json!([]));
    i["apply_time"] = json!(0);
    assert_eq!(
        normalise(&i, &shanghai()),
        Err(NormaliseError::MissingField {
            field: "apply_time"
        }),
        "0 is WeCom's 'not set'"
    );
    let mut i = minimal(json!([]));
    i["applyer"] = json!({"userid": "", "partyid": "5"});
    assert_eq!(
        normalise(&i, &shanghai()),
        Err(NormaliseError::MissingField { field: "applyer" })
    );
    i.as_object_mut().expect("object").remove("applyer");
    assert_eq!(
        normalise(&i, &shanghai()),
        Err(NormaliseError::MissingField { field: "applyer" })
    );
}

#[test]
fn invalid_header_fields_are_errors() {
    let cases = [
        ("sp_status", json!("approved"), "not an integer"),
        ("sp_status", json!(-1), "out of range"),
        ("apply_time", json!("yesterday"), "not an integer"),
        ("apply_time", json!(-5), "timestamp before 1970"),
        (
            "apply_time",
            json!(99_999_999_999_999_i64),
            "timestamp out of range",
        ),
        ("apply_time", json!(1.5), "not an integer"),
        ("sp_no", json!({"no": 1}), "not a string"),
    ];
    for (field, value, reason) in cases {
        let mut i = minimal(json!([]));
        i[field] = value;
        assert_eq!(
            normalise(&i, &shanghai()),
            Err(NormaliseError::InvalidField { field, reason }),
            "{field}"
        );
    }
}

#[test]
fn invalid_money_names_the_control_but_not_the_data() {
    let mut i = info(EXPENSE);
    // Corrupt the second cost line's amount.
    let table = i["apply_data"]["contents"]
        .as_array_mut()
        .and_then(|c| c.iter_mut().find(|c| c["id"] == "Table-1748000000018"))
        .expect("table in fixture");
    table["value"]["children"][1]["list"][1]["value"]["new_money"] = json!("0,10 SECRET-ACCT-4242");
    let err = normalise(&i, &shanghai()).expect_err("invalid money");
    assert_eq!(
        err,
        NormaliseError::InvalidControl {
            control_id: "Money-1748000000101".into(),
            field: "new_money",
            reason: "not a plain decimal"
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("Money-1748000000101") && message.contains("new_money"),
        "{message}"
    );
    assert!(
        !message.contains("SECRET") && !message.contains("0,10"),
        "{message}"
    );
    assert!(
        !message.contains("ZhangSan") && !message.contains("202506050012"),
        "{message}"
    );
}

#[test]
fn other_invalid_control_values_are_errors() {
    let cases = [
        (
            "Number",
            json!({"new_number": "seven"}),
            "new_number",
            "not a plain decimal",
        ),
        (
            "Number",
            json!({"new_number": [7]}),
            "new_number",
            "not a decimal string",
        ),
        (
            "Money",
            json!({"new_money": "1e3"}),
            "new_money",
            "not a plain decimal",
        ),
        (
            "Date",
            json!({"date": {"s_timestamp": "soon"}}),
            "s_timestamp",
            "not an integer",
        ),
        (
            "DateRange",
            json!({"date_range": {"new_begin": 1, "new_end": -1}}),
            "new_end",
            "timestamp before 1970",
        ),
        (
            "DateRange",
            json!({"date_range": {"new_duration": 1.5}}),
            "new_duration",
            "not an integer",
        ),
        (
            "Attendance",
            json!({"attendance": {"slice_info": {"day_items": [{"daytime": "x"}]}}}),
            "daytime",
            "not an integer",
        ),
        (
            "Location",
            json!({"location": {"time": "noon"}}),
            "time",
            "not an integer",
        ),
    ];
    for (control, value, field, reason) in cases {
        assert_eq!(
            one(control, value),
            Err(NormaliseError::InvalidControl {
                control_id: format!("{control}-1"),
                field,
                reason
            }),
            "{control}"
        );
    }
}

#[test]
fn long_control_ids_are_truncated_in_errors() {
    let id = "X".repeat(500);
    let contents = json!([{"control": "Money", "id": id, "value": {"new_money": "bad"}}]);
    let Err(NormaliseError::InvalidControl { control_id, .. }) =
        normalise(&minimal(contents), &shanghai())
    else {
        panic!("error expected");
    };
    assert_eq!(control_id.len(), MAX_ID_IN_ERROR);
}

#[test]
fn nested_tables_are_bounded() {
    let mut value = json!({"children": [{"list": [{"control": "Money", "id": "m", "value": {"new_money": "1.00"}}]}]});
    for _ in 0..MAX_TABLE_DEPTH - 1 {
        value = json!({"children": [{"list": [{"control": "Table", "id": "t", "value": value}]}]});
    }
    assert!(
        one("Table", value.clone()).is_ok(),
        "{MAX_TABLE_DEPTH} levels are fine"
    );
    let deeper = json!({"children": [{"list": [{"control": "Table", "id": "t", "value": value}]}]});
    assert_eq!(
        one("Table", deeper),
        Err(NormaliseError::InvalidControl {
            control_id: "t".into(),
            field: "children",
            reason: "tables nested too deeply"
        })
    );
}

#[test]
fn process_and_comment_oddities_are_tolerated() {
    let mut i = minimal(json!([]));
    i["process_list"] = json!({"node_list": [
        {"node_type": "1", "sub_node_list": [{"userinfo": {"userid": "Nested"}, "sptime": "garbage", "media_ids": [1, "m1", ""]}]},
        "junk"
    ]});
    i["comments"] = json!([{"commenttime": -4, "commentid": 123}, 7]);
    i["notifyer"] = json!([{"userid": "A"}, "B", {"userid": ""}, 5]);
    let a = normalise(&i, &shanghai()).expect("tolerated");
    assert_eq!(a.approval_nodes.len(), 2);
    assert_eq!(a.approval_nodes[0].node_type, Some(1));
    let p = &a.approval_nodes[0].approvers[0];
    assert_eq!(
        (
            p.user_id.as_str(),
            p.time.as_deref(),
            p.media_ids.as_slice()
        ),
        ("Nested", None, &["m1".to_owned()][..])
    );
    assert_eq!(a.approval_nodes[1].approvers, vec![]);
    assert_eq!(
        (
            a.comments[0].comment_id.as_str(),
            a.comments[0].time.as_deref()
        ),
        ("123", None)
    );
    assert_eq!(a.comments[1].user_id, "");
    assert_eq!(a.notifyers, ["A", "B"]);
}

#[test]
fn never_panics_on_mutated_fixtures() {
    // Replace every node of both fixtures, one at a time, with junk of each JSON kind.
    let junk = [
        json!(null),
        json!("x"),
        json!(-1),
        json!(1.5),
        json!([{}]),
        json!({"": []}),
    ];
    let tz = shanghai();
    for fixture in [EXPENSE, LEAVE] {
        let mut doc = info(fixture);
        let mut paths = Vec::new();
        collect_paths(&doc, &mut Vec::new(), &mut paths);
        for path in &paths {
            // to_document is total but slow in debug builds: check it once per path.
            let mut documented = false;
            for j in &junk {
                let Some(slot) = pointer_mut(&mut doc, path) else {
                    continue;
                };
                let original = std::mem::replace(slot, j.clone());
                if let Ok(a) = normalise(&doc, &tz)
                    && !documented
                {
                    documented = a.to_document().is_object();
                }
                if let Some(slot) = pointer_mut(&mut doc, path) {
                    *slot = original;
                }
            }
        }
    }
}

fn collect_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(k.clone());
                collect_paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                prefix.push(i.to_string());
                collect_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn pointer_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, key| match v {
        Value::Object(map) => map.get_mut(key),
        Value::Array(list) => key.parse::<usize>().ok().and_then(|i| list.get_mut(i)),
        _ => None,
    })
}

// -- document -------------------------------------------------------------------------------
