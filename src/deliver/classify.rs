//! Classification: one pure function from an answer (status, headers, body) and the
//! connector's rules to a [`Verdict`].
//!
//! By type, never by regex over free text: timeouts, connection errors, 5xx, 408 and 429
//! (honouring `Retry-After`, seconds or HTTP date) and listed body codes are retryable; every
//! other answer that is not success or duplicate is permanent. An answer we do not understand
//! (HTML, truncated JSON) is never success: retryable when it is a gateway/5xx answer, else
//! permanent with a raw excerpt. Owns that decision; must not do I/O or read the clock (the
//! caller passes `now`).

use std::time::Duration;

use super::Verdict;
use super::predicate::{AnswerView, Body, Locator, Predicate, scalar_text};

/// Longest excerpt of an answer quoted in a reason.
pub const EXCERPT_CHARS: usize = 200;

/// How a connector reads its target's answers.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRules {
    /// When the document was accepted.
    pub success: Predicate,
    /// When the target says it already has the document (counts as delivered).
    pub duplicate: Option<Predicate>,
    /// Answers (besides 408, 429, 5xx) after which a later attempt may succeed.
    pub retryable: Option<Predicate>,
    /// Where the target writes its message (and code), quoted in reasons, first found first.
    pub message: Vec<Locator>,
}

/// Why no answer was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFailure {
    /// No complete answer within the total timeout.
    Timeout {
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connection could not be opened (refused, DNS, TLS).
    Connect {
        /// What the client reported.
        detail: String,
    },
    /// The connection broke while sending or reading.
    Interrupted {
        /// What the client reported.
        detail: String,
    },
}

/// The verdict when no answer arrived: always retryable (the target may have committed the
/// document; the retry carries the same keys, so its duplicate answer settles it).
pub fn transport_verdict(f: &TransportFailure) -> Verdict {
    let reason = match f {
        TransportFailure::Timeout { after } => {
            format!("no answer within {} ms (timeout)", after.as_millis())
        }
        TransportFailure::Connect { detail } => format!("cannot connect: {detail}"),
        TransportFailure::Interrupted { detail } => format!("connection broke: {detail}"),
    };
    Verdict::Retryable {
        after: None,
        reason,
    }
}

/// Parses a body by its content type and its first bytes. `truncated` says the body was cut
/// at the read limit (it is then not understood).
pub fn parse_body(content_type: Option<&str>, bytes: &[u8], truncated: bool) -> Body {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Body::Unparsed {
            why: "the answer is not UTF-8 text".into(),
        };
    };
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Body::Empty;
    }
    if truncated {
        return Body::Unparsed {
            why: format!("the answer is longer than {} bytes", bytes.len()),
        };
    }
    let lower_head: String = trimmed
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    if ct.contains("html")
        || lower_head.starts_with("<!doctype html")
        || lower_head.starts_with("<html")
    {
        return Body::Unparsed {
            why: "the answer is an HTML page".into(),
        };
    }
    if trimmed.starts_with('<') {
        return if super::xml_path::is_well_formed(trimmed) {
            Body::Xml(trimmed.to_owned())
        } else {
            Body::Unparsed {
                why: "the answer is malformed XML".into(),
            }
        };
    }
    match serde_json::from_str(trimmed) {
        Ok(v) => Body::Json(v),
        Err(e) if ct.contains("json") || trimmed.starts_with(['{', '[']) => Body::Unparsed {
            why: format!("the answer is invalid JSON ({e})"),
        },
        Err(_) => Body::Unparsed {
            why: "the answer is neither JSON nor XML".into(),
        },
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date (relative to
/// `now`; a date in the past means no wait).
pub fn retry_after(headers: &[(String, String)], now: jiff::Timestamp) -> Option<Duration> {
    let value = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))?
        .1
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at
        .as_millisecond()
        .saturating_sub(now.as_millisecond())
        .max(0);
    Some(Duration::from_millis(wait.unsigned_abs()))
}

/// Classifies an answer. `raw` is the body as received (for excerpts).
pub fn classify(
    rules: &AnswerRules,
    answer: &AnswerView<'_>,
    raw: &[u8],
    now: jiff::Timestamp,
) -> Verdict {
    let understood = !matches!(answer.body, Body::Unparsed { .. });
    if understood {
        if rules.success.holds(answer) {
            return Verdict::Delivered;
        }
        if rules.duplicate.as_ref().is_some_and(|d| d.holds(answer)) {
            return Verdict::Duplicate;
        }
    }
    let status = answer.status;
    let told = || said(rules, answer, raw);
    if status == 429 {
        return Verdict::Retryable {
            after: retry_after(answer.headers, now),
            reason: format!("HTTP 429 (rate limited): {}", told()),
        };
    }
    if status >= 500 || status == 408 {
        return Verdict::Retryable {
            after: retry_after(answer.headers, now),
            reason: format!("HTTP {status} (target or gateway failure): {}", told()),
        };
    }
    if understood && rules.retryable.as_ref().is_some_and(|r| r.holds(answer)) {
        return Verdict::Retryable {
            after: retry_after(answer.headers, now),
            reason: format!("HTTP {status}, a retryable answer: {}", told()),
        };
    }
    let what = if (200..300).contains(&status) && understood {
        "the success condition does not hold"
    } else if (200..300).contains(&status) {
        "the answer is not understood, so it is not taken as success"
    } else {
        "refused"
    };
    Verdict::Permanent {
        reason: format!("HTTP {status}, {what}: {}", told()),
    }
}

/// What the target said: the configured message fields, or an excerpt of the raw answer.
fn said(rules: &AnswerRules, answer: &AnswerView<'_>, raw: &[u8]) -> String {
    if let Body::Unparsed { why } = answer.body {
        return format!("{why}: {}", excerpt(raw));
    }
    let parts: Vec<String> = rules
        .message
        .iter()
        .filter_map(|at| answer.read(at))
        .filter_map(|v| scalar_text(&v).map(|t| t.into_owned()))
        .filter(|t| !t.is_empty())
        .collect();
    if parts.is_empty() {
        if raw.is_empty() {
            "(empty answer)".to_owned()
        } else {
            excerpt(raw)
        }
    } else {
        parts.join("; ")
    }
}

/// The first [`EXCERPT_CHARS`] characters of an answer, lossily decoded, on one line.
pub fn excerpt(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
