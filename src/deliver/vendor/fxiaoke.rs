//! FxiaoKe 纷享销客 (CRM), client side (PROTOCOLS.md §4).
//!
//! Owns: the JSON token request (new `/oauth2.0/token` and legacy
//! `/cgi/corpAccessToken/get/V2`), the create body, and classification (`errorCode == 0`,
//! HTTP always 200; `20016` refresh token once; `30002/30003` quota permanent, `30004`
//! per-second limit retryable).
//!
//! Must NOT: fetch tokens. FxiaoKe allows ≤ 10 token calls a minute and never two at once:
//! the connector's token cache must be single-flight with a client-side limit.
//!
//! Unconfirmed: the duplicate-search response code (so no answer is classified duplicate);
//! error codes for token over-use.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Outcome, code_str, id_str, unknown_answer};

/// New token path.
pub const TOKEN_PATH: &str = "/oauth2.0/token";
/// Create path.
pub const CREATE_PATH: &str = "/cgi/crm/v2/data/create";

/// Errors reading a token answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FxiaokeError {
    /// `errorCode != 0`.
    #[error(
        "FxiaoKe token refused, errorCode {code}: {message}; check appId, appSecret and permanentCode"
    )]
    Refused {
        /// `errorCode`.
        code: String,
        /// `errorMessage`.
        message: String,
    },
    /// Not the documented JSON.
    #[error("FxiaoKe token answer not understood (HTTP {status}): {excerpt}")]
    Unreadable {
        /// HTTP status.
        status: u16,
        /// Raw excerpt.
        excerpt: String,
    },
}

/// The new-style token request body.
#[must_use]
pub fn token_body(app_id: &str, app_secret: &str, permanent_code: &str) -> Value {
    json!({"appId": app_id, "appSecret": app_secret, "permanentCode": permanent_code, "grantType": "app_secret"})
}

/// A token and the enterprise account it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `accessToken`.
    pub access_token: String,
    /// `ea` (sent as `x-fs-ea`).
    pub ea: String,
    /// `expiresIn`.
    pub expires_in: Duration,
}

/// Reads a token answer.
///
/// # Errors
/// [`FxiaokeError`].
pub fn parse_token(status: u16, body: &[u8]) -> Result<Token, FxiaokeError> {
    let unreadable = || FxiaokeError::Unreadable {
        status,
        excerpt: super::excerpt(body),
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| unreadable())?;
    let code = v
        .get("errorCode")
        .and_then(code_str)
        .ok_or_else(unreadable)?;
    if code != "0" {
        return Err(FxiaokeError::Refused {
            code,
            message: v
                .get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    let get = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let access_token = get("accessToken");
    if access_token.is_empty() {
        return Err(unreadable());
    }
    Ok(Token {
        access_token,
        ea: get("ea"),
        expires_in: Duration::from_secs(v.get("expiresIn").and_then(Value::as_u64).unwrap_or(7200)),
    })
}

/// The create body for an object (e.g. `AccountObj`) with workflows off.
#[must_use]
pub fn create_body(object_api_name: &str, mut fields: serde_json::Map<String, Value>) -> Value {
    fields.insert(
        "dataObjectApiName".into(),
        Value::String(object_api_name.to_owned()),
    );
    json!({"triggerApprovalFlow": false, "triggerWorkFlow": false, "data": {"object_data": fields}})
}

/// Classifies a business answer.
#[must_use]
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    if status != 200 {
        return unknown_answer(status, body, "FxiaoKe");
    }
    let Some(v) = serde_json::from_slice::<Value>(body).ok() else {
        return unknown_answer(status, body, "FxiaoKe answer is not JSON");
    };
    let Some(code) = v.get("errorCode").and_then(code_str) else {
        return unknown_answer(status, body, "FxiaoKe answer has no errorCode");
    };
    let reason = format!(
        "FxiaoKe errorCode {code}: {}",
        v.get("errorMessage")
            .and_then(Value::as_str)
            .unwrap_or_default()
    );
    match code.as_str() {
        "0" => Outcome::success(id_str(v.get("dataId")), None),
        "20016" | "20017" => Outcome::Reauth { reason },
        "30004" | "14001" => Outcome::Retryable {
            reason,
            after: Some(Duration::from_secs(20)),
        },
        _ => Outcome::Permanent { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_create() {
        let ok = br#"{"accessToken":"t","expiresIn":7084,"ea":"fxxxx1","errorCode":0,"errorMessage":"success","traceId":"x"}"#;
        assert_eq!(parse_token(200, ok).unwrap().ea, "fxxxx1");
        let bad = br#"{"errorCode":10006,"errorMessage":"the parameter appSecret is missing or illegal"}"#;
        assert!(
            matches!(parse_token(200, bad), Err(FxiaokeError::Refused { code, .. }) if code == "10006")
        );
        let mut f = serde_json::Map::new();
        f.insert("name".into(), "上海示例科技有限公司".into());
        let body = create_body("AccountObj", f);
        assert_eq!(
            body["data"]["object_data"]["dataObjectApiName"],
            "AccountObj"
        );
        assert_eq!(body["triggerApprovalFlow"], false);
    }

    #[test]
    fn classify_answers() {
        let ok = br#"{"traceId":"E","errorDescription":"success","dataId":"68fa","errorMessage":"OK","errorCode":0}"#;
        assert_eq!(
            classify(200, ok),
            Outcome::success(Some("68fa".into()), None)
        );
        assert!(matches!(classify(200, br#"{"errorCode":20016,"errorMessage":"the cropId,cropAccessToken or authorization is error"}"#), Outcome::Reauth { .. }));
        assert!(matches!(
            classify(200, br#"{"errorCode":30004}"#),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(200, br#"{"errorCode":30002}"#),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(502, b"<html>"),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(200, b"{\"errorCo"),
            Outcome::Permanent { .. }
        ));
    }
}
