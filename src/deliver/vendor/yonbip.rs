//! Yonyou YonBIP / YonSuite open API, client side (PROTOCOLS.md §2.1).
//!
//! Owns: the signed token GET (HMAC-SHA256 over `appKey<key>timestamp<ms>`), tenant
//! gateway discovery, the `resubmitCheckKey` rule, and answer classification
//! (`code == "200"` as string or number; `100004`/`10004` duplicate; `310xxx` gateway codes).
//!
//! Must NOT: cache tokens or send requests (the connector's single-flight token cache does).
//!
//! Unconfirmed (PROTOCOLS.md §7): whether the duplicate code is `10004` or `100004` (both
//! are treated as duplicate); where `resubmitCheckKey` goes for `addVoucher` (we use
//! `businessId` there); the `addVoucher` quota.

use std::time::Duration;

use serde_json::Value;

use super::{Outcome, b64, code_str, hmac_sha256, id_str, unknown_answer};

/// Gateway discovery path on `https://apigateway.yonyoucloud.com`.
pub const GATEWAY_PATH: &str = "/open-auth/dataCenter/getGatewayAddress";
/// Token path under the tenant's `tokenUrl`.
pub const TOKEN_PATH: &str = "/open-auth/selfAppAuth/base/v1/getAccessToken";
/// Voucher save path under the tenant's `gatewayUrl`.
pub const ADD_VOUCHER_PATH: &str = "/yonbip/fi/ficloud/openapi/voucher/addVoucher";
/// Longest `resubmitCheckKey`.
pub const RESUBMIT_KEY_MAX: usize = 32;

/// Errors reading YonBIP auth answers or building keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum YonbipError {
    /// The token or gateway call answered with a non-`00000` code.
    #[error(
        "YonBIP auth refused, code {code}: {message} (check appKey/appSecret and the server clock)"
    )]
    AuthRefused {
        /// The `code`.
        code: String,
        /// The `message`.
        message: String,
    },
    /// The answer was not the documented JSON.
    #[error("YonBIP auth answer not understood (HTTP {status}): {excerpt}")]
    Unreadable {
        /// HTTP status.
        status: u16,
        /// Raw excerpt.
        excerpt: String,
    },
    /// A resubmit-check key over 32 characters.
    #[error("resubmitCheckKey {0:?} is longer than 32 characters; map a shorter business key")]
    KeyTooLong(String),
}

/// The token signature, standard base64 of the raw HMAC (not yet URL-encoded: a query
/// builder encodes it once, which gives `/`→`%2F`, `+`→`%2B`, `=`→`%3D`).
#[must_use]
pub fn token_signature(app_key: &str, app_secret: &str, timestamp_ms: i64) -> String {
    let msg = format!("appKey{app_key}timestamp{timestamp_ms}");
    b64(&hmac_sha256(app_secret.as_bytes(), msg.as_bytes()))
}

/// The token request query: `appKey`, `timestamp`, `signature` (raw, encode once).
#[must_use]
pub fn token_query(
    app_key: &str,
    app_secret: &str,
    timestamp_ms: i64,
) -> Vec<(&'static str, String)> {
    vec![
        ("appKey", app_key.to_owned()),
        ("timestamp", timestamp_ms.to_string()),
        (
            "signature",
            token_signature(app_key, app_secret, timestamp_ms),
        ),
    ]
}

/// An access token and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `data.access_token`.
    pub access_token: String,
    /// `data.expire`, seconds.
    pub expires_in: Duration,
}

/// Tenant endpoints from gateway discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateways {
    /// `data.gatewayUrl` (business calls).
    pub gateway_url: String,
    /// `data.tokenUrl` (token calls).
    pub token_url: String,
}

fn auth_data(status: u16, body: &[u8]) -> Result<Value, YonbipError> {
    let unreadable = || YonbipError::Unreadable {
        status,
        excerpt: super::excerpt(body),
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| unreadable())?;
    let code = v.get("code").and_then(code_str).ok_or_else(unreadable)?;
    if code != "00000" {
        return Err(YonbipError::AuthRefused {
            code,
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    v.get("data").cloned().ok_or_else(unreadable)
}

/// Reads a token answer.
///
/// # Errors
/// [`YonbipError::AuthRefused`] (e.g. `10018 应用不存在或appKey已停用`) or `Unreadable`.
pub fn parse_token(status: u16, body: &[u8]) -> Result<Token, YonbipError> {
    let data = auth_data(status, body)?;
    let access_token = data
        .get("access_token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if access_token.is_empty() {
        return Err(YonbipError::Unreadable {
            status,
            excerpt: super::excerpt(body),
        });
    }
    Ok(Token {
        access_token: access_token.to_owned(),
        expires_in: Duration::from_secs(data.get("expire").and_then(Value::as_u64).unwrap_or(7200)),
    })
}

/// Reads a gateway discovery answer.
///
/// # Errors
/// As [`parse_token`].
pub fn parse_gateways(status: u16, body: &[u8]) -> Result<Gateways, YonbipError> {
    let data = auth_data(status, body)?;
    let get = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .map(|s| s.trim_end_matches('/').to_owned())
    };
    match (get("gatewayUrl"), get("tokenUrl")) {
        (Some(gateway_url), Some(token_url)) => Ok(Gateways {
            gateway_url,
            token_url,
        }),
        _ => Err(YonbipError::Unreadable {
            status,
            excerpt: super::excerpt(body),
        }),
    }
}

/// Checks a resubmit-check key / business id (≤ 32 characters).
///
/// # Errors
/// [`YonbipError::KeyTooLong`].
pub fn resubmit_check_key(key: &str) -> Result<&str, YonbipError> {
    if key.chars().count() > RESUBMIT_KEY_MAX {
        return Err(YonbipError::KeyTooLong(key.to_owned()));
    }
    Ok(key)
}

/// Classifies a business-call answer.
#[must_use]
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(body);
    if text.trim() == "非法token" {
        return Outcome::Reauth {
            reason: "YonBIP: 非法token".into(),
        };
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return unknown_answer(status, body, "YonBIP answer is not JSON");
    };
    let Some(code) = v.get("code").and_then(code_str) else {
        return unknown_answer(status, body, "YonBIP answer has no code");
    };
    let message = v.get("message").and_then(Value::as_str).unwrap_or_default();
    let reason = format!("YonBIP code {code}: {message}");
    let data = v.get("data");
    match code.as_str() {
        "200" => {
            let failed = data
                .and_then(|d| d.get("failCount"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if failed > 0 {
                return Outcome::Permanent {
                    reason: format!("{reason} (failCount {failed}): {}", super::excerpt(body)),
                };
            }
            let id = id_str(data.and_then(|d| d.get("voucherId")))
                .or_else(|| id_str(data.and_then(|d| d.get("id"))));
            let number = id_str(data.and_then(|d| d.get("billCode")))
                .or_else(|| id_str(data.and_then(|d| d.get("code"))));
            Outcome::success(id, number)
        }
        "100004" | "10004" => Outcome::Duplicate { reason },
        "202" => Outcome::Retryable {
            reason,
            after: Some(Duration::from_secs(5)),
        },
        "310001" | "310036" => Outcome::Reauth { reason },
        "310032" | "310039" | "310042" | "310046" => Outcome::Retryable {
            reason,
            after: Some(Duration::from_secs(60)),
        },
        "310504" | "999" => Outcome::Retryable {
            reason,
            after: None,
        },
        _ if status >= 500 => Outcome::Retryable {
            reason,
            after: None,
        },
        _ => Outcome::Permanent { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_md_vector_and_a_second_one() {
        assert_eq!(
            token_signature(
                "41832a3d2df94989b500da6a22268747",
                "test-app-secret",
                1_568_098_531_823
            ),
            "5wMIzQQCPZ0a55Kq3YEDr1Vd5wf0Ycx9MpKFF975uEg="
        );
        // Computed with Python hmac/hashlib from the same steps.
        assert_eq!(
            token_signature("9a8b7c6d5e4f", "另一个-secret", 1_767_225_600_000),
            "gGpMTIZ9w2P8v/4N7k1mMJanfLvvxzambnyXBp3F19o="
        );
        let encoded: String =
            form_urlencoded::byte_serialize(b"gGpMTIZ9w2P8v/4N7k1mMJanfLvvxzambnyXBp3F19o=")
                .collect();
        assert_eq!(encoded, "gGpMTIZ9w2P8v%2F4N7k1mMJanfLvvxzambnyXBp3F19o%3D");
    }

    #[test]
    fn auth_answers() {
        let ok =
            r#"{"code":"00000","message":"成功！","data":{"access_token":"tok","expire":7200}}"#;
        assert_eq!(parse_token(200, ok.as_bytes()).unwrap().access_token, "tok");
        let bad = r#"{"code":"10018","message":"应用不存在或appKey已停用"}"#;
        assert!(
            matches!(parse_token(200, bad.as_bytes()), Err(YonbipError::AuthRefused { code, .. }) if code == "10018")
        );
        let gw = r#"{"code":"00000","message":"成功！","data":{"gatewayUrl":"https://g/iuap-api-gateway/","tokenUrl":"https://t/iuap-api-auth"}}"#;
        assert_eq!(
            parse_gateways(200, gw.as_bytes()).unwrap().gateway_url,
            "https://g/iuap-api-gateway"
        );
        assert!(resubmit_check_key(&"x".repeat(33)).is_err());
        assert!(resubmit_check_key("SP202603310001").is_ok());
    }

    #[test]
    fn classify_answers() {
        let ok = r#"{"code":"200","message":"OK","data":{"voucherId":"2A45","billCode":14}}"#;
        assert_eq!(
            classify(200, ok.as_bytes()),
            Outcome::success(Some("2A45".into()), Some("14".into()))
        );
        let ok_num = br#"{"code":200,"message":"OK","data":{"id":"9"}}"#;
        assert!(matches!(classify(200, ok_num), Outcome::Success { .. }));
        let partial = br#"{"code":200,"data":{"failCount":1}}"#;
        assert!(matches!(classify(200, partial), Outcome::Permanent { .. }));
        let failed = r#"{"code":"404","message":"凭证保存不成功,账簿code不能为空！","data":{}}"#;
        assert!(
            matches!(classify(200, failed.as_bytes()), Outcome::Permanent { reason } if reason.contains("账簿code不能为空"))
        );
        assert!(matches!(
            classify(200, br#"{"code":"100004","message":"x","data":{"id":1}}"#),
            Outcome::Duplicate { .. }
        ));
        assert!(matches!(
            classify(200, br#"{"code":"310036","message":"x"}"#),
            Outcome::Reauth { .. }
        ));
        assert!(matches!(
            classify(200, "非法token".as_bytes()),
            Outcome::Reauth { .. }
        ));
        assert!(matches!(
            classify(200, br#"{"code":"310046"}"#),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(404, br#"{"code":"310404","message":"gw"}"#),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(502, b"<html>"),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(200, b"{\"code\":"),
            Outcome::Permanent { .. }
        ));
    }
}
