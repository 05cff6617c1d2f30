//! A fake WeCom API server for tests and the demo.
//!
//! Speaks WeCom's real JSON for the calls the bridge makes (`gettoken`,
//! `oa/getapprovaldetail`, `oa/getapprovalinfo`, `message/send`, `user/get`,
//! `externalcontact/get`, `auth/getuserinfo`) on the real paths under `/cgi-bin`, plays
//! WeCom's two login pages for console sign-in (the `login` submodule), and behaves like
//! WeCom where the client has to cope with it (PROTOCOL.md §4):
//!
//! * every answer is HTTP 200 with `errcode`/`errmsg` (errmsg carries a changing
//!   hint, like WeCom's, so clients that match on it break);
//! * tokens are issued per corp, expire after `expires_in` (42001), unknown ones get
//!   40014, missing ones 41001; within its lifetime `gettoken` returns the same token;
//! * `getapprovalinfo` filters by submit time (inclusive), `sp_status`,
//!   `template_id`, `creator`, `department`; pages with an opaque `new_next_cursor`
//!   that is absent on the last page; rejects windows over 31 days (301112); forms of
//!   applicants outside the app's visible range ([`FakeWeCom::hide_applicant`]) use up
//!   page slots but are not returned, so pages can be short;
//! * errors can be injected per API ([`FakeWeCom::fail_next`]) and per-minute limits
//!   set ([`FakeWeCom::set_rate_limit_per_minute`], 45009 beyond);
//! * `message/send` checks `agentid`, the message type and a text card's title, description
//!   and link, reports unknown members in `invaliduser` (81013 when nobody is left), and
//!   honours `enable_duplicate_check`: an identical body within `duplicate_check_interval`
//!   (default 1800 s) is answered ok but not delivered again. Every request body is kept
//!   ([`FakeWeCom::received_messages`]) and every message delivered to members
//!   ([`FakeWeCom::sent_messages`]), so tests count notifications here.
//!
//! Driven by fixtures: credentials, approvals (`info` objects of
//! `getapprovaldetail`), users and external contacts are added by the test. For load runs,
//! [`FakeWeCom::serve_synthetic_approvals`] answers `getapprovaldetail` for any SpNo
//! without a fixture from one template, so a million forms need no million fixtures.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

/// Longest window `getapprovalinfo` accepts.
const MAX_WINDOW_SECS: i64 = 31 * 86_400;
/// Default token lifetime, as WeCom.
const DEFAULT_TOKEN_TTL: i64 = 7200;

type Shared = Arc<Mutex<FakeState>>;
type QueryMap = HashMap<String, String>;

/// A running fake WeCom server on 127.0.0.1.
pub struct FakeWeCom {
    state: Shared,
    server: super::Running,
}

impl std::fmt::Debug for FakeWeCom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeWeCom")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl FakeWeCom {
    /// Starts the server on an ephemeral loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test environment).
    pub async fn start() -> FakeWeCom {
        let state: Shared = Arc::new(Mutex::new(FakeState::default()));
        let router = Router::new()
            .route("/cgi-bin/gettoken", get(gettoken))
            .route("/cgi-bin/oa/getapprovaldetail", post(approval_detail))
            .route("/cgi-bin/oa/getapprovalinfo", post(approval_info))
            .route("/cgi-bin/message/send", post(message_send))
            .route("/cgi-bin/user/get", get(user_get))
            .route("/cgi-bin/externalcontact/get", get(external_contact_get))
            .route("/cgi-bin/auth/getuserinfo", get(login::getuserinfo))
            .route("/connect/oauth2/authorize", get(login::authorize))
            .route("/wwlogin/sso/login", get(login::sso_login))
            .with_state(Arc::clone(&state));
        let server = super::serve_loopback(router, "fake WeCom server").await;
        FakeWeCom { state, server }
    }

    /// Base URL to give the client, e.g. `http://127.0.0.1:PORT/cgi-bin`.
    pub fn base_url(&self) -> String {
        format!("http://{}/cgi-bin", self.server.addr)
    }

    /// Accepts this corp ID / app secret pair in `gettoken`. Unknown corp IDs get
    /// 40013, a wrong secret for a known corp 40001.
    pub fn add_credentials(&self, corp_id: &str, secret: &str) {
        self.lock()
            .credentials
            .insert(corp_id.to_owned(), secret.to_owned());
    }

    /// Lifetime in seconds of tokens issued from now on (default 7200); returned as
    /// `expires_in` and enforced (42001 afterwards).
    pub fn set_token_ttl(&self, secs: i64) {
        self.lock().token_ttl = secs;
    }

    /// Expires every issued token: the next call with one gets 42001, and
    /// `gettoken` issues a new one.
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for t in self.lock().tokens.values_mut() {
            t.expires_at = now;
        }
    }

    /// Adds (or replaces) an approval form: the `info` object `getapprovaldetail`
    /// returns, keyed by its `sp_no`. `apply_time`, `sp_status`, `template_id` and
    /// `applyer` are used by `getapprovalinfo`.
    ///
    /// # Panics
    /// If `detail_info` has no `sp_no` (a broken fixture).
    pub fn add_approval(&self, detail_info: Value) {
        let sp_no = match detail_info.get("sp_no") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => panic!("approval fixture without sp_no: {detail_info}"),
        };
        self.lock().approvals.insert(sp_no, detail_info);
    }

    /// Answers `getapprovaldetail` for every SpNo that has no fixture with `template` (an
    /// `info` object) whose `sp_no` is the requested one; the answer text is built once, so
    /// a load run spends almost nothing here. `getapprovalinfo` does not list these forms.
    ///
    /// # Panics
    /// If `template` is not a JSON object (a broken fixture).
    pub fn serve_synthetic_approvals(&self, template: Value) {
        const MARK: &str = "\u{0}synthetic-sp-no\u{0}";
        let mut info = template;
        info["sp_no"] = json!(MARK);
        let text = serde_json::to_string(&FakeState::ok(json!({ "info": info })))
            .expect("a JSON value serialises");
        let quoted = serde_json::to_string(MARK).expect("a string serialises");
        let (before, after) = text
            .split_once(&quoted)
            .expect("the marker is in the text once");
        self.lock().synthetic = Some((before.to_owned(), after.to_owned()));
    }

    /// Treats `userid` as outside the app's visible range: their forms take page
    /// slots in `getapprovalinfo` but are not listed (short pages).
    pub fn hide_applicant(&self, userid: &str) {
        self.lock().hidden_applicants.insert(userid.to_owned());
    }

    /// Adds a member for `user/get` (the object holds `userid`, `name`, …). Once any
    /// member exists, `message/send` reports unknown `touser` ids as invalid.
    ///
    /// # Panics
    /// If `user` has no string `userid` (a broken fixture).
    pub fn add_user(&self, user: Value) {
        let id = user
            .get("userid")
            .and_then(Value::as_str)
            .expect("user fixture without userid")
            .to_owned();
        self.lock().users.insert(id, user);
    }

    /// Adds a customer for `externalcontact/get`: `{"external_contact": {...},
    /// "follow_user": [...]}` keyed by `external_contact.external_userid`.
    ///
    /// # Panics
    /// If the fixture has no `external_contact.external_userid`.
    pub fn add_external_contact(&self, contact: Value) {
        let id = contact
            .get("external_contact")
            .and_then(|c| c.get("external_userid"))
            .and_then(Value::as_str)
            .expect("external contact fixture without external_userid")
            .to_owned();
        self.lock().external_contacts.insert(id, contact);
    }

    /// Makes the next `times` calls of `api` (`gettoken`, `getapprovaldetail`,
    /// `getapprovalinfo`, `message/send`, `user/get`, `externalcontact/get`) answer
    /// `errcode`. Injections queue up behind earlier ones.
    pub fn fail_next(&self, api: &str, errcode: i64, times: u32) {
        let mut st = self.lock();
        let q = st.failures.entry(normalize(api)).or_default();
        q.extend(std::iter::repeat_n(errcode, times as usize));
    }

    /// How many requests `api` has received (including failed ones).
    pub fn calls(&self, api: &str) -> usize {
        self.lock().calls.get(&normalize(api)).copied().unwrap_or(0)
    }

    /// Bodies of `message/send` calls that delivered a message (ok, and not dropped by the
    /// duplicate check), oldest first.
    pub fn sent_messages(&self) -> Vec<Value> {
        self.lock().sent.clone()
    }

    /// Every `message/send` request body received (failed, rate-limited and duplicate ones
    /// included), oldest first; bodies that are not JSON are kept as a string.
    pub fn received_messages(&self) -> Vec<Value> {
        self.lock().received.clone()
    }

    /// Limits `api` to `n` calls per minute (fixed window); beyond it: 45009.
    pub fn set_rate_limit_per_minute(&self, api: &str, n: u32) {
        self.lock().rate_limits.insert(
            normalize(api),
            RateWindow {
                per_minute: n,
                started: Instant::now(),
                count: 0,
            },
        );
    }

    /// Stops the server and waits for it (at most 5 s, then it is aborted).
    pub async fn stop(self) {
        self.server.stop_within(Duration::from_secs(5)).await;
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.state)
    }
}

fn lock(m: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `oa/getapprovaldetail` → `getapprovaldetail`, `/cgi-bin/user/get` → `user/get`.
fn normalize(api: &str) -> String {
    let api = api.trim_start_matches('/');
    let api = api.strip_prefix("cgi-bin/").unwrap_or(api);
    api.strip_prefix("oa/").unwrap_or(api).to_owned()
}

struct IssuedToken {
    corp_id: String,
    expires_at: Instant,
}

struct RateWindow {
    per_minute: u32,
    started: Instant,
    count: u32,
}

struct CursorState {
    query: String,
    offset: usize,
}

struct FakeState {
    credentials: HashMap<String, String>,
    token_ttl: i64,
    tokens: HashMap<String, IssuedToken>,
    seq: u64,
    approvals: BTreeMap<String, Value>,
    hidden_applicants: HashSet<String>,
    users: HashMap<String, Value>,
    external_contacts: HashMap<String, Value>,
    failures: HashMap<String, VecDeque<i64>>,
    calls: HashMap<String, usize>,
    sent: Vec<Value>,
    received: Vec<Value>,
    /// Bodies sent with `enable_duplicate_check`, with when they were sent and the interval.
    recent: HashMap<String, (Instant, Duration, String)>,
    rate_limits: HashMap<String, RateWindow>,
    cursors: HashMap<String, CursorState>,
    /// `getapprovaldetail`'s answer text before and after the SpNo, for forms without a
    /// fixture ([`FakeWeCom::serve_synthetic_approvals`]).
    synthetic: Option<(String, String)>,
    /// Console sign-in: who confirms at the login pages, and the codes issued.
    login: login::LoginState,
}

impl Default for FakeState {
    fn default() -> Self {
        Self {
            credentials: HashMap::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
            tokens: HashMap::new(),
            seq: 0,
            approvals: BTreeMap::new(),
            hidden_applicants: HashSet::new(),
            users: HashMap::new(),
            external_contacts: HashMap::new(),
            failures: HashMap::new(),
            calls: HashMap::new(),
            sent: Vec::new(),
            received: Vec::new(),
            recent: HashMap::new(),
            rate_limits: HashMap::new(),
            cursors: HashMap::new(),
            synthetic: None,
            login: login::LoginState::default(),
        }
    }
}

/// WeCom-like errmsg texts (English, as WeCom sends them).
fn errmsg_text(code: i64) -> &'static str {
    match code {
        -1 => "system busy",
        40001 => "invalid credential",
        40003 => "invalid userid",
        40008 => "invalid message type",
        40013 => "invalid corpid",
        40029 => "invalid code",
        40014 => "invalid access_token",
        40056 => "invalid agentid",
        40058 => "invalid parameter",
        40096 => "invalid external userid",
        41001 => "access_token missing",
        41002 => "corpid missing",
        41004 => "corpsecret missing",
        41008 => "missing oauth code",
        41009 => "missing userid",
        42001 => "access_token expired",
        44004 => "empty content",
        45009 => "api freq out of limit",
        45033 => "api concurrent out of limit",
        47001 => "data format error, Warning: wrong json format.",
        48002 => "api forbidden",
        60020 => "not allow to access from your ip",
        60111 => "userid not found",
        81013 => "user & party & tag all invalid",
        84061 => "not exist external_contact",
        301025 => "invalid parameter",
        301112 => "time range too large, please shrink it",
        _ => "error",
    }
}

impl FakeState {
    fn next_id(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// An error body like WeCom's, with a changing hint in errmsg.
    fn error(&mut self, code: i64) -> Value {
        let n = self.next_id();
        json!({
            "errcode": code,
            "errmsg": format!(
                "{}, hint: [fake{n:06}], from ip: 127.0.0.1, more info at \
                 https://open.work.weixin.qq.com/devtool/query?e={code}",
                errmsg_text(code)
            ),
        })
    }

    fn ok(fields: Value) -> Value {
        let mut out = Map::new();
        out.insert("errcode".into(), json!(0));
        out.insert("errmsg".into(), json!("ok"));
        if let Value::Object(f) = fields {
            out.extend(f);
        }
        Value::Object(out)
    }

    /// Counting, injected failures and rate limits shared by every API.
    fn admit(&mut self, api: &str) -> Result<(), Value> {
        *self.calls.entry(api.to_owned()).or_default() += 1;
        if let Some(code) = self.failures.get_mut(api).and_then(VecDeque::pop_front) {
            return Err(self.error(code));
        }
        Ok(())
    }

    fn rate_limited(&mut self, api: &str) -> bool {
        let Some(w) = self.rate_limits.get_mut(api) else {
            return false;
        };
        if w.started.elapsed() >= Duration::from_secs(60) {
            w.started = Instant::now();
            w.count = 0;
        }
        w.count += 1;
        w.count > w.per_minute
    }

    /// `admit`, then the access_token check, then the rate limit.
    fn authorize(&mut self, api: &str, q: &QueryMap) -> Result<(), Value> {
        self.admit(api)?;
        let code = match q.get("access_token").filter(|t| !t.is_empty()) {
            None => Some(41001),
            Some(t) => match self.tokens.get(t) {
                None => Some(40014),
                Some(issued) if Instant::now() >= issued.expires_at => Some(42001),
                Some(_) => None,
            },
        };
        if let Some(code) = code {
            return Err(self.error(code));
        }
        if self.rate_limited(api) {
            return Err(self.error(45009));
        }
        Ok(())
    }

    fn gettoken(&mut self, q: &QueryMap) -> Value {
        if let Err(e) = self.admit("gettoken") {
            return e;
        }
        if self.rate_limited("gettoken") {
            return self.error(45009);
        }
        let Some(corp_id) = q.get("corpid").filter(|s| !s.is_empty()) else {
            return self.error(41002);
        };
        let Some(secret) = q.get("corpsecret").filter(|s| !s.is_empty()) else {
            return self.error(41004);
        };
        match self.credentials.get(corp_id) {
            None => return self.error(40013),
            Some(s) if s != secret => return self.error(40001),
            Some(_) => {}
        }
        // Within its lifetime WeCom hands out the same token again.
        let now = Instant::now();
        let current = self
            .tokens
            .iter()
            .filter(|(_, t)| &t.corp_id == corp_id)
            .map(|(tok, t)| (tok, t.expires_at.saturating_duration_since(now).as_secs()))
            .find(|(_, remaining)| *remaining >= 1)
            .map(|(tok, remaining)| (tok.clone(), remaining));
        let (token, expires_in) = match current {
            Some((tok, remaining)) => (tok, i64::try_from(remaining).unwrap_or(i64::MAX)),
            None => {
                let n = self.next_id();
                let token = format!("FAKE_ACCESS_TOKEN_{n:08}_{}", mix(n));
                let ttl = self.token_ttl;
                self.tokens.insert(
                    token.clone(),
                    IssuedToken {
                        corp_id: corp_id.clone(),
                        expires_at: now + Duration::from_secs(ttl.max(0).unsigned_abs()),
                    },
                );
                (token, ttl)
            }
        };
        Self::ok(json!({"access_token": token, "expires_in": expires_in}))
    }

    fn approval_detail(&mut self, body: &[u8]) -> Value {
        let Some(req) = parse_body(body) else {
            return self.error(47001);
        };
        let sp_no = match req.get("sp_no") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return self.error(301025),
        };
        match self.approvals.get(&sp_no) {
            Some(info) => Self::ok(json!({ "info": info })),
            None => self.error(301025),
        }
    }

    /// The synthetic answer for a requested SpNo without a fixture, when that mode is on.
    fn synthetic_detail(&self, body: &[u8]) -> Option<String> {
        let (before, after) = self.synthetic.as_ref()?;
        let sp_no = match parse_body(body)?.get("sp_no")? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        if self.approvals.contains_key(&sp_no) {
            return None;
        }
        let quoted = serde_json::to_string(&sp_no).ok()?;
        Some(format!("{before}{quoted}{after}"))
    }

    fn approval_info(&mut self, body: &[u8]) -> Value {
        let Some(req) = parse_body(body) else {
            return self.error(47001);
        };
        let (Some(start), Some(end)) = (
            req.get("starttime").and_then(as_i64),
            req.get("endtime").and_then(as_i64),
        ) else {
            return self.error(301025);
        };
        if end <= start {
            return self.error(301025);
        }
        if end - start > MAX_WINDOW_SECS {
            return self.error(301112);
        }
        let size = match req.get("size") {
            None => 100,
            Some(v) => match as_i64(v) {
                Some(n @ 1..=100) => n.unsigned_abs() as usize,
                _ => return self.error(301025),
            },
        };
        let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(list) = req.get("filters") {
            let Some(list) = list.as_array() else {
                return self.error(301025);
            };
            for f in list {
                let (Some(key), Some(value)) = (
                    f.get("key").and_then(Value::as_str),
                    f.get("value").and_then(as_string),
                ) else {
                    return self.error(301025);
                };
                if !matches!(
                    key,
                    "template_id" | "creator" | "department" | "sp_status" | "record_type"
                ) {
                    return self.error(301025);
                }
                filters.entry(key.to_owned()).or_default().push(value);
            }
        }
        let fingerprint = format!("{start}|{end}|{size}|{filters:?}");
        let offset = match req.get("new_cursor").and_then(Value::as_str) {
            None | Some("") => 0,
            Some(c) => match self.cursors.get(c) {
                Some(cs) if cs.query == fingerprint => cs.offset,
                _ => return self.error(301025),
            },
        };
        let mut matching: Vec<(i64, &String, &Value)> = self
            .approvals
            .iter()
            .filter_map(|(sp_no, info)| {
                let t = info.get("apply_time").and_then(as_i64)?;
                (start <= t && t <= end && matches_filters(info, &filters))
                    .then_some((t, sp_no, info))
            })
            .collect();
        matching.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let page: Vec<String> = matching
            .iter()
            .skip(offset)
            .take(size)
            .filter(|(_, _, info)| {
                let applicant = info
                    .get("applyer")
                    .and_then(|a| a.get("userid"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                !self.hidden_applicants.contains(applicant)
            })
            .map(|(_, sp_no, _)| (*sp_no).clone())
            .collect();
        let next = offset + size;
        let more = next < matching.len();
        let mut out = json!({ "sp_no_list": page });
        if more {
            let n = self.next_id();
            let cursor = format!("{:016x}{:08x}", mix(n), n);
            self.cursors.insert(
                cursor.clone(),
                CursorState {
                    query: fingerprint,
                    offset: next,
                },
            );
            out["new_next_cursor"] = json!(cursor);
        }
        Self::ok(out)
    }

    fn message_send(&mut self, body: &[u8]) -> Value {
        let Some(msg) = parse_body(body) else {
            return self.error(47001);
        };
        let Some(msgtype) = msg.get("msgtype").and_then(Value::as_str) else {
            return self.error(40008);
        };
        if msg.get("agentid").and_then(Value::as_i64).is_none() {
            return self.error(40056);
        }
        let Some(content) = msg.get(msgtype) else {
            return self.error(44004);
        };
        let text = |k: &str| content.get(k).and_then(Value::as_str).unwrap_or_default();
        match msgtype {
            "text" if text("content").is_empty() => return self.error(44004),
            "textcard" if text("title").is_empty() || text("description").is_empty() => {
                return self.error(44004);
            }
            "textcard" if text("url").is_empty() => return self.error(40058),
            "textcard"
                if text("title").chars().count() > 128
                    || text("description").chars().count() > 512 =>
            {
                return self.error(45002);
            }
            _ => {}
        }
        let field = |k: &str| {
            msg.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (touser, toparty, totag) = (field("touser"), field("toparty"), field("totag"));
        let users: Vec<&str> = touser.split('|').filter(|s| !s.is_empty()).collect();
        let invalid: Vec<String> = if touser == "@all" || self.users.is_empty() {
            Vec::new()
        } else {
            users
                .iter()
                .filter(|u| !self.users.contains_key(**u))
                .map(|u| u.to_lowercase())
                .collect()
        };
        let valid_users = if touser == "@all" {
            1
        } else {
            users.len() - invalid.len()
        };
        if valid_users == 0 && toparty.is_empty() && totag.is_empty() {
            return self.error(81013);
        }
        let n = self.next_id();
        let mut msg_id = format!("fake_msgid_{n:08}");
        if msg.get("enable_duplicate_check").and_then(Value::as_i64) == Some(1) {
            let interval = msg
                .get("duplicate_check_interval")
                .and_then(Value::as_u64)
                .unwrap_or(1800);
            let now = Instant::now();
            let key = String::from_utf8_lossy(body).into_owned();
            match self.recent.get(&key) {
                Some((at, window, first)) if now.duration_since(*at) < *window => {
                    msg_id = first.clone();
                }
                _ => {
                    self.recent
                        .insert(key, (now, Duration::from_secs(interval), msg_id.clone()));
                    self.sent.push(msg);
                }
            }
        } else {
            self.sent.push(msg);
        }
        Self::ok(json!({
            "invaliduser": invalid.join("|"),
            "invalidparty": "",
            "invalidtag": "",
            "unlicenseduser": "",
            "msgid": msg_id,
        }))
    }

    fn user_get(&mut self, q: &QueryMap) -> Value {
        self.fixture(q, "userid", 41009, |st| &st.users, 60111)
    }

    fn external_contact_get(&mut self, q: &QueryMap) -> Value {
        self.fixture(
            q,
            "external_userid",
            40096,
            |st| &st.external_contacts,
            84061,
        )
    }

    /// The fixture in `fixtures` keyed by the query parameter `key`: `missing` when the
    /// parameter is absent or empty, `unknown` when no fixture has that id.
    fn fixture(
        &mut self,
        q: &QueryMap,
        key: &str,
        missing: i64,
        fixtures: fn(&Self) -> &HashMap<String, Value>,
        unknown: i64,
    ) -> Value {
        let Some(id) = q.get(key).filter(|s| !s.is_empty()) else {
            return self.error(missing);
        };
        match fixtures(self).get(id) {
            Some(found) => Self::ok(found.clone()),
            None => self.error(unknown),
        }
    }

    /// `answer`, if [`Self::authorize`] lets this call of `api` through; its refusal if not.
    fn authorized(
        &mut self,
        api: &str,
        q: &QueryMap,
        answer: impl FnOnce(&mut Self) -> Value,
    ) -> Json<Value> {
        Json(match self.authorize(api, q) {
            Ok(()) => answer(self),
            Err(e) => e,
        })
    }
}

/// Same-key filters OR, different keys AND.
fn matches_filters(info: &Value, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| {
        let actual = match key.as_str() {
            "sp_status" => info.get("sp_status").and_then(as_string),
            "template_id" => info.get("template_id").and_then(as_string),
            "creator" => info
                .get("applyer")
                .and_then(|a| a.get("userid"))
                .and_then(as_string),
            "department" => info
                .get("applyer")
                .and_then(|a| a.get("partyid"))
                .and_then(as_string),
            _ => info.get(key.as_str()).and_then(as_string),
        };
        actual.is_some_and(|a| values.contains(&a))
    })
}

fn parse_body(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
}

/// A number given as a JSON number or a decimal string (WeCom accepts both).
fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Scrambles a counter so tokens and cursors look opaque.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn gettoken(State(st): State<Shared>, Query(q): Query<QueryMap>) -> Json<Value> {
    Json(lock(&st).gettoken(&q))
}

async fn approval_detail(
    State(st): State<Shared>,
    Query(q): Query<QueryMap>,
    body: Bytes,
) -> Response {
    let mut st = lock(&st);
    if let Err(e) = st.authorize("getapprovaldetail", &q) {
        return Json(e).into_response();
    }
    match st.synthetic_detail(&body) {
        Some(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        None => Json(st.approval_detail(&body)).into_response(),
    }
}

async fn approval_info(
    State(st): State<Shared>,
    Query(q): Query<QueryMap>,
    body: Bytes,
) -> Json<Value> {
    lock(&st).authorized("getapprovalinfo", &q, |st| st.approval_info(&body))
}

async fn message_send(
    State(st): State<Shared>,
    Query(q): Query<QueryMap>,
    body: Bytes,
) -> Json<Value> {
    let mut st = lock(&st);
    let received = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    st.received.push(received);
    st.authorized("message/send", &q, |st| st.message_send(&body))
}

async fn user_get(State(st): State<Shared>, Query(q): Query<QueryMap>) -> Json<Value> {
    lock(&st).authorized("user/get", &q, |st| st.user_get(&q))
}

async fn external_contact_get(State(st): State<Shared>, Query(q): Query<QueryMap>) -> Json<Value> {
    lock(&st).authorized("externalcontact/get", &q, |st| st.external_contact_get(&q))
}

mod login;
pub use login::refresh_target;
#[cfg(test)]
mod tests;
