//! Vendor protocol primitives: the client side of the non-generic targets in
//! `shared/targets/PROTOCOLS.md` (Kingdee K3Cloud, YonBIP, U8 EAI, Beisen, FxiaoKe,
//! Salesforce).
//!
//! Owns: pure, unit-tested building blocks per system — request signing, token and login
//! request/response shapes, document envelopes, and a "classify this answer" function that
//! turns an HTTP status plus body into an [`Outcome`].
//!
//! Must NOT (the per-vendor modules): open connections, hold tokens or sessions, sleep, or
//! decide retry policy. [`client`] is the stateful side: it parses a connector's vendor table,
//! holds tokens and sessions, sends through the connector's HTTP client and maps [`Outcome`]
//! onto the connector's verdict; the per-vendor modules only say what an answer means.
//!
//! Bad input: an answer we do not understand (HTML, truncated JSON, an unknown code) is
//! never a success. It is [`Outcome::Retryable`] only when the HTTP status says gateway or
//! server error (5xx), otherwise [`Outcome::Permanent`] carrying a raw excerpt.

pub mod beisen;
pub mod client;
pub mod fxiaoke;
pub mod kingdee;
pub mod salesforce;
pub mod u8eai;
pub mod yonbip;

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};

/// Longest excerpt of a raw answer kept in a reason.
pub const EXCERPT_CHARS: usize = 300;

/// What the target created, as far as its answer says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The target's internal id of the document (Kingdee `Id`, Salesforce `id`, …).
    pub id: Option<String>,
    /// The human-facing number (Kingdee `Number`, YonBIP `billCode`, U8 `voucher_id`, …).
    pub number: Option<String>,
}

/// The meaning of one answer from a vendor system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The document was accepted.
    Success {
        /// Ids the target returned.
        captured: Captured,
    },
    /// The target says the document (by its business key) already exists: count as delivered.
    Duplicate {
        /// The target's own words.
        reason: String,
    },
    /// Try again later; `after` is the target's hint when it gave one.
    Retryable {
        /// Why, with the target's message or a raw excerpt.
        reason: String,
        /// Earliest sensible retry, when known.
        after: Option<Duration>,
    },
    /// The token, session or signature was refused: refresh credentials (log in again,
    /// fetch a new token) and retry once; if it is refused again, treat as permanent.
    Reauth {
        /// The target's own words.
        reason: String,
    },
    /// Retrying cannot help: dead-letter with this reason.
    Permanent {
        /// The target's message (per-field errors joined) or a raw excerpt.
        reason: String,
    },
}

impl Outcome {
    /// A success with the given id and number.
    #[must_use]
    pub fn success(id: Option<String>, number: Option<String>) -> Outcome {
        Outcome::Success {
            captured: Captured { id, number },
        }
    }
}

/// Classifies an answer none of the vendor rules understood: retryable for 5xx and
/// non-standard gateway statuses (≥ 500), permanent otherwise; never success.
#[must_use]
pub fn unknown_answer(status: u16, body: &[u8], what: &str) -> Outcome {
    let reason = format!("{what} (HTTP {status}): {}", excerpt(body));
    if status >= 500 {
        Outcome::Retryable {
            reason,
            after: None,
        }
    } else {
        Outcome::Permanent { reason }
    }
}

/// The first [`EXCERPT_CHARS`] characters of a body, lossy UTF-8, whitespace collapsed.
#[must_use]
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = collapsed.chars().take(EXCERPT_CHARS).collect();
    if collapsed.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// A JSON value as a string for code comparisons: `"200"` and `200` both give `"200"`.
#[must_use]
pub fn code_str(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON value as a boolean, accepting `true` and `"true"` (documentation templates use
/// strings, real servers booleans).
#[must_use]
pub fn truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A JSON value as an id string (numbers and non-empty strings).
pub(crate) fn id_str(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .and_then(code_str)
        .filter(|s| !s.is_empty() && s != "0")
}

/// Raw HMAC-SHA256 of `msg` under `key`.
#[must_use]
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // Invariant: HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Standard base64 with padding.
#[must_use]
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `Retry-After` header value in seconds, when present and numeric.
#[must_use]
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_answers_are_never_success() {
        assert!(matches!(
            unknown_answer(502, b"<html>Bad Gateway</html>", "x"),
            Outcome::Retryable { .. }
        ));
        match unknown_answer(200, b"<html>login</html>", "x") {
            Outcome::Permanent { reason } => assert!(reason.contains("<html>login</html>")),
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[test]
    fn excerpt_is_bounded_and_marks_truncation() {
        let long = "é".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn codes_compare_as_strings() {
        assert_eq!(code_str(&serde_json::json!(200)).as_deref(), Some("200"));
        assert_eq!(code_str(&serde_json::json!("200")).as_deref(), Some("200"));
        assert!(truthy(&serde_json::json!("true")));
        assert!(!truthy(&serde_json::json!("false")));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
