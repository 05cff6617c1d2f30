//! Ingress: the HTTP edge that WeCom calls.
//!
//! Owns URL verification (GET) and event delivery (POST) for every configured app:
//! query parameters, body limit, envelope, signature, timestamp window, decryption,
//! receive-id, XML → typed event, and the answer. It answers 200 only after the journal says
//! the event is durable, and never waits for the broker. Forged or broken requests get a 4xx,
//! a counter and a log line without payload, and nothing is stored. Authentic XML that cannot
//! be understood is journaled as quarantined and answered 200, so WeCom stops retrying.
//!
//! The answer to a refused request carries the WeCom error code (where one applies) and a
//! short reason, never an internal error chain; the log line (rate-limited per app and
//! reason by [`log_limit`]) says what the operator should check. The connection bounds of
//! the listener itself (header timeout, connection cap, bounded shutdown) are in [`server`].

pub mod log_limit;
pub mod server;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use self::log_limit::LogLimiter;

use crate::config::{AppConfig, AppKind};
use crate::journal::{IncomingEvent, Journal, JournalError};
use crate::store::AppendOutcome;
use crate::telemetry::names;
use crate::wecom::crypto::{CallbackCrypto, CryptoError};
use crate::wecom::envelope::{EnvelopeError, parse_envelope};
use crate::wecom::event::{EventParseError, parse_event};

/// One configured app as ingress serves it.
pub struct AppEndpoint {
    /// The app's name in the configuration.
    pub name: String,
    /// Its settings.
    pub config: AppConfig,
    /// Its callback crypto (token and AES key).
    pub crypto: CallbackCrypto,
}

impl std::fmt::Debug for AppEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppEndpoint")
            .field("name", &self.name)
            .field("path", &self.config.path)
            .finish()
    }
}

/// Every `kind` the journal holds: the typed event kinds, and `unparsed` for quarantined
/// callbacks. Filters on kind accept only these.
pub const JOURNAL_KINDS: &[&str] = &[
    "approval_change",
    "open_approval_change",
    "contact_change",
    "external_contact_change",
    "other",
    "unparsed",
];

/// Response header that says what the bridge did with an accepted callback: `accepted`,
/// `duplicate` (a re-delivery, journaled once) or `quarantined`. WeCom ignores it;
/// `simulate` and operators read it.
pub const OUTCOME_HEADER: &str = "x-wecom-bridge-outcome";

/// Per-request bounds of the callback endpoints.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest accepted body; a larger `Content-Length` is refused before reading.
    pub max_body_bytes: usize,
    /// Time a client has to send the whole body once its headers are in.
    pub body_read_timeout: Duration,
}

#[derive(Clone)]
struct EndpointState {
    app: Arc<AppEndpoint>,
    journal: Journal,
    limits: BodyLimits,
    log_limit: Arc<LogLimiter>,
}

/// The query string WeCom sends. All fields optional here so that a missing one gets our
/// own clear 400 rather than a generic extractor error; a repeated one is refused too.
#[derive(Debug, Default)]
pub struct CallbackQuery {
    msg_signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
}

impl CallbackQuery {
    /// Parses a raw query string. Unknown parameters are ignored (WeCom may add some); a
    /// parameter we read that appears twice is refused, since which copy was signed is
    /// ambiguous.
    pub fn parse(raw: Option<&str>) -> Result<Self, Rejection> {
        let mut q = CallbackQuery::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let (slot, name) = match key.as_ref() {
                "msg_signature" => (&mut q.msg_signature, "msg_signature"),
                "timestamp" => (&mut q.timestamp, "timestamp"),
                "nonce" => (&mut q.nonce, "nonce"),
                "echostr" => (&mut q.echostr, "echostr"),
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(Rejection::DuplicateParam(name));
            }
        }
        Ok(q)
    }
}

/// Why a request was refused. Each maps to a status, a metric label and an operator hint.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// A required query parameter is missing.
    #[error("missing query parameter `{0}`")]
    MissingParam(&'static str),
    /// A query parameter appears more than once.
    #[error("query parameter `{0}` appears more than once")]
    DuplicateParam(&'static str),
    /// `timestamp` is not a number.
    #[error("timestamp is not a Unix time in seconds")]
    BadTimestamp,
    /// `timestamp` is outside the app's window.
    #[error("timestamp is {skew_secs} s away from this server's clock (window {window_secs} s)")]
    Stale {
        /// Difference from now.
        skew_secs: i64,
        /// Allowed difference.
        window_secs: u64,
    },
    /// The body is larger than `server.max_body_bytes`.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The body could not be read.
    #[error("body could not be read")]
    BodyRead,
    /// The body did not arrive within `server.body_read_timeout_ms`.
    #[error("body not received within {0} ms")]
    BodyTimeout(u128),
    /// The outer envelope is broken.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Signature, base64, AES, padding, frame.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The decrypted receive-id is not one this app accepts.
    #[error("receive-id in the message is not one of apps.{app}.receive_ids")]
    ReceiveId {
        /// App name.
        app: String,
    },
    /// The decrypted XML declares a DOCTYPE/entities.
    #[error("decrypted XML contains a DOCTYPE/entity declaration; refused, not expanded")]
    Doctype,
    /// The journal could not store the event; WeCom should retry.
    #[error("journal unavailable: {0}")]
    Unavailable(#[from] JournalError),
}

impl Rejection {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingParam(_)
            | Rejection::DuplicateParam(_)
            | Rejection::BadTimestamp
            | Rejection::BodyRead
            | Rejection::Envelope(_)
            | Rejection::Doctype => StatusCode::BAD_REQUEST,
            Rejection::Crypto(e) if e.code() == -40001 => StatusCode::FORBIDDEN,
            Rejection::Crypto(_) => StatusCode::BAD_REQUEST,
            Rejection::Stale { .. } | Rejection::ReceiveId { .. } => StatusCode::FORBIDDEN,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingParam(_) => "missing_param",
            Rejection::DuplicateParam(_) => "duplicate_param",
            Rejection::BodyTimeout(_) => "body_timeout",
            Rejection::BadTimestamp => "bad_timestamp",
            Rejection::Stale { .. } => "stale_timestamp",
            Rejection::TooLarge(_) => "too_large",
            Rejection::BodyRead => "body_read",
            Rejection::Envelope(EnvelopeError::Doctype) => "doctype",
            Rejection::Envelope(_) => "bad_envelope",
            Rejection::Crypto(e) => e.reason(),
            Rejection::ReceiveId { .. } => "receive_id_mismatch",
            Rejection::Doctype => "doctype",
            Rejection::Unavailable(_) => "journal_unavailable",
        }
    }

    /// The official WXBizMsgCrypt code where one applies.
    pub fn code(&self) -> Option<i32> {
        match self {
            Rejection::Envelope(e) => Some(e.code()),
            Rejection::Crypto(e) => Some(e.code()),
            Rejection::ReceiveId { .. } => Some(-40005),
            _ => None,
        }
    }

    /// The answer's body: WeCom error code (where one applies), reason label and a short
    /// text. Never an internal error chain: the details are in the log.
    pub fn public_body(&self) -> String {
        let text = match self {
            Rejection::Unavailable(_) => "event store unavailable; retry later".to_string(),
            Rejection::Envelope(EnvelopeError::Doctype) | Rejection::Doctype => {
                "DOCTYPE/entity declarations are refused".to_string()
            }
            Rejection::Envelope(_) => "body is not a WeCom callback envelope".to_string(),
            other => other.to_string(),
        };
        match self.code() {
            Some(code) => format!("{code} {}: {text}\n", self.reason()),
            None => format!("{}: {text}\n", self.reason()),
        }
    }

    /// What an operator should check.
    fn hint(&self, app: &str) -> String {
        match self {
            Rejection::Crypto(e) if e.code() == -40001 => format!(
                "signature mismatch: check that apps.{app}.token equals the Token in the WeCom console; otherwise the request is forged"
            ),
            Rejection::Crypto(_) => format!(
                "payload does not decrypt: check apps.{app}.encoding_aes_key against the WeCom console"
            ),
            Rejection::ReceiveId { .. } => format!(
                "check apps.{app}.receive_ids: self-built apps use the CorpID, suite command callbacks the SuiteID"
            ),
            Rejection::Stale { .. } => format!(
                "check this machine's clock (NTP); if you are replaying old captured requests, set apps.{app}.check_timestamp = false"
            ),
            Rejection::TooLarge(_) => "raise server.max_body_bytes only if WeCom really sends larger callbacks".into(),
            Rejection::BodyTimeout(_) => "a client sent headers but not its body in time (slow or hostile client); WeCom sends small bodies at once".into(),
            Rejection::DuplicateParam(_) => "a query parameter was repeated: a proxy in front of the bridge may append parameters, or the request is forged".into(),
            Rejection::Unavailable(_) => "the store is failing (disk full? permissions?); WeCom will retry, and reconciliation recovers what it drops".into(),
            _ => "the request does not follow the WeCom callback protocol; nothing was stored".into(),
        }
    }
}

struct Refused {
    app: Arc<AppEndpoint>,
    method: &'static str,
    rejection: Rejection,
    log_limit: Arc<LogLimiter>,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let r = &self.rejection;
        // Every refusal is counted; the log line is rate-limited per (app, reason) so that a
        // flood of forgeries cannot flood the log.
        metrics::counter!(
            names::CALLBACKS_REJECTED,
            "app" => self.app.name.clone(),
            "reason" => r.reason()
        )
        .increment(1);
        let status = r.status();
        if let Some(suppressed) = self.log_limit.admit(&self.app.name, r.reason()) {
            if status.is_server_error() {
                tracing::error!(app = %self.app.name, method = self.method, reason = r.reason(), suppressed, error = %r, hint = %r.hint(&self.app.name), "callback not stored");
            } else {
                tracing::warn!(app = %self.app.name, method = self.method, reason = r.reason(), code = r.code(), suppressed, error = %r, hint = %r.hint(&self.app.name), "callback refused");
            }
        }
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            r.public_body(),
        )
            .into_response()
    }
}

/// The routes of every app: `GET` (URL verification) and `POST` (events) at each app's path.
/// Refusal log lines go through `log_limit`.
pub fn router(
    apps: Vec<Arc<AppEndpoint>>,
    journal: Journal,
    limits: BodyLimits,
    log_limit: Arc<LogLimiter>,
) -> Router {
    let mut router = Router::new();
    for app in apps {
        let state = EndpointState {
            app: app.clone(),
            journal: journal.clone(),
            limits,
            log_limit: log_limit.clone(),
        };
        router = router.route(
            &app.config.path,
            get(verify_url).post(receive_event).with_state(state),
        );
    }
    router
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, Rejection> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(Rejection::MissingParam(name))
}

/// The signed query parameters of a POST callback.
#[derive(Debug, Clone, Copy)]
pub struct CallbackParams<'a> {
    /// `msg_signature`.
    pub msg_signature: &'a str,
    /// `timestamp`.
    pub timestamp: &'a str,
    /// `nonce`.
    pub nonce: &'a str,
}

impl<'a> CallbackParams<'a> {
    fn from_query(q: &'a CallbackQuery) -> Result<Self, Rejection> {
        Ok(CallbackParams {
            msg_signature: required(&q.msg_signature, "msg_signature")?,
            timestamp: required(&q.timestamp, "timestamp")?,
            nonce: required(&q.nonce, "nonce")?,
        })
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Everything a POST callback goes through before the journal, in order: envelope,
/// signature (before any decryption), timestamp window, decryption, receive-id, XML → event.
/// Pure apart from the clock value passed in; the benchmark measures exactly this.
pub fn open_callback(
    app: &AppEndpoint,
    params: &CallbackParams<'_>,
    body: &[u8],
    now: i64,
) -> Result<IncomingEvent, Rejection> {
    let envelope = parse_envelope(body)?;
    app.crypto.verify_signature(
        params.msg_signature,
        params.timestamp,
        params.nonce,
        &envelope.encrypt,
    )?;
    check_timestamp(&app.config, params.timestamp, now)?;
    let plain = app.crypto.decrypt(&envelope.encrypt)?;
    check_receive_id(app, &plain.receive_id)?;
    classify(&app.name, plain.msg)
}

fn check_timestamp(app: &AppConfig, timestamp: &str, now: i64) -> Result<(), Rejection> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Rejection::BadTimestamp)?;
    if !app.check_timestamp {
        return Ok(());
    }
    let skew = ts.saturating_sub(now);
    if skew.unsigned_abs() > app.timestamp_window_secs {
        return Err(Rejection::Stale {
            skew_secs: skew,
            window_secs: app.timestamp_window_secs,
        });
    }
    Ok(())
}

fn check_receive_id(app: &AppEndpoint, receive_id: &str) -> Result<(), Rejection> {
    if app.config.receive_ids.iter().any(|r| r == receive_id) {
        Ok(())
    } else {
        Err(Rejection::ReceiveId {
            app: app.name.clone(),
        })
    }
}

async fn verify_url(
    State(st): State<EndpointState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Refused> {
    let refuse = |rejection| Refused {
        app: st.app.clone(),
        method: "GET",
        rejection,
        log_limit: st.log_limit.clone(),
    };
    let answer = (|| {
        let q = CallbackQuery::parse(raw.as_deref())?;
        let sig = required(&q.msg_signature, "msg_signature")?;
        let ts = required(&q.timestamp, "timestamp")?;
        let nonce = required(&q.nonce, "nonce")?;
        let echostr = required(&q.echostr, "echostr")?;
        if echostr.contains(' ') {
            tracing::warn!(app = %st.app.name, "echostr contains a space: a `+` was probably decoded twice by a proxy in front of the bridge");
        }
        st.app.crypto.verify_signature(sig, ts, nonce, echostr)?;
        check_timestamp(&st.app.config, ts, unix_now())?;
        let plain = st.app.crypto.decrypt(echostr)?;
        check_receive_id(&st.app, &plain.receive_id)?;
        Ok::<_, Rejection>(plain.msg)
    })()
    .map_err(refuse)?;
    tracing::info!(app = %st.app.name, "URL verification answered");
    metrics::counter!(names::URL_VERIFICATIONS, "app" => st.app.name.clone()).increment(1);
    // Exactly the decrypted bytes: no quotes, newline or BOM.
    Ok(([(header::CONTENT_TYPE, "text/plain")], answer).into_response())
}

/// Reads the body within the limits: a declared length over the maximum is refused before
/// a byte of the body is read, and the whole body must arrive within the read timeout.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> Result<bytes::Bytes, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(Rejection::TooLarge(limits.max_body_bytes));
    }
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    match tokio::time::timeout(limits.body_read_timeout, read).await {
        Err(_) => Err(Rejection::BodyTimeout(limits.body_read_timeout.as_millis())),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e))
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) =>
        {
            Err(Rejection::TooLarge(limits.max_body_bytes))
        }
        Ok(Err(_)) => Err(Rejection::BodyRead),
    }
}

async fn receive_event(
    State(st): State<EndpointState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused> {
    let app = st.app.clone();
    let refuse = |rejection| Refused {
        app: app.clone(),
        method: "POST",
        rejection,
        log_limit: st.log_limit.clone(),
    };
    let incoming = async {
        let q = CallbackQuery::parse(raw.as_deref())?;
        let params = CallbackParams::from_query(&q)?;
        let bytes = read_body(&headers, body, st.limits).await?;
        open_callback(&st.app, &params, &bytes, unix_now())
    }
    .await
    .map_err(refuse)?;

    let quarantined = incoming.quarantine.is_some();
    let kind = incoming.kind.clone();
    let business_key = incoming.business_key.clone();
    let outcome = st
        .journal
        .append(incoming)
        .await
        .map_err(|e| refuse(e.into()))?;
    let outcome_label = match (outcome, quarantined) {
        (AppendOutcome::Duplicate(seq), _) => {
            tracing::info!(app = %st.app.name, kind = %kind, business_key = %business_key, seq, "re-delivered callback acknowledged; already journaled");
            "duplicate"
        }
        (AppendOutcome::Appended(seq), true) => {
            tracing::warn!(app = %st.app.name, seq, "authentic callback with XML we cannot understand: quarantined (see `wecom-bridge events --quarantined`)");
            "quarantined"
        }
        (AppendOutcome::Appended(seq), false) => {
            tracing::debug!(app = %st.app.name, kind = %kind, business_key = %business_key, seq, "callback journaled");
            "accepted"
        }
    };
    metrics::counter!(
        names::CALLBACKS,
        "app" => st.app.name.clone(),
        "outcome" => outcome_label
    )
    .increment(1);
    let body = match st.app.config.kind {
        AppKind::App => "",
        AppKind::Suite => "success",
    };
    Ok((
        StatusCode::OK,
        [(OUTCOME_HEADER, HeaderValue::from_static(outcome_label))],
        body,
    )
        .into_response())
}

/// Turns decrypted XML into what the journal stores: typed kind and business key, or a
/// quarantine reason. A DOCTYPE is refused outright.
fn classify(app: &str, xml: String) -> Result<IncomingEvent, Rejection> {
    match parse_event(&xml) {
        Ok(ev) => Ok(IncomingEvent {
            app: app.to_string(),
            kind: ev.kind().as_str().to_string(),
            business_key: ev.business_key(),
            xml,
            quarantine: None,
            source: "callback".into(),
        }),
        Err(EventParseError::Doctype) => Err(Rejection::Doctype),
        Err(EventParseError::Malformed(reason)) => Ok(IncomingEvent {
            app: app.to_string(),
            kind: "unparsed".into(),
            business_key: format!(
                "unparsed:{}",
                &hex::encode(crate::journal::content_hash(app, &xml))[..16]
            ),
            xml,
            quarantine: Some(reason),
            source: "callback".into(),
        }),
    }
}

#[cfg(test)]
mod tests;
