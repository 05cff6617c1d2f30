//! Salesforce REST (global fallback), client side (PROTOCOLS.md §5).
//!
//! Owns: the OAuth2 client-credentials form and token parsing, the upsert-by-external-id
//! path, and classification (201/200/204 success, errors as a top-level JSON array;
//! `DUPLICATE_VALUE` duplicate; `INVALID_SESSION_ID` re-auth; `REQUEST_LIMIT_EXCEEDED`
//! retryable; 300 multiple matches permanent).
//!
//! Must NOT: send requests.

use serde_json::Value;

use super::{Outcome, id_str, unknown_answer};

/// Token path on the My Domain host.
pub const TOKEN_PATH: &str = "/services/oauth2/token";

/// Errors reading a token answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SalesforceError {
    /// OAuth error (`{"error":"invalid_client","error_description":"…"}`).
    #[error(
        "Salesforce token refused (HTTP {status}): {error}: {description}; check the connected app's client id/secret"
    )]
    Refused {
        /// HTTP status.
        status: u16,
        /// `error`.
        error: String,
        /// `error_description`.
        description: String,
    },
    /// Not the documented JSON.
    #[error("Salesforce token answer not understood (HTTP {status}): {excerpt}")]
    Unreadable {
        /// HTTP status.
        status: u16,
        /// Raw excerpt.
        excerpt: String,
    },
}

/// The token form.
#[must_use]
pub fn token_form(client_id: &str, client_secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", client_id.to_owned()),
        ("client_secret", client_secret.to_owned()),
    ]
}

/// A token and where to send calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `access_token`.
    pub access_token: String,
    /// `instance_url`.
    pub instance_url: String,
}

/// Reads a token answer.
///
/// # Errors
/// [`SalesforceError`].
pub fn parse_token(status: u16, body: &[u8]) -> Result<Token, SalesforceError> {
    let unreadable = || SalesforceError::Unreadable {
        status,
        excerpt: super::excerpt(body),
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| unreadable())?;
    let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    if let Some(error) = get("error") {
        return Err(SalesforceError::Refused {
            status,
            error,
            description: get("error_description").unwrap_or_default(),
        });
    }
    match (get("access_token"), get("instance_url")) {
        (Some(access_token), Some(instance_url)) if status == 200 => Ok(Token {
            access_token,
            instance_url,
        }),
        _ => Err(unreadable()),
    }
}

/// `PATCH` path upserting `object` by `external_field` = `value` (value percent-encoded).
#[must_use]
pub fn upsert_path(api_version: &str, object: &str, external_field: &str, value: &str) -> String {
    let value: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/services/data/{api_version}/sobjects/{object}/{external_field}/{value}")
}

/// Classifies a create/upsert answer.
#[must_use]
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    if matches!(status, 200 | 201 | 204) {
        if status == 204 {
            return Outcome::success(None, None);
        }
        return match v
            .as_ref()
            .and_then(|v| v.get("success"))
            .and_then(Value::as_bool)
        {
            Some(true) => Outcome::success(id_str(v.as_ref().and_then(|v| v.get("id"))), None),
            _ => unknown_answer(
                status,
                body,
                "Salesforce success status without success:true",
            ),
        };
    }
    let Some(Value::Array(errors)) = v else {
        return unknown_answer(status, body, "Salesforce error not understood");
    };
    let codes: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.get("errorCode").and_then(Value::as_str))
        .collect();
    let reason = errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.get("errorCode").and_then(Value::as_str).unwrap_or("?"),
                e.get("message").and_then(Value::as_str).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if codes.contains(&"DUPLICATE_VALUE") {
        Outcome::Duplicate { reason }
    } else if codes.contains(&"INVALID_SESSION_ID") {
        Outcome::Reauth { reason }
    } else if codes.contains(&"REQUEST_LIMIT_EXCEEDED") || status >= 500 {
        Outcome::Retryable {
            reason,
            after: None,
        }
    } else {
        Outcome::Permanent { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_path() {
        let ok = br#"{"access_token":"00D!AR8","instance_url":"https://x.my.salesforce.com","token_type":"Bearer"}"#;
        assert_eq!(parse_token(200, ok).unwrap().access_token, "00D!AR8");
        assert!(matches!(
            parse_token(
                400,
                br#"{"error":"invalid_client","error_description":"Invalid client credentials"}"#
            ),
            Err(SalesforceError::Refused { .. })
        ));
        assert_eq!(
            upsert_path("v60.0", "Account", "ExtId__c", "SP 1/2"),
            "/services/data/v60.0/sobjects/Account/ExtId__c/SP%201%2F2"
        );
    }

    #[test]
    fn classify_answers() {
        assert_eq!(
            classify(
                201,
                br#"{"id":"001D000000IqhSLIAZ","errors":[],"success":true}"#
            ),
            Outcome::success(Some("001D000000IqhSLIAZ".into()), None)
        );
        assert!(matches!(classify(400, br#"[{"message":"duplicate value found: ExtId__c duplicates value on record with id: 001","errorCode":"DUPLICATE_VALUE","fields":[]}]"#), Outcome::Duplicate { .. }));
        assert!(matches!(
            classify(
                401,
                br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#
            ),
            Outcome::Reauth { .. }
        ));
        assert!(matches!(classify(403, br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#), Outcome::Retryable { .. }));
        assert!(
            matches!(classify(400, br#"[{"message":"Required fields are missing: [Name]","errorCode":"REQUIRED_FIELD_MISSING","fields":["Name"]}]"#), Outcome::Permanent { reason } if reason.contains("Required fields"))
        );
        assert!(matches!(
            classify(503, b"<html>"),
            Outcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(300, b"[\"/a\",\"/b\"]"),
            Outcome::Permanent { .. }
        ));
    }
}
