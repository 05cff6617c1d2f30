//! Form controls, one test per control family, on the fixtures and hand-made values.

use super::*;
use crate::wecom::approval::scalars::parse_decimal;

#[test]
fn form_keeps_order_skips_tips_and_keeps_everything_else() {
    let a = expense();
    let kinds: Vec<_> = a.form.controls.iter().map(|c| c.control.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Text",
            "Textarea",
            "Number",
            "Money",
            "Formula",
            "Date",
            "Date",
            "DateRange",
            "Selector",
            "Selector",
            "Contact",
            "Contact",
            "File",
            "Table",
            "Vacation",
            "Attendance",
            "PunchCorrection",
            "Location",
            "RelatedApproval",
            "BankAccount",
            "PhoneNumber",
            "Text",
            "Fancy",
            "Text",
        ]
    );
    assert!(!a.form.controls.iter().any(|c| c.id.starts_with("Tips")));
}

#[test]
fn text_and_textarea() {
    let a = expense();
    let reason = by_id(&a, "Text-1748000000001");
    assert_eq!(reason.title, "报销事由");
    assert_eq!(
        reason.value,
        FormValue::Text {
            text: "6月上海-北京客户拜访差旅报销".into()
        }
    );
    let remarks = by_id(&a, "Textarea-1748000000002");
    assert_eq!(
        remarks.title, "备注",
        "zh_CN title wins even when listed second"
    );
    assert_eq!(
        remarks.value,
        FormValue::Text {
            text: "含<高铁>&住宿费用\n纸质发票已交财务".into()
        }
    );
    assert!(!remarks.hidden);
}

#[test]
fn hidden_control_is_kept_and_flagged() {
    let a = expense();
    let cc = by_id(&a, "Text-1748000000026");
    assert!(cc.hidden);
    assert_eq!(
        cc.value,
        FormValue::Text {
            text: "CC-SH-0421".into()
        }
    );
}

#[test]
fn number_money_and_formula_are_exact() {
    let a = expense();
    assert_eq!(
        by_id(&a, "Number-1748000000004").value,
        FormValue::Number {
            value: Some(dec("7"))
        }
    );
    let FormValue::Money {
        amount: Some(total),
    } = by_id(&a, "Money-1748000000005").value
    else {
        panic!("money");
    };
    assert_eq!(total.to_string(), "100001280.79");
    let FormValue::Formula { value, raw } = &by_id(&a, "Formula-1748000000006").value else {
        panic!("formula");
    };
    assert_eq!((value, raw.as_str()), (&Some(total), "100001280.79"));
}

#[test]
fn table_rows_sum_exactly_to_the_cent() {
    let a = expense();
    let FormValue::Table { rows } = &by_id(&a, "Table-1748000000018").value else {
        panic!("table");
    };
    assert_eq!(rows.len(), 4);
    let mut amounts = Vec::new();
    for row in rows {
        let kinds: Vec<_> = row.iter().map(|c| c.control.as_str()).collect();
        assert_eq!(kinds, ["Selector", "Money", "Text", "Date"]);
        let FormValue::Money {
            amount: Some(amount),
        } = row[1].value
        else {
            panic!("money cell");
        };
        amounts.push(amount);
    }
    let rendered: Vec<_> = amounts.iter().map(Decimal::to_string).collect();
    assert_eq!(
        rendered,
        ["1280.50", "0.10", "99999999.99", "0.20"],
        "scale kept"
    );
    let sum: Decimal = amounts.iter().sum();
    assert_eq!(sum, dec("100001280.79"));
    assert_eq!(sum.to_string(), "100001280.79");
    let FormValue::Money {
        amount: Some(total),
    } = by_id(&a, "Money-1748000000005").value
    else {
        panic!("money");
    };
    assert_eq!(sum, total, "table lines add up to the claimed total");
    assert_eq!(
        amounts[1] + amounts[3],
        dec("0.30"),
        "0.1 + 0.2 is exactly 0.3"
    );

    let first = &rows[0];
    assert_eq!(first[0].title, "费用类型");
    assert_eq!(
        first[0].value,
        FormValue::Selector {
            multi: false,
            options: vec![SelectorOption {
                key: "option-1748000000001".into(),
                text: "交通费".into()
            }],
        }
    );
    assert_eq!(
        first[2].value,
        FormValue::Text {
            text: "上海虹桥-北京南 高铁往返".into()
        }
    );
    assert_eq!(
        first[3].value,
        date(
            "day",
            "2025-05-28T00:00:00+08:00",
            "2025-05-28",
            1_748_361_600
        )
    );
}

#[test]
fn decimal_arithmetic_from_strings_is_exact() {
    assert_eq!(
        parse_decimal("0.1")
            .ok()
            .flatten()
            .zip(parse_decimal("0.2").ok().flatten())
            .map(|(a, b)| a + b),
        Some(dec("0.3"))
    );
    assert_ne!(0.1_f64 + 0.2_f64, 0.3_f64, "what floats would have done");
}

/// A `Date` value as the fixtures' dates decode.
fn date(kind: &str, at: &str, day: &str, timestamp: i64) -> FormValue {
    FormValue::Date {
        kind: kind.into(),
        at: Some(at.into()),
        date: Some(day.into()),
        timestamp: Some(timestamp),
    }
}

/// The expense fixture's controls that decode to a plain value, each exactly.
#[test]
fn plain_controls_decode_exactly() {
    let a = expense();
    let expected = [
        // dates in Shanghai and in their own zone
        (
            "Date-1748000000007",
            date(
                "day",
                "2025-06-01T00:00:00+08:00",
                "2025-06-01",
                1_748_707_200,
            ),
        ),
        (
            "Date-1748000000008",
            date(
                "hour",
                "2025-06-02T14:00:00+09:00",
                "2025-06-02",
                1_748_840_400,
            ),
        ),
        (
            "DateRange-1748000000009",
            FormValue::DateRange {
                kind: "halfday".into(),
                begin: Some("2025-05-28T00:00:00+08:00".into()),
                end: Some("2025-05-30T12:00:00+08:00".into()),
                begin_timestamp: Some(1_748_361_600),
                end_timestamp: Some(1_748_577_600),
                duration_secs: Some(216_000),
            },
        ),
        // selectors, single and multi
        (
            "Selector-1748000000010",
            FormValue::Selector {
                multi: false,
                options: vec![SelectorOption {
                    key: "option-1748000000011".into(),
                    text: "差旅费".into(),
                }],
            },
        ),
        (
            "Selector-1748000000012",
            FormValue::Selector {
                multi: true,
                options: vec![
                    SelectorOption {
                        key: "option-1748000000013".into(),
                        text: "客户拜访".into(),
                    },
                    SelectorOption {
                        key: "option-1748000000014".into(),
                        text: "含跨境费用".into(),
                    },
                ],
            },
        ),
        // contacts: members, then departments
        (
            "Contact-1748000000015",
            FormValue::Contact {
                users: vec![
                    ContactUser {
                        user_id: "WuJunJie".into(),
                        name: "吴俊杰".into(),
                    },
                    ContactUser {
                        user_id: "LiuYang".into(),
                        name: "刘洋".into(),
                    },
                ],
                departments: vec![],
            },
        ),
        (
            "Contact-1748000000016",
            FormValue::Contact {
                users: vec![],
                departments: vec![ContactDept {
                    id: "5".into(),
                    name: "华东销售部".into(),
                }],
            },
        ),
        (
            "File-1748000000017",
            FormValue::File {
                file_ids: vec![
                    "WWCISP_fake_invoice_0001".into(),
                    "WWCISP_fake_invoice_0002".into(),
                ],
            },
        ),
        (
            "PunchCorrection-1748000000021",
            FormValue::PunchCorrection {
                state: "上班-未打卡".into(),
                time: Some("2025-06-03T09:00:00+08:00".into()),
                day: Some("2025-06-03".into()),
            },
        ),
        (
            "Location-1748000000022",
            FormValue::Location {
                latitude: "31.194260".into(),
                longitude: "121.320500".into(),
                title: "上海虹桥站".into(),
                address: "上海市闵行区申贵路1500号".into(),
                time: Some("2025-05-27T07:45:00+08:00".into()),
            },
        ),
        (
            "RelatedApproval-1748000000023",
            FormValue::RelatedApproval {
                items: vec![RelatedApprovalItem {
                    sp_no: "202505200007".into(),
                    template_name: "出差申请".into(),
                    status: Some(2),
                    name: "张三".into(),
                    create_time: Some("2025-05-20T10:03:11+08:00".into()),
                }],
            },
        ),
        (
            "BankAccount-1748000000024",
            FormValue::BankAccount {
                account_type: Some(2),
                account_name: "张三".into(),
                account_number: "6222000000000000001".into(),
                bank_name: "工商银行".into(),
                bank_code: "1000009547".into(),
                branch_name: "中国工商银行股份有限公司上海市示例支行".into(),
                branch_id: "102290000121".into(),
                province: "上海市".into(),
                city: "上海市".into(),
                remark: "工资卡".into(),
            },
        ),
    ];
    for (id, value) in expected {
        assert_eq!(by_id(&a, id).value, value, "{id}");
    }
}

#[test]
fn vacation_in_expense_and_leave() {
    assert_eq!(
        by_id(&expense(), "Vacation-1748000000019").value,
        FormValue::Vacation {
            type_key: "1".into(),
            type_name: "年假".into(),
            period: AttendancePeriod {
                range_kind: "hour".into(),
                begin: Some("2025-06-09T08:00:00+08:00".into()),
                end: Some("2025-06-09T16:00:00+08:00".into()),
                begin_timestamp: Some(1_749_427_200),
                end_timestamp: Some(1_749_456_000),
                duration_secs: Some(28_800),
                day_items: vec![DayItem {
                    date: Some("2025-06-09".into()),
                    at: Some("2025-06-09T00:00:00+08:00".into()),
                    duration_secs: Some(28_800),
                }],
                slice_duration_secs: Some(28_800),
            },
        }
    );
    let l = leave();
    let vacation = by_id(&l, "vacation-1563793073898");
    assert_eq!(vacation.title, "请假类型");
    let FormValue::Vacation {
        type_key,
        type_name,
        period:
            AttendancePeriod {
                begin,
                end,
                duration_secs,
                day_items,
                slice_duration_secs,
                ..
            },
    } = &vacation.value
    else {
        panic!("vacation");
    };
    assert_eq!((type_key.as_str(), type_name.as_str()), ("3", "病假"));
    assert_eq!(begin.as_deref(), Some("2025-06-10T09:00:00+08:00"));
    assert_eq!(end.as_deref(), Some("2025-06-11T18:00:00+08:00"));
    assert_eq!(
        (*duration_secs, *slice_duration_secs),
        (Some(118_800), Some(61_200))
    );
    let days: Vec<_> = day_items
        .iter()
        .map(|d| (d.date.as_deref(), d.duration_secs))
        .collect();
    assert_eq!(
        days,
        [
            (Some("2025-06-10"), Some(28_800)),
            (Some("2025-06-11"), Some(32_400))
        ]
    );
}

#[test]
fn attendance_in_expense_and_leave() {
    let a = expense();
    let FormValue::Attendance {
        kind,
        period:
            AttendancePeriod {
                range_kind,
                begin,
                end,
                duration_secs,
                day_items,
                slice_duration_secs,
                ..
            },
    } = &by_id(&a, "Attendance-1748000000020").value
    else {
        panic!("attendance");
    };
    assert_eq!((*kind, range_kind.as_str()), (Some(3), "halfday"));
    assert_eq!(begin.as_deref(), Some("2025-05-28T00:00:00+08:00"));
    assert_eq!(end.as_deref(), Some("2025-05-30T12:00:00+08:00"));
    assert_eq!(
        (*duration_secs, *slice_duration_secs),
        (Some(216_000), Some(216_000))
    );
    let total: i64 = day_items.iter().filter_map(|d| d.duration_secs).sum();
    assert_eq!(total, 216_000);
    assert_eq!(
        day_items[2].at.as_deref(),
        Some("2025-05-30T00:00:00+08:00")
    );

    // Outing without slice_info (older forms).
    assert_eq!(
        by_id(&leave(), "Attendance-1749000000001").value,
        FormValue::Attendance {
            kind: Some(4),
            period: AttendancePeriod {
                range_kind: "hour".into(),
                begin: Some("2025-06-11T14:00:00+08:00".into()),
                end: Some("2025-06-11T16:00:00+08:00".into()),
                begin_timestamp: Some(1_749_621_600),
                end_timestamp: Some(1_749_628_800),
                duration_secs: Some(7_200),
                day_items: vec![],
                slice_duration_secs: None,
            },
        }
    );
}

#[test]
fn phone_number_and_unknown_controls_keep_their_raw_value() {
    let a = expense();
    let source = info(EXPENSE);
    let raw_of = |id: &str| {
        source["apply_data"]["contents"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == id))
            .map(|c| c["value"].clone())
            .expect("in fixture")
    };
    let FormValue::PhoneNumber { raw } = &by_id(&a, "PhoneNumber-1748000000025").value else {
        panic!("phone");
    };
    assert_eq!(raw, &raw_of("PhoneNumber-1748000000025"));
    assert_eq!(raw["phone_number"]["number"], "13800000000");
    let fancy = by_id(&a, "Fancy-1748000000027");
    assert_eq!(fancy.title, "满意度");
    assert_eq!(
        fancy.value,
        FormValue::Unknown {
            control: "Fancy".into(),
            raw: raw_of("Fancy-1748000000027")
        }
    );
    // A contents item that is not even an object is kept too.
    let a =
        normalise(&minimal(json!(["junk", {"control": "Tips"}])), &shanghai()).expect("normalises");
    assert_eq!(
        a.form.controls[0].value,
        FormValue::Unknown {
            control: String::new(),
            raw: json!("junk")
        }
    );
    assert_eq!(a.form.controls.len(), 1);
}

// -- tolerance ------------------------------------------------------------------------------
