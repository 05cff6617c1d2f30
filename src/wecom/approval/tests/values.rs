//! Single values: empty and absent values, timestamps and numbers, decimal syntax, zones.

use super::*;
use crate::wecom::approval::scalars::{parse_decimal, parse_zone_desc};

#[test]
fn empty_and_absent_values_are_none_not_errors() {
    assert_eq!(
        one_value("Money", json!({"new_money": ""})),
        FormValue::Money { amount: None }
    );
    assert_eq!(
        one_value("Money", json!({})),
        FormValue::Money { amount: None }
    );
    assert_eq!(
        one_value("Number", json!(null)),
        FormValue::Number { value: None }
    );
    assert_eq!(
        one_value("Text", json!({"members": []})),
        FormValue::Text {
            text: String::new()
        }
    );
    assert_eq!(
        one_value("Date", json!({"date": {"type": "day", "s_timestamp": ""}})),
        FormValue::Date {
            kind: "day".into(),
            at: None,
            date: None,
            timestamp: None
        }
    );
    assert_eq!(
        one_value("Selector", json!({"selector": {"type": "multi"}})),
        FormValue::Selector {
            multi: true,
            options: vec![]
        }
    );
    assert_eq!(
        one_value("Table", json!({"children": [{"list": []}, {}]})),
        FormValue::Table {
            rows: vec![vec![], vec![]]
        }
    );
    assert_eq!(
        one_value("Formula", json!({"formula": {"value": "#DIV/0"}})),
        FormValue::Formula {
            value: None,
            raw: "#DIV/0".into()
        }
    );
}

#[test]
fn timestamps_and_numbers_accept_both_encodings() {
    let date =
        |ts: Value| match one_value("Date", json!({"date": {"type": "hour", "s_timestamp": ts}})) {
            FormValue::Date { at, .. } => at,
            other => panic!("{other:?}"),
        };
    assert_eq!(date(json!("1749021127")), date(json!(1749021127)));
    assert_eq!(
        date(json!(1749021127)).as_deref(),
        Some("2025-06-04T15:12:07+08:00")
    );
    let range = one_value(
        "DateRange",
        json!({"date_range": {"type": "hour", "new_begin": "1749021127", "new_end": 1749024727, "new_duration": "3600"}}),
    );
    let FormValue::DateRange {
        begin,
        end,
        duration_secs,
        ..
    } = range
    else {
        panic!("range");
    };
    assert_eq!(begin.as_deref(), Some("2025-06-04T15:12:07+08:00"));
    assert_eq!(end.as_deref(), Some("2025-06-04T16:12:07+08:00"));
    assert_eq!(duration_secs, Some(3600));
    // The doc's JSON example leaves out the `date` wrapper.
    let FormValue::Date { timestamp, .. } =
        one_value("Date", json!({"type": "day", "s_timestamp": "1748707200"}))
    else {
        panic!("date");
    };
    assert_eq!(timestamp, Some(1_748_707_200));
    // Money as a JSON number (not what WeCom sends, but exact for what it says).
    assert_eq!(
        one_value("Money", json!({"new_money": 12.5})),
        FormValue::Money {
            amount: Some(dec("12.5"))
        }
    );
}

#[test]
fn decimal_syntax() {
    let ok = |s: &str| parse_decimal(s).map(|d| d.map(|d| d.to_string()));
    assert_eq!(ok(" 12.50 "), Ok(Some("12.50".into())));
    assert_eq!(ok("-0.01"), Ok(Some("-0.01".into())));
    assert_eq!(ok("+7"), Ok(Some("7".into())));
    assert_eq!(ok("00012.30"), Ok(Some("12.30".into())));
    assert_eq!(
        ok("9999999999999999999999999999"),
        Ok(Some("9999999999999999999999999999".into()))
    );
    assert_eq!(ok(""), Ok(None));
    for bad in [
        "1_000",
        "1e3",
        "NaN",
        "inf",
        ".5",
        "5.",
        "1,280.50",
        "¥12",
        "--1",
        "1.2.3",
        "0x10",
        "99999999999999999999999999999",
        "0.00000000000000000000000000001",
    ] {
        assert!(parse_decimal(bad).is_err(), "{bad} should be rejected");
    }
}

#[test]
fn zone_desc_is_authoritative_and_zone_offset_is_hours_west() {
    let at = |tzi: Value| match one_value(
        "Date",
        json!({"date": {"type": "hour", "s_timestamp": "1749021127", "timezone_info": tzi}}),
    ) {
        FormValue::Date { at, .. } => at.expect("set"),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        at(json!({"zone_offset": "-9", "zone_desc": "UTC+9"})),
        "2025-06-04T16:12:07+09:00"
    );
    assert_eq!(
        at(json!({"zone_offset": "whatever", "zone_desc": "UTC-3:30"})),
        "2025-06-04T03:42:07-03:30"
    );
    assert_eq!(
        at(json!({"zone_desc": "GMT+05:30"})),
        "2025-06-04T12:42:07+05:30"
    );
    assert_eq!(at(json!({"zone_desc": "UTC"})), "2025-06-04T07:12:07+00:00");
    assert_eq!(
        at(json!({"zone_offset": "-9"})),
        "2025-06-04T16:12:07+09:00"
    );
    assert_eq!(at(json!({"zone_offset": 3})), "2025-06-04T04:12:07-03:00");
    assert_eq!(
        at(json!({"zone_offset": "-5.5"})),
        "2025-06-04T12:42:07+05:30"
    );
    assert_eq!(
        at(json!({"zone_offset": "8", "zone_desc": "nonsense"})),
        "2025-06-03T23:12:07-08:00"
    );
    // Unusable → the caller's zone.
    for bad in [
        json!({}),
        json!({"zone_desc": "UTC+99"}),
        json!({"zone_offset": "x"}),
        json!("UTC+9"),
        json!({"zone_desc": "UTC+9:7"}),
    ] {
        assert_eq!(at(bad), "2025-06-04T15:12:07+08:00");
    }
    assert_eq!(parse_zone_desc("utc+8"), Some(8 * 3600));
    assert_eq!(parse_zone_desc("UTC 9"), None);
    assert_eq!(parse_zone_desc("CST"), None);
}

// -- errors ---------------------------------------------------------------------------------
