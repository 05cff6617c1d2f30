use serde_json::json;

use super::*;

fn vector_creds() -> Credentials {
    Credentials {
        acct_id: "62f1e4b0a1b2c3".into(),
        user: "integration".into(),
        app_id: "224248_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY".into(),
        app_secret: "0123456789abcdef0123456789abcdef".into(),
        lcid: 2052,
        org_num: "0".into(),
    }
}

/// Second vector computed with Python's hmac/hashlib/urllib following the SDK's steps
/// (non-ASCII user and secret, org 100, upper-case `K3Cloud`).
fn second_creds() -> Credentials {
    Credentials {
        acct_id: "5f0a1b2c3d4e5f".into(),
        user: "财务接口".into(),
        app_id: "318000_enl4d3Z1dHNycXBvbm1sa2ppaGdmZWRj".into(),
        app_secret: "s3cr3t-Ω".into(),
        lcid: 2052,
        org_num: "100".into(),
    }
}

fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

#[test]
fn protocols_md_vector_is_reproduced() {
    let path = Op::Save.path("/k3cloud");
    assert_eq!(
        encode_path(&path),
        "%2Fk3cloud%2FKingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save.common.kdsvc"
    );
    assert_eq!(
        decode_app_secret("QUJDREVGR0hJSktMTU5PUFFSU1RVVldY", DEFAULT_SECRET_SEED),
        "cXJ2cCN1fn8qfHl/eX14aDNiajc0YTNr"
    );
    let h = signed_headers(&vector_creds(), &path, 1_700_000_000, DEFAULT_SECRET_SEED).unwrap();
    assert_eq!(header(&h, "X-Api-ClientID"), "224248");
    assert_eq!(
        header(&h, "X-Api-Signature"),
        "YzQ1YjFmZTY4MmNmMTU5ZjlkMTY1ZGE5ZmUwZWUwZTQ1ZmM3YjI5M2VkMTgzNWZjYTQzNTgxMTQxYjI0MmE2MQ=="
    );
    assert_eq!(
        header(&h, "X-Kd-Appdata"),
        "NjJmMWU0YjBhMWIyYzMsaW50ZWdyYXRpb24sMjA1Miww"
    );
    assert_eq!(
        header(&h, "X-Kd-Signature"),
        "ZGM4NGJhZGM1ZGYwNGVkODNmMjgwZDVmODNiY2E3ZTQwNGJlNDU1ZDcyMjhmNDRiYjI2ODFkMTJiNDgwN2I0MA=="
    );
    assert_eq!(header(&h, "x-api-nonce"), "1700000000");
}

#[test]
fn second_computed_vector_is_reproduced() {
    let path = Op::Audit.path("/K3Cloud/");
    let h = signed_headers(&second_creds(), &path, 1_767_225_600, DEFAULT_SECRET_SEED).unwrap();
    assert_eq!(header(&h, "X-Api-ClientID"), "318000");
    assert_eq!(
        header(&h, "X-Api-Signature"),
        "MGJlOGFhMjc3MWM5ZjI3NmM0MTdjZjkzNmQxNzcxZGNhMTE4MDA4MmZkMTI4OTg3NmYzYjAxOWFjZmFkZmNjNg=="
    );
    assert_eq!(
        header(&h, "X-Kd-Appdata"),
        "NWYwYTFiMmMzZDRlNWYs6LSi5Yqh5o6l5Y+jLDIwNTIsMTAw"
    );
    assert_eq!(
        header(&h, "X-Kd-Signature"),
        "MGJjMjFjM2ExY2Y1MDcwYjgyY2Y1ZmNjZGI2MTNmZDgwZDVlNzBiY2VhYjZhNjgxZjVhNTE3MDM3MzliNTUzMw=="
    );
}

#[test]
fn login_sign_vectors() {
    assert_eq!(
        login_sign(&vector_creds(), 1_700_000_000),
        "3bb6b41820b1750782e087e5eb289e01f64ba59f7c285380a5b4ddf00707f482"
    );
    assert_eq!(
        login_sign(&second_creds(), 1_767_225_600),
        "1034ecebd833ca3be9b213a5f3b02665c381e7692f961e44a6bd3d454e68c664"
    );
}

#[test]
fn malformed_app_ids_fail_before_any_request() {
    for bad in [
        "no-underscore",
        "123_short",
        "_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",
        "1_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    ] {
        let mut c = vector_creds();
        c.app_id = bad.into();
        assert_eq!(
            signed_headers(&c, "/k3cloud/x", 1, DEFAULT_SECRET_SEED),
            Err(KingdeeError::MalformedAppId(bad.into())),
            "{bad}"
        );
    }
}

#[test]
fn envelopes_new_and_legacy() {
    let data = save_data(json!({"FBillNo": "SP1"}), &["FVOUCHERGROUPNO"]);
    let new = envelope("GL_VOUCHER", &data, Envelope::New);
    assert_eq!(new["formid"], "GL_VOUCHER");
    assert_eq!(new["data"]["Model"]["FBillNo"], "SP1");
    let legacy = envelope("GL_VOUCHER", &data, Envelope::Legacy);
    let inner: serde_json::Value = serde_json::from_str(
        legacy["parameters"][1]
            .as_str()
            .expect("nested JSON string"),
    )
    .unwrap();
    assert_eq!(legacy["parameters"][0], "GL_VOUCHER");
    assert_eq!(inner, data);
    assert_eq!(numbers_data(&["A1"]), json!({"Numbers": ["A1"]}));
}

#[test]
fn login_answers() {
    let ok =
        br#"{"Message":null,"LoginResultType":1,"KDSVCSessionId":"body-id","IsSuccessByAPI":true}"#;
    let s = parse_login(
        200,
        ok,
        [
            "kdservice-sessionid=cookie-id; Path=/",
            "ASP.NET_SessionId=asp; Path=/; HttpOnly",
        ],
    )
    .unwrap();
    assert_eq!(s.id, "cookie-id");
    assert_eq!(
        s.cookie_header(),
        "kdservice-sessionid=cookie-id; ASP.NET_SessionId=asp"
    );
    let refused = r#"{"Message":"用户名或密码错误！","LoginResultType":0,"KDSVCSessionId":null}"#;
    assert!(matches!(
        parse_login(200, refused.as_bytes(), []),
        Err(KingdeeError::LoginRefused { result_type: 0, .. })
    ));
    assert!(matches!(
        parse_login(502, b"<html>", []),
        Err(KingdeeError::LoginUnreadable { status: 502, .. })
    ));
}

#[test]
fn classify_real_answers() {
    let ok = br#"{"Result":{"ResponseStatus":{"IsSuccess":true,"Errors":[],"SuccessEntitys":[{"Id":100029,"Number":"FKSQ000004","DIndex":0}],"SuccessMessages":[],"MsgCode":0},"Id":100029,"Number":"FKSQ000004","NeedReturnData":[{}]}}"#;
    assert_eq!(
        classify(200, ok),
        Outcome::success(Some("100029".into()), Some("FKSQ000004".into()))
    );
    let doc_template = br#"{"Result":{"ResponseStatus":{"IsSuccess":"true","SuccessEntitys":[{"Id":"7","Number":"N7"}]},"Id":""}}"#;
    assert_eq!(
        classify(200, doc_template),
        Outcome::success(Some("7".into()), Some("N7".into()))
    );
    let dup = r#"{"Result":{"ResponseStatus":{"ErrorCode":500,"IsSuccess":false,"Errors":[{"FieldName":"FBillNo","Message":"违反字段唯一性要求：编码唯一。[test5]在当前系统中已经被使用。","DIndex":0}],"SuccessEntitys":[],"SuccessMessages":[],"MsgCode":11}}}"#;
    assert!(
        matches!(classify(200, dup.as_bytes()), Outcome::Duplicate { reason } if reason.contains("[test5]"))
    );
    let audited = r#"{"Result":{"ResponseStatus":{"ErrorCode":500,"IsSuccess":false,"Errors":[{"FieldName":"","Message":"单据编号为“TK202504030001”的销售出库单，单据已经审核！","DIndex":0}],"MsgCode":11}}}"#;
    assert!(matches!(
        classify(200, audited.as_bytes()),
        Outcome::Duplicate { .. }
    ));
    let field = r#"{"Result":{"ResponseStatus":{"ErrorCode":500,"IsSuccess":false,"Errors":[{"FieldName":"FStockId","Message":"单据体“明细信息”第1行字段“仓库”是必填项"}]},"Id":""}}"#;
    assert_eq!(
        classify(200, field.as_bytes()),
        Outcome::Permanent {
            reason: "FStockId: 单据体“明细信息”第1行字段“仓库”是必填项".into()
        }
    );
    let lost = r#"[[{"Result":{"ResponseStatus":{"ErrorCode":500,"IsSuccess":false,"Errors":[{"FieldName":null,"Message":"会话信息已丢失，请重新登录","DIndex":0}],"MsgCode":1}}}]]"#;
    assert!(matches!(
        classify(200, lost.as_bytes()),
        Outcome::Reauth { .. }
    ));
    let limit = br#"{"Result":{"ResponseStatus":{"IsSuccess":false,"Errors":[],"MsgCode":14}}}"#;
    assert!(matches!(classify(200, limit), Outcome::Retryable { .. }));
}

#[test]
fn classify_gateway_and_garbage() {
    let skew = r#"{"errcode":4006,"description":"X-Api-TimeStamp is invalid","description_cn":"时间戳无效"}"#.as_bytes();
    assert!(
        matches!(classify(519, skew), Outcome::Permanent { reason } if reason.contains("4006"))
    );
    assert!(matches!(
        classify(519, br#"{"errcode":9999}"#),
        Outcome::Retryable { .. }
    ));
    assert!(matches!(
        classify(503, b"<html>busy</html>"),
        Outcome::Retryable { .. }
    ));
    assert!(matches!(
        classify(200, b"<html>login</html>"),
        Outcome::Permanent { .. }
    ));
    assert!(matches!(
        classify(200, br#"{"Result":{"ResponseStatus":{"IsSucc"#),
        Outcome::Permanent { .. }
    ));
    assert!(matches!(
        classify(404, b"not found"),
        Outcome::Permanent { .. }
    ));
}
