use std::path::Path;

use super::*;
use crate::deliver::spec;

const NOW: i64 = 1_780_000_000; // an arbitrary fixed "now", Unix seconds

fn rules(extra: &str) -> AnswerRules {
    let text = format!("kind = \"http\"\nurl = \"https://t.example\"\n{extra}");
    spec::parse(Path::new("t.toml"), &text, "t")
        .unwrap_or_else(|e| panic!("{e:?}"))
        .answers
}

fn run(
    rules: &AnswerRules,
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &str,
) -> Verdict {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    h.push(("content-type".into(), content_type.into()));
    let parsed = parse_body(Some(content_type), body.as_bytes(), false);
    let view = AnswerView {
        status,
        headers: &h,
        body: &parsed,
    };
    classify(
        rules,
        &view,
        body.as_bytes(),
        jiff::Timestamp::from_second(NOW).unwrap(),
    )
}

fn retryable_after(v: &Verdict) -> Option<Duration> {
    match v {
        Verdict::Retryable { after, .. } => *after,
        other => panic!("expected retryable, got {other:?}"),
    }
}

fn permanent_reason(v: Verdict) -> String {
    match v {
        Verdict::Permanent { reason } => reason,
        other => panic!("expected permanent, got {other:?}"),
    }
}

const JSON: &str = "application/json";

/// [`run`] for a JSON answer without headers.
fn json(rules: &AnswerRules, status: u16, body: &str) -> Verdict {
    run(rules, status, &[], JSON, body)
}

/// PROTOCOLS.md §1.5: Kingdee answers HTTP 200 for everything.
#[test]
fn kingdee_success_failure_and_duplicate() {
    let r = rules(
        r#"message = ["/Result/ResponseStatus/Errors/0/Message"]
[success]
pointer = "/Result/ResponseStatus/IsSuccess"
eq = true
[duplicate]
pointer = "/Result/ResponseStatus/Errors/0/FieldName"
eq = "FBillNo"
"#,
    );
    let ok = r#"{"Result":{"ResponseStatus":{"IsSuccess":true,"Errors":[],"SuccessEntitys":[{"Id":100029,"Number":"FKSQ000004","DIndex":0}],"SuccessMessages":[],"MsgCode":0},"Id":100029,"Number":"FKSQ000004","NeedReturnData":[{}]}}"#;
    let required = r#"{"Result":{"ResponseStatus":{"ErrorCode":500,"IsSuccess":false,"Errors":[{"FieldName":"FStockId","Message":"单据体“明细信息”第1行字段“仓库”是必填项"}]},"Id":""}}"#;
    let dup = r#"{"Result":{"ResponseStatus":{"ErrorCode":500,"IsSuccess":false,"Errors":[{"FieldName":"FBillNo","Message":"违反字段唯一性要求：编码唯一。[test5]在当前系统中已经被使用。","DIndex":0}],"SuccessEntitys":[],"SuccessMessages":[],"MsgCode":11}}}"#;
    let template =
        r#"{"Result":{"ResponseStatus":{"IsSuccess":"true","ErrorCode":"","MsgCode":""}}}"#;
    assert_eq!(json(&r, 200, ok), Verdict::Delivered);
    assert_eq!(json(&r, 200, template), Verdict::Delivered);
    assert_eq!(json(&r, 200, dup), Verdict::Duplicate);
    let reason = permanent_reason(json(&r, 200, required));
    assert!(
        reason.contains("success condition does not hold") && reason.contains("“仓库”是必填项"),
        "{reason}"
    );
}

/// PROTOCOLS.md §2.1: YonBIP's `code` is "200" or 200; business failures are HTTP 200.
#[test]
fn yonbip_code_as_string_or_number_and_rate_limit_codes() {
    let r = rules(
        r#"message = ["/code", "/message"]
[success]
pointer = "/code"
eq = "200"
[duplicate]
pointer = "/code"
in = ["100004", "10004"]
[retryable]
pointer = "/code"
in = ["310032", "310039", "310042", "310046", "310504", "202"]
"#,
    );
    assert_eq!(
        json(
            &r,
            200,
            r#"{"code":"200","message":"OK","data":{"voucherId":"2A45"}}"#
        ),
        Verdict::Delivered
    );
    assert_eq!(
        json(&r, 200, r#"{"code":200,"message":"OK","data":{}}"#),
        Verdict::Delivered
    );
    assert_eq!(
        json(&r, 200, r#"{"code":100004,"data":{"id":7}}"#),
        Verdict::Duplicate
    );
    let busy = json(&r, 200, r#"{"code":"310046","message":"API调用超过限制"}"#);
    assert_eq!(retryable_after(&busy), None);
    let reason = permanent_reason(json(
        &r,
        200,
        r#"{"code":"404","message":"凭证保存不成功,账簿code不能为空！","data":{}}"#,
    ));
    assert_eq!(
        reason,
        "HTTP 200, the success condition does not hold: 404; 凭证保存不成功,账簿code不能为空！"
    );
    // One YonBIP endpoint answers text/plain: not understood, never success.
    let reason = permanent_reason(run(&r, 200, &[], "text/plain", "非法token"));
    assert!(
        reason.contains("neither JSON nor XML: 非法token"),
        "{reason}"
    );
}

/// The finance stand-in's answers, including "200 with an error code".
#[test]
fn two_hundred_with_an_error_code_is_permanent_with_the_targets_message() {
    let r = rules(
        r#"message = ["/code", "/message"]
[success]
status = [200, 201]
pointer = "/code"
eq = 0
[duplicate]
status = 409
pointer = "/code"
eq = "ALREADY_EXISTS"
"#,
    );
    assert_eq!(
        json(
            &r,
            201,
            r#"{"code":0,"message":"ok","data":{"voucher_no":"JZ-000001"}}"#
        ),
        Verdict::Delivered
    );
    assert_eq!(json(&r, 201, r#"{"code":"0"}"#), Verdict::Delivered);
    assert_eq!(
        json(
            &r,
            409,
            r#"{"code":"ALREADY_EXISTS","message":"单据编号 EXP-1 已存在"}"#
        ),
        Verdict::Duplicate
    );
    assert_eq!(
        permanent_reason(json(
            &r,
            200,
            r#"{"code":"E1001","message":"科目 6602 已停用","data":null}"#
        )),
        "HTTP 200, the success condition does not hold: E1001; 科目 6602 已停用"
    );
    assert_eq!(
        permanent_reason(json(
            &r,
            422,
            r#"{"code":"VALIDATION","message":"借贷不平衡"}"#
        )),
        "HTTP 422, refused: VALIDATION; 借贷不平衡"
    );
    // A 409 that is not the target's duplicate answer is a refusal, not a duplicate.
    assert!(matches!(
        json(&r, 409, r#"{"code":"CONFLICT"}"#),
        Verdict::Permanent { .. }
    ));
}

#[test]
fn rate_limits_and_server_errors_are_retryable_honouring_retry_after() {
    let r = rules("");
    assert_eq!(
        retryable_after(&run(&r, 429, &[("Retry-After", "7")], JSON, "{}")),
        Some(Duration::from_secs(7))
    );
    let date = jiff::Timestamp::from_second(NOW + 120)
        .unwrap()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    assert_eq!(
        retryable_after(&run(&r, 429, &[("Retry-After", &date)], JSON, "{}")),
        Some(Duration::from_secs(120))
    );
    let past = jiff::Timestamp::from_second(NOW - 5)
        .unwrap()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    assert_eq!(
        retryable_after(&run(&r, 429, &[("Retry-After", &past)], JSON, "{}")),
        Some(Duration::ZERO)
    );
    assert_eq!(
        retryable_after(&run(&r, 429, &[("Retry-After", "soon")], JSON, "{}")),
        None
    );
    assert_eq!(
        retryable_after(&run(&r, 503, &[("Retry-After", "30")], JSON, "{}")),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        retryable_after(&json(&r, 500, r#"{"code":"INTERNAL"}"#)),
        None
    );
    assert_eq!(retryable_after(&json(&r, 408, "")), None);
    // Kingdee's public gateway uses the non-standard 519.
    assert_eq!(retryable_after(&json(&r, 519, r#"{"errcode":4006}"#)), None);
}

#[test]
fn answers_we_do_not_understand_are_never_success() {
    let r = rules("");
    let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    assert!(matches!(
        run(&r, 502, &[], "text/html", html),
        Verdict::Retryable { .. }
    ));
    let reason = permanent_reason(run(&r, 200, &[], "text/html", html));
    assert!(
        reason.contains("not understood") && reason.contains("502 Bad Gateway"),
        "{reason}"
    );
    let truncated = r#"{"code":0,"data":{"voucher_no":"JZ"#;
    let reason = permanent_reason(json(&r, 200, truncated));
    assert!(reason.contains("invalid JSON"), "{reason}");
    // An empty 204 is understood; a status-only success accepts it.
    assert_eq!(run(&r, 204, &[], "", ""), Verdict::Delivered);
    assert_eq!(
        parse_body(None, b"x".repeat(10).as_slice(), true),
        Body::Unparsed {
            why: "the answer is longer than 10 bytes".into()
        }
    );
}

/// PROTOCOLS.md §2.3: U8 EAI answers XML with `succeed` attributes.
#[test]
fn u8_eai_xml_answers() {
    let r = rules(
        r#"message = ["//item/@dsc"]
[success]
xpath = "//item/@succeed"
eq = 0
[duplicate]
xpath = "//item/@succeed"
eq = "101"
"#,
    );
    let ok = r#"<?xml version="1.0" encoding="utf-8"?><ufinterface roottag="return"><item accounting_period="5" voucher_type="收" voucher_id="3" entry_id="" succeed="0" dsc="凭证已成功保存" u8accounting_period="5" u8voucher_id="3"/></ufinterface>"#;
    let dup = r#"<ufinterface roottag="return"><item key="p16102" succeed="101" dsc="客户编码已经存在，不可重复！"/></ufinterface>"#;
    let bad = r#"<ufinterface roottag="return"><item succeed="1" dsc="科目不存在"/></ufinterface>"#;
    assert_eq!(run(&r, 200, &[], "text/xml", ok), Verdict::Delivered);
    assert_eq!(run(&r, 200, &[], "text/xml", dup), Verdict::Duplicate);
    assert_eq!(
        permanent_reason(run(&r, 200, &[], "text/xml", bad)),
        "HTTP 200, the success condition does not hold: 科目不存在"
    );
}

#[test]
fn transport_failures_are_retryable() {
    for f in [
        TransportFailure::Timeout {
            after: Duration::from_millis(250),
        },
        TransportFailure::Connect {
            detail: "connection refused".into(),
        },
        TransportFailure::Interrupted {
            detail: "reset".into(),
        },
    ] {
        assert!(matches!(
            transport_verdict(&f),
            Verdict::Retryable { after: None, .. }
        ));
    }
    let Verdict::Retryable { reason, .. } = transport_verdict(&TransportFailure::Timeout {
        after: Duration::from_millis(250),
    }) else {
        unreachable!()
    };
    assert_eq!(reason, "no answer within 250 ms (timeout)");
}
