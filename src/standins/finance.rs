//! A finance voucher API for tests and the demo: the target the bridge books expense
//! vouchers in.
//!
//! `POST /api/v1/vouchers` with a JSON voucher `{"document_no", "date", "summary", "lines":
//! [{"account", "debit", "credit", …}], …}` (amounts as decimal strings or numbers),
//! protected by OAuth2 bearer tokens from an [`OAuthStandIn`](super::oauth::OAuthStandIn).
//! It refuses duplicates both ways real targets do: by the `Idempotency-Key` header and by the
//! unique `document_no`; either answers `409 {"code": "ALREADY_EXISTS", …}` with the existing
//! voucher's number. Success is `201 {"code": 0, "message": "ok", "data": {"voucher_no",
//! "voucher_id", "document_no"}}`; validation failures `422 {"code": "VALIDATION"}`.
//!
//! Faults are switched at run time by tests: a share of 500s, "committed then 500", answers
//! slower than the client's timeout (committed first), "200 with an error code" for chosen
//! documents, 429 with `Retry-After`, and a full outage (503 HTML from the "gateway"). Token
//! expiry mid-run is the token endpoint's switch. Shares are deterministic: a fault hits the
//! n-th request of a document when a hash of (seed, fault, document, n) falls under the
//! share, so runs are reproducible. Every request is recorded, so tests count deliveries at
//! the target, not in our own ledger.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::oauth::{TokenAuthority, TokenProblem};

/// A committed voucher.
#[derive(Debug, Clone, PartialEq)]
pub struct Voucher {
    /// The number the target gave it.
    pub voucher_no: String,
    /// Its id.
    pub voucher_id: u64,
    /// The unique document number it was sent with.
    pub document_no: String,
    /// The `Idempotency-Key` it was sent with.
    pub idempotency_key: Option<String>,
    /// The document as received.
    pub document: Value,
    /// When it was committed (load runs measure latency up to here).
    pub committed_at: Instant,
}

/// What the target answered to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Committed a voucher, answered 201.
    Committed,
    /// Refused as already booked (409).
    Duplicate,
    /// Answered 500 without committing.
    ServerError,
    /// Committed, then answered 500.
    CommittedThen500,
    /// Committed, then answered after the slow delay.
    CommittedSlowly,
    /// Answered 429 with `Retry-After`.
    RateLimited,
    /// Answered 200 with an error code (not committed).
    RefusedWithCode,
    /// Answered 422 (or 400 for a body that is not JSON).
    Invalid,
    /// Answered 401 (missing, unknown or expired token).
    Unauthorized,
    /// Answered 503 during an outage.
    Outage,
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// `document_no` of the body, if it had one.
    pub document_no: Option<String>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// What the target answered.
    pub outcome: Outcome,
    /// When it arrived.
    pub received_at: Instant,
}

#[derive(Debug, Default)]
struct Faults {
    seed: u64,
    server_error_percent: u8,
    commit_then_500_percent: u8,
    slow_percent: u8,
    slow_delay: Duration,
    rate_limited_percent: u8,
    retry_after: String,
    outage: bool,
    refuse_with_code: HashMap<String, (String, String)>,
    lenient_uniqueness: bool,
}

#[derive(Debug, Default)]
struct FinanceState {
    faults: Faults,
    vouchers: Vec<Voucher>,
    by_document: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
    requests: Vec<ReceivedRequest>,
    seen_per_document: HashMap<String, u32>,
    /// Requests received and not answered yet (a slow answer, or one still being decided).
    in_flight: usize,
}

type Shared = Arc<Mutex<(FinanceState, Option<TokenAuthority>)>>;

fn lock(s: &Shared) -> MutexGuard<'_, (FinanceState, Option<TokenAuthority>)> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running finance stand-in on 127.0.0.1.
#[derive(Debug)]
pub struct FinanceStandIn {
    state: Shared,
    server: super::Running,
}

impl FinanceStandIn {
    /// Starts on an ephemeral loopback port. With `tokens`, every request needs a bearer
    /// token that authority issued; without, none is checked.
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test environment).
    pub async fn start(tokens: Option<TokenAuthority>) -> FinanceStandIn {
        let state: Shared = Arc::new(Mutex::new((FinanceState::default(), tokens)));
        let router = Router::new()
            .route("/api/v1/vouchers", post(create_voucher))
            .with_state(Arc::clone(&state));
        let server = super::serve_loopback(router, "finance stand-in").await;
        FinanceStandIn { state, server }
    }

    /// The voucher endpoint's URL.
    pub fn vouchers_url(&self) -> String {
        format!("http://{}/api/v1/vouchers", self.server.addr)
    }

    fn lock(&self) -> MutexGuard<'_, (FinanceState, Option<TokenAuthority>)> {
        lock(&self.state)
    }

    /// Seed of the deterministic fault selection (default 0).
    pub fn set_seed(&self, seed: u64) {
        self.lock().0.faults.seed = seed;
    }

    /// Answers this share (0–100) of requests 500 without committing.
    pub fn set_server_error_percent(&self, percent: u8) {
        self.lock().0.faults.server_error_percent = percent.min(100);
    }

    /// Commits this share of requests and then answers 500 (the reply is "lost").
    pub fn set_commit_then_500_percent(&self, percent: u8) {
        self.lock().0.faults.commit_then_500_percent = percent.min(100);
    }

    /// Commits this share of requests and answers only after `delay` (beyond the client's
    /// timeout, the client sees no answer).
    pub fn set_slow(&self, percent: u8, delay: Duration) {
        let f = &mut self.lock().0.faults;
        f.slow_percent = percent.min(100);
        f.slow_delay = delay;
    }

    /// Answers this share of requests 429 with `Retry-After: retry_after` (seconds or an
    /// HTTP date).
    pub fn set_rate_limited(&self, percent: u8, retry_after: &str) {
        let f = &mut self.lock().0.faults;
        f.rate_limited_percent = percent.min(100);
        f.retry_after = retry_after.to_owned();
    }

    /// Starts (`true`) or ends a full outage: every request gets the gateway's 503 page.
    pub fn set_outage(&self, down: bool) {
        self.lock().0.faults.outage = down;
    }

    /// Answers HTTP 200 with this business error code and message for `document_no`
    /// (nothing is committed), like targets that report failure in the body.
    pub fn refuse_with_code(&self, document_no: &str, code: &str, message: &str) {
        self.lock().0.faults.refuse_with_code.insert(
            document_no.to_owned(),
            (code.to_owned(), message.to_owned()),
        );
    }

    /// Stops refusing any document with a code (the operator fixed the cause at the target).
    pub fn accept_all_documents(&self) {
        self.lock().0.faults.refuse_with_code.clear();
    }

    /// Behaves like a target WITHOUT duplicate protection (`true`): commits every valid
    /// request, so a bridge that sends twice books twice (see [`Self::duplicate_vouchers`]).
    pub fn set_lenient_uniqueness(&self, lenient: bool) {
        self.lock().0.faults.lenient_uniqueness = lenient;
    }

    /// Every committed voucher, oldest first.
    pub fn vouchers(&self) -> Vec<Voucher> {
        self.lock().0.vouchers.clone()
    }

    /// How many vouchers are committed.
    pub fn voucher_count(&self) -> usize {
        self.lock().0.vouchers.len()
    }

    /// Vouchers committed for `document_no` (more than one only with lenient uniqueness).
    pub fn vouchers_for(&self, document_no: &str) -> usize {
        self.lock()
            .0
            .vouchers
            .iter()
            .filter(|v| v.document_no == document_no)
            .count()
    }

    /// Document numbers booked more than once (always 0 unless uniqueness is lenient).
    pub fn duplicate_vouchers(&self) -> usize {
        let st = self.lock();
        let mut n: HashMap<&str, usize> = HashMap::new();
        for v in &st.0.vouchers {
            *n.entry(v.document_no.as_str()).or_default() += 1;
        }
        n.values().filter(|c| **c > 1).count()
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.lock().0.requests.clone()
    }

    /// Requests received and not answered yet: a test kills the bridge while this is above 0
    /// to land the kill in the middle of a request (a slow answer is committed first).
    pub fn in_flight(&self) -> usize {
        self.lock().0.in_flight
    }

    /// How many requests got `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.lock()
            .0
            .requests
            .iter()
            .filter(|r| r.outcome == outcome)
            .count()
    }

    /// Stops the server (at most 5 s, then it is aborted).
    pub async fn stop(self) {
        self.server.stop_within(Duration::from_secs(5)).await;
    }
}

/// FNV-1a over the parts: a stable, seedable choice of which requests a fault hits.
fn hits(percent: u8, seed: u64, fault: &str, document_no: &str, n: u32) -> bool {
    if percent == 0 {
        return false;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in fault
        .bytes()
        .chain([0])
        .chain(document_no.bytes())
        .chain(n.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 100 < u64::from(percent)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn amount(v: Option<&Value>) -> Option<Decimal> {
    match v? {
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        Value::Null => Some(Decimal::ZERO),
        _ => None,
    }
}

/// Checks a voucher: a document number, and balanced lines when it has lines.
fn validate(doc: &Value) -> Result<String, String> {
    let no = doc
        .get("document_no")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or("document_no is required (单据编号不能为空)")?;
    if let Some(lines) = doc.get("lines") {
        let lines = lines
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or("lines must be a non-empty array")?;
        let (mut debit, mut credit) = (Decimal::ZERO, Decimal::ZERO);
        for (i, l) in lines.iter().enumerate() {
            let d = amount(l.get("debit")).ok_or(format!("lines[{i}].debit is not an amount"))?;
            let c = amount(l.get("credit")).ok_or(format!("lines[{i}].credit is not an amount"))?;
            debit += d;
            credit += c;
        }
        if debit != credit {
            return Err(format!("借贷不平衡: debit {debit} ≠ credit {credit}"));
        }
    }
    Ok(no.to_owned())
}

/// Counts a request as in flight until dropped: also when the client goes away in the middle
/// of a slow answer and the server drops the handler.
struct InFlight(Shared);

impl InFlight {
    fn enter(state: &Shared) -> InFlight {
        lock(state).0.in_flight += 1;
        InFlight(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).0.in_flight -= 1;
    }
}

async fn create_voucher(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&state);
    let received_at = Instant::now();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let doc: Option<Value> = serde_json::from_slice(&body).ok();
    let document_no = doc
        .as_ref()
        .and_then(|d| d.get("document_no"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (response, delay) = {
        let mut guard = lock(&state);
        let (st, tokens) = &mut *guard;
        let n = document_no.as_ref().map_or(0, |d| {
            let c = st.seen_per_document.entry(d.clone()).or_default();
            *c += 1;
            *c
        });
        let (outcome, response, delay) = decide(
            st,
            tokens.as_ref(),
            &headers,
            doc.as_ref(),
            key.as_deref(),
            n,
        );
        st.requests.push(ReceivedRequest {
            document_no,
            idempotency_key: key,
            outcome,
            received_at,
        });
        (response, delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    response
}

fn decide(
    st: &mut FinanceState,
    tokens: Option<&TokenAuthority>,
    headers: &HeaderMap,
    doc: Option<&Value>,
    key: Option<&str>,
    n: u32,
) -> (Outcome, Response, Option<Duration>) {
    let f = &st.faults;
    if f.outage {
        let page = "<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>";
        let r = (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            page,
        )
            .into_response();
        return (Outcome::Outage, r, None);
    }
    if let Some(t) = tokens {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(p) = t.check(auth) {
            let message = match p {
                TokenProblem::Missing => "missing bearer token",
                TokenProblem::Unknown => "invalid access token",
                TokenProblem::Expired => "access token expired",
            };
            let mut r = answer(
                StatusCode::UNAUTHORIZED,
                json!({"code": "UNAUTHORIZED", "message": message}),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return (Outcome::Unauthorized, r, None);
        }
    }
    let Some(doc) = doc else {
        let r = answer(
            StatusCode::BAD_REQUEST,
            json!({"code": "BAD_REQUEST", "message": "body is not JSON"}),
        );
        return (Outcome::Invalid, r, None);
    };
    let document_no = match validate(doc) {
        Ok(no) => no,
        Err(m) => {
            let r = answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"code": "VALIDATION", "message": m}),
            );
            return (Outcome::Invalid, r, None);
        }
    };
    let seed = f.seed;
    if hits(f.rate_limited_percent, seed, "429", &document_no, n) {
        let mut r = answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"code": "RATE_LIMITED", "message": "too many requests"}),
        );
        if let Ok(v) = header::HeaderValue::from_str(&f.retry_after) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return (Outcome::RateLimited, r, None);
    }
    if hits(f.server_error_percent, seed, "500", &document_no, n) {
        let r = answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"code": "INTERNAL", "message": "internal error"}),
        );
        return (Outcome::ServerError, r, None);
    }
    if let Some((code, message)) = f.refuse_with_code.get(&document_no) {
        let r = answer(
            StatusCode::OK,
            json!({"code": code, "message": message, "data": null}),
        );
        return (Outcome::RefusedWithCode, r, None);
    }
    let existing = key
        .and_then(|k| st.by_key.get(k))
        .or_else(|| st.by_document.get(&document_no))
        .copied();
    if let (Some(i), false) = (existing, f.lenient_uniqueness) {
        let v = &st.vouchers[i];
        let r = answer(
            StatusCode::CONFLICT,
            json!({"code": "ALREADY_EXISTS",
                   "message": format!("单据编号 {} 已存在，凭证号 {}", v.document_no, v.voucher_no),
                   "data": {"voucher_no": v.voucher_no, "voucher_id": v.voucher_id, "document_no": v.document_no}}),
        );
        return (Outcome::Duplicate, r, None);
    }
    let then_500 = hits(
        f.commit_then_500_percent,
        seed,
        "commit-500",
        &document_no,
        n,
    );
    let slow = hits(f.slow_percent, seed, "slow", &document_no, n).then_some(f.slow_delay);
    let voucher_id = st.vouchers.len() as u64 + 1;
    let voucher_no = format!("JZ-{voucher_id:06}");
    st.by_document
        .insert(document_no.clone(), st.vouchers.len());
    if let Some(k) = key {
        st.by_key.insert(k.to_owned(), st.vouchers.len());
    }
    st.vouchers.push(Voucher {
        voucher_no: voucher_no.clone(),
        voucher_id,
        document_no: document_no.clone(),
        idempotency_key: key.map(str::to_owned),
        document: doc.clone(),
        committed_at: Instant::now(),
    });
    if then_500 {
        let r = answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"code": "INTERNAL", "message": "internal error"}),
        );
        return (Outcome::CommittedThen500, r, None);
    }
    let r = answer(
        StatusCode::CREATED,
        json!({"code": 0, "message": "ok", "data": {"voucher_no": voucher_no, "voucher_id": voucher_id, "document_no": document_no}}),
    );
    match slow {
        Some(d) => (Outcome::CommittedSlowly, r, Some(d)),
        None => (Outcome::Committed, r, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_shares_are_deterministic_and_close_to_the_share() {
        let hit = (0..1000)
            .filter(|i| hits(10, 7, "500", &format!("EXP-{i}"), 1))
            .count();
        assert!((60..=140).contains(&hit), "{hit}");
        assert_eq!(
            hits(10, 7, "500", "EXP-1", 1),
            hits(10, 7, "500", "EXP-1", 1)
        );
        assert!(!hits(0, 7, "500", "EXP-1", 1));
        assert!(hits(100, 7, "500", "EXP-1", 1));
    }

    #[test]
    fn vouchers_must_balance_to_the_cent() {
        let ok = json!({"document_no": "EXP-1", "lines": [{"debit": "1280.50", "credit": "0"}, {"debit": 0, "credit": "1280.5"}]});
        assert_eq!(validate(&ok), Ok("EXP-1".into()));
        let off = json!({"document_no": "EXP-1", "lines": [{"debit": "1280.50", "credit": "0"}, {"debit": "0", "credit": "1280.49"}]});
        assert!(validate(&off).unwrap_err().contains("借贷不平衡"));
        assert!(
            validate(&json!({"lines": []}))
                .unwrap_err()
                .contains("document_no")
        );
    }
}
