//! Beisen 北森 iTalent (HR), client side (PROTOCOLS.md §3).
//!
//! Owns: the form-encoded token request, token parsing (numbers may arrive as strings),
//! classification of the leave push (`Code`/`code` 200 as string or number; 417 business
//! error; 401/400 auth) and of the asynchronous batch state
//! (`Running | PartialSuccess | AllSuccess | Fail | Overtime`).
//!
//! Must NOT: poll or sleep; the connector polls `GET …/GetByRequestId` with the
//! `X-PAAS-Request-ID` and asks [`classify_state`] each time.
//!
//! Unconfirmed: duplicate handling for leave pushes (none documented: the bridge's ledger
//! must dedupe); whether `app_id` is required for the token; `Overtime` is treated as
//! "still unknown, poll again", not as failure, as the documentation says.

use std::time::Duration;

use serde_json::Value;

use super::{Outcome, code_str, unknown_answer};

/// Token path.
pub const TOKEN_PATH: &str = "/OAuth/Token";
/// Leave push path.
pub const VACATION_PATH: &str = "/AttendanceOpen/api/v1/Vacation";
/// Async result path (query `requestId`).
pub const ASYNC_RESULT_PATH: &str = "/OpenPlatform/api/AsyncApiExecInfo/GetByRequestId";
/// Response header carrying the async request id.
pub const REQUEST_ID_HEADER: &str = "X-PAAS-Request-ID";

/// Errors reading a token answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BeisenError {
    /// The token call was refused (`{"error": "invalid_tenantid"}` and similar).
    #[error("Beisen token refused (HTTP {status}): {error}; check tenant_id, app_id and secret")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The OAuth `error`.
        error: String,
    },
    /// Not the documented JSON.
    #[error("Beisen token answer not understood (HTTP {status}): {excerpt}")]
    Unreadable {
        /// HTTP status.
        status: u16,
        /// Raw excerpt.
        excerpt: String,
    },
}

/// The form fields of the token request.
#[must_use]
pub fn token_form(app_id: &str, tenant_id: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("app_id", app_id.to_owned()),
        ("tenant_id", tenant_id.to_owned()),
        ("secret", secret.to_owned()),
        ("grant_type", "client_credentials".to_owned()),
    ]
}

/// Reads a token answer, returning the bearer token.
///
/// # Errors
/// [`BeisenError`].
pub fn parse_token(status: u16, body: &[u8]) -> Result<String, BeisenError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| BeisenError::Unreadable {
        status,
        excerpt: super::excerpt(body),
    })?;
    if let Some(error) = v.get("error").and_then(Value::as_str) {
        return Err(BeisenError::Refused {
            status,
            error: error.to_owned(),
        });
    }
    match v.get("access_token").and_then(Value::as_str) {
        Some(t) if status == 200 && !t.is_empty() => Ok(t.to_owned()),
        _ => Err(BeisenError::Unreadable {
            status,
            excerpt: super::excerpt(body),
        }),
    }
}

/// Classifies the synchronous answer of a push. Success carries the async request id
/// (from the header) as `captured.id`: it is only "accepted", poll with [`classify_state`].
#[must_use]
pub fn classify_push(
    status: u16,
    request_id: Option<&str>,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Outcome {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let message = v
        .as_ref()
        .and_then(|v| v.get("Message").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match status {
        401 => {
            return Outcome::Reauth {
                reason: format!("Beisen 401: {message}"),
            };
        }
        400 if message.contains("Authorization") => {
            return Outcome::Reauth {
                reason: format!("Beisen 400: {message}"),
            };
        }
        429 => {
            return Outcome::Retryable {
                reason: "Beisen 429 rate limit".into(),
                after: retry_after,
            };
        }
        403 => {
            return Outcome::Permanent {
                reason: format!("Beisen 403 (IP not whitelisted?): {message}"),
            };
        }
        _ => {}
    }
    let code = v
        .as_ref()
        .and_then(|v| v.get("Code").or_else(|| v.get("code")))
        .and_then(code_str);
    match code.as_deref() {
        Some("200") if status == 200 => match request_id {
            Some(id) if !id.is_empty() => Outcome::success(Some(id.to_owned()), None),
            _ => Outcome::Permanent {
                reason: format!("Beisen accepted the push but sent no {REQUEST_ID_HEADER}"),
            },
        },
        Some("417" | "400" | "206") => Outcome::Permanent {
            reason: format!("Beisen code {}: {message}", code.unwrap_or_default()),
        },
        Some("500") => Outcome::Retryable {
            reason: format!("Beisen code 500: {message}"),
            after: None,
        },
        _ => unknown_answer(status, body, "Beisen answer not understood"),
    }
}

/// The state of an async batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchState {
    /// Still running (or `Overtime`): poll again.
    Pending(String),
    /// Final: an [`Outcome`].
    Done(Outcome),
}

/// Classifies an async result answer (`data.state`, `data.message`).
#[must_use]
pub fn classify_state(status: u16, body: &[u8]) -> BatchState {
    let Some(data) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("data").cloned())
    else {
        return BatchState::Done(unknown_answer(
            status,
            body,
            "Beisen async result not understood",
        ));
    };
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match data
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        s @ ("Running" | "Overtime") => BatchState::Pending(s.to_owned()),
        "AllSuccess" => BatchState::Done(Outcome::success(None, None)),
        "PartialSuccess" => BatchState::Done(Outcome::Permanent {
            reason: format!("Beisen PartialSuccess: {message}"),
        }),
        "Fail" => BatchState::Done(Outcome::Permanent {
            reason: format!("Beisen Fail: {message}"),
        }),
        _ => BatchState::Done(unknown_answer(status, body, "Beisen async state unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() {
        let ok = br#"{"access_token":"5N3w","expires_in":"1479202744","tenant_id":"204402","user_id":"0"}"#;
        assert_eq!(parse_token(200, ok).unwrap(), "5N3w");
        assert_eq!(
            parse_token(400, br#"{"error":"invalid_tenantid"}"#),
            Err(BeisenError::Refused {
                status: 400,
                error: "invalid_tenantid".into()
            })
        );
        assert!(matches!(
            parse_token(502, b"<html>"),
            Err(BeisenError::Unreadable { .. })
        ));
    }

    #[test]
    fn push_and_state() {
        assert_eq!(
            classify_push(200, Some("r1"), br#"{"Code":200,"Message":null}"#, None),
            Outcome::success(Some("r1".into()), None)
        );
        assert!(matches!(
            classify_push(200, None, br#"{"Code":200}"#, None),
            Outcome::Permanent { .. }
        ));
        assert!(
            matches!(classify_push(200, None, r#"{"code":"417","message":"员工不存在","data":null}"#.as_bytes(), None), Outcome::Permanent { reason } if reason.contains("员工不存在"))
        );
        assert!(matches!(
            classify_push(401, None, br#"{"message":"un-authorized"}"#, None),
            Outcome::Reauth { .. }
        ));
        assert!(matches!(
            classify_push(
                400,
                None,
                br#"{"message":"Authorization header is empty"}"#,
                None
            ),
            Outcome::Reauth { .. }
        ));
        assert!(matches!(
            classify_push(429, None, b"", Some(Duration::from_secs(2))),
            Outcome::Retryable { after: Some(_), .. }
        ));
        assert!(matches!(
            classify_push(503, None, b"<html>", None),
            Outcome::Retryable { .. }
        ));
        assert_eq!(
            classify_state(200, br#"{"data":{"state":"Running"}}"#),
            BatchState::Pending("Running".into())
        );
        assert_eq!(
            classify_state(200, br#"{"data":{"state":"Overtime"}}"#),
            BatchState::Pending("Overtime".into())
        );
        assert_eq!(
            classify_state(200, br#"{"data":{"state":"AllSuccess"}}"#),
            BatchState::Done(Outcome::success(None, None))
        );
        assert!(
            matches!(classify_state(200, r#"{"data":{"state":"Fail","message":"假期类型不存在"}}"#.as_bytes()), BatchState::Done(Outcome::Permanent { reason }) if reason.contains("假期类型不存在"))
        );
    }
}
