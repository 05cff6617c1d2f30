//! What went wrong calling WeCom, classified by `errcode` only (PROTOCOL.md §4.7).

use super::*;

/// What went wrong calling WeCom, classified by `errcode` (never by `errmsg`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// WeCom reported a temporary failure (-1, 45033, 45035, 45036, 301026, 301057);
    /// retried with back-off.
    #[error("WeCom {api} failed with transient errcode {errcode}: {errmsg}")]
    Transient {
        /// The API that failed.
        api: &'static str,
        /// WeCom's errcode.
        errcode: i64,
        /// WeCom's errmsg, for people only.
        errmsg: String,
    },
    /// WeCom's frequency limit was hit (45009); wait at least `retry_after`.
    #[error("WeCom {api} is rate limited (errcode {errcode}); retry after {retry_after:?}")]
    RateLimited {
        /// The API that failed.
        api: &'static str,
        /// WeCom's errcode.
        errcode: i64,
        /// How long WeCom blocks the caller.
        retry_after: Duration,
    },
    /// A configuration, permission or data error that retrying cannot fix.
    #[error("WeCom {api} failed with errcode {errcode}: {errmsg} ({hint})")]
    Permanent {
        /// The API that failed.
        api: &'static str,
        /// WeCom's errcode.
        errcode: i64,
        /// WeCom's errmsg, for people only.
        errmsg: String,
        /// What an operator should check.
        hint: &'static str,
    },
    /// A non-2xx HTTP status (WeCom itself answers 200); 5xx is retryable.
    #[error("WeCom {api} answered HTTP {status}")]
    Http {
        /// The API that failed.
        api: &'static str,
        /// The HTTP status code.
        status: u16,
    },
    /// Timeout or connection failure; retryable. Never contains the URL.
    #[error("WeCom {api} request failed: {detail}")]
    Network {
        /// The API that failed.
        api: &'static str,
        /// Transport error description without the URL.
        detail: String,
    },
    /// The body was not the JSON WeCom documents.
    #[error("WeCom {api} returned an unexpected response: {detail}")]
    BadResponse {
        /// The API that failed.
        api: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The client itself is misconfigured (for example an unusable base URL).
    #[error("WeCom client configuration is invalid: {detail}")]
    Config {
        /// What was wrong.
        detail: String,
    },
}

impl ApiError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Transient { .. } | ApiError::RateLimited { .. } => true,
            ApiError::Network { .. } => true,
            ApiError::Http { status, .. } => (500..600).contains(status),
            ApiError::Permanent { .. } | ApiError::BadResponse { .. } | ApiError::Config { .. } => {
                false
            }
        }
    }

    /// WeCom's errcode, when WeCom answered with one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            ApiError::Transient { errcode, .. }
            | ApiError::RateLimited { errcode, .. }
            | ApiError::Permanent { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Label for the `outcome` of the calls metric.
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            ApiError::Transient { .. } => "transient",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Permanent { errcode, .. } if is_token_errcode(*errcode) => "token_invalid",
            ApiError::Permanent { .. } => "permanent",
            ApiError::Http { .. } => "http_error",
            ApiError::Network { .. } => "network_error",
            ApiError::BadResponse { .. } => "bad_response",
            ApiError::Config { .. } => "config",
        }
    }
}

/// 40014 invalid access_token, 42001 expired access_token.
pub(super) fn is_token_errcode(errcode: i64) -> bool {
    matches!(errcode, 40014 | 42001)
}

pub(super) fn is_token_error(e: &ApiError) -> bool {
    e.errcode().is_some_and(is_token_errcode)
}

/// Maps a non-zero errcode to an error (PROTOCOL.md §4.7).
pub(super) fn classify(api: &'static str, errcode: i64, errmsg: String) -> ApiError {
    match errcode {
        45009 => ApiError::RateLimited {
            api,
            errcode,
            retry_after: RATE_LIMIT_WINDOW,
        },
        -1 | 45033 | 45035 | 45036 | 301026 | 301057 => ApiError::Transient {
            api,
            errcode,
            errmsg,
        },
        _ => ApiError::Permanent {
            api,
            errcode,
            errmsg,
            hint: hint(errcode),
        },
    }
}

/// Operator hint for a permanent errcode.
pub(super) fn hint(errcode: i64) -> &'static str {
    match errcode {
        40001 => "the app secret (corpsecret) is wrong or belongs to another app",
        40013 => "the corp ID (corpid) is wrong",
        40014 | 42001 => "WeCom rejected the access_token again right after a refresh",
        41001 => "the request carried no access_token",
        48002 => {
            "the app lacks permission for this API; for approvals list it under 审批 → API → \
             可调用接口的应用, for customers under 客户联系 → 可调用应用"
        }
        48006 => "this API has been disabled for the app",
        60020 => {
            "this server's IP is not in the app's allow-list: add it under 企业可信IP in the app \
             settings (takes about a minute to apply)"
        }
        301055 => {
            "no approval or data-pull permission: the app must be listed in 审批 → API → \
             可调用接口的应用 and the applicant must be in its visible range"
        }
        301056 => "the approval app is disabled",
        301025 => "approval API parameter error (empty value, unknown sp_no or template_id)",
        40058 => "a request parameter is invalid",
        44004 => "the message content is empty",
        45002 => "the message content is too long",
        81013 => "all recipients (users, parties, tags) are invalid or outside the app's range",
        60111 => "the userid does not exist",
        40003 => "the userid is invalid",
        301112 => "the time range is too large; split it into windows of at most 31 days",
        40029 => "the sign-in code is invalid, already used or older than five minutes",
        50001 => {
            "the redirect URI's domain is not a trusted domain (可信域名 / 授权回调域) of the app"
        }
        _ => "unexpected WeCom errcode; look it up in WeCom's global error codes (doc 90313)",
    }
}

/// The API name carried by an error, for logs.
pub(super) fn api_of(e: &ApiError) -> &'static str {
    match e {
        ApiError::Transient { api, .. }
        | ApiError::RateLimited { api, .. }
        | ApiError::Permanent { api, .. }
        | ApiError::Http { api, .. }
        | ApiError::Network { api, .. }
        | ApiError::BadResponse { api, .. } => api,
        ApiError::Config { .. } => names::CLIENT,
    }
}

/// Turns a body with a non-zero `errcode` into an error.
pub(super) fn check_errcode(api: &'static str, v: Value) -> Result<Value, ApiError> {
    let errcode = integer_field(api, &v, "errcode", 0)?;
    if errcode == 0 {
        return Ok(v);
    }
    let errmsg = v
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Err(classify(api, errcode, errmsg))
}

/// Member `field` of a response body `v` as an integer, `default` when it is absent; a
/// [`ApiError::BadResponse`] when it is there but not an integer.
pub(super) fn integer_field(
    api: &'static str,
    v: &Value,
    field: &str,
    default: i64,
) -> Result<i64, ApiError> {
    match v.get(field) {
        None => Ok(default),
        Some(n) => n.as_i64().ok_or_else(|| ApiError::BadResponse {
            api,
            detail: format!("`{field}` is not an integer"),
        }),
    }
}

/// A transport error, without the URL (its query carries the token or secret).
pub(super) fn network_error(api: &'static str, e: reqwest::Error) -> ApiError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    let e = e.without_url();
    let detail = format!("{kind}: {}", crate::stage::error_chain(&e));
    ApiError::Network { api, detail }
}
