//! `kind = "kingdee"`: the `[kingdee]` table and the Kingdee connector state.
//!
//! Auth is either the SDK 8.x signed headers on every request (`auth = "signed"`) or a session
//! login (`login_by_sign`, `login_by_app_secret`, `validate_user`) whose cookie is replayed;
//! the session is logged in once (single-flight) and again when the server says
//! `会话信息已丢失，请重新登录`. The mapped document is the `Model`; the connector wraps it in
//! the Save `data` and the chosen envelope (`{formid, data}` or legacy `parameters`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::{Problems, Sent, auth_failed, by_reference, post, resolve, verdict};
use crate::config::{Secret, SecretRef};
use crate::deliver::Verdict;
use crate::deliver::vendor::Outcome;
use crate::deliver::vendor::kingdee::{
    self as wire, Credentials, DEFAULT_SECRET_SEED, Envelope, KingdeeError, Op, Session,
};

/// Headers whose values are secret in a Kingdee request.
pub const SECRET_HEADERS: [&str; 4] = [
    "x-api-signature",
    "x-kd-signature",
    "x-kd-appkey",
    "kdservice-sessionid",
];

/// How the connector authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KingdeeAuth {
    /// SDK 8.x signed headers on every request (第三方系统登录授权), no login.
    #[default]
    Signed,
    /// `AuthService.LoginBySign` (recommended by Kingdee for session logins).
    LoginBySign,
    /// `AuthService.LoginByAppSecret`.
    LoginByAppSecret,
    /// `AuthService.ValidateUser` with the user's password.
    ValidateUser,
}

impl KingdeeAuth {
    fn login_op(self) -> Option<Op> {
        match self {
            KingdeeAuth::Signed => None,
            KingdeeAuth::LoginBySign => Some(Op::LoginBySign),
            KingdeeAuth::LoginByAppSecret => Some(Op::LoginByAppSecret),
            KingdeeAuth::ValidateUser => Some(Op::ValidateUser),
        }
    }
}

/// The envelope style in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeStyle {
    /// `{"formid": …, "data": {…}}`.
    #[default]
    New,
    /// `{"parameters": [formId, "<data as a JSON string>"]}`.
    Legacy,
}

/// `[kingdee]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KingdeeFile {
    form_id: Spanned<String>,
    #[serde(default)]
    auth: KingdeeAuth,
    acct_id: Spanned<String>,
    user: Spanned<String>,
    app_id: Option<Spanned<String>>,
    app_secret: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    #[serde(default = "default_lcid")]
    lcid: u32,
    #[serde(default = "default_org")]
    org_num: String,
    #[serde(default)]
    envelope: EnvelopeStyle,
    #[serde(default)]
    need_return_fields: Vec<String>,
}

fn default_lcid() -> u32 {
    2052
}
fn default_org() -> String {
    "0".into()
}

/// `[kingdee]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct KingdeeSpec {
    /// The form to save (`GL_VOUCHER`, `ER_ExpReimbursement`, …).
    pub form_id: String,
    /// How to authenticate.
    pub auth: KingdeeAuth,
    /// 账套ID.
    pub acct_id: String,
    /// Integration user.
    pub user: String,
    /// AppID (`<clientId>_<32 chars>`), literal or by reference.
    pub app_id: Option<SecretRef>,
    /// AppSecret, by reference.
    pub app_secret: Option<SecretRef>,
    /// The user's password (`validate_user`), by reference.
    pub password: Option<SecretRef>,
    /// Locale (2052).
    pub lcid: u32,
    /// Organisation number ("0").
    pub org_num: String,
    /// Envelope style.
    pub envelope: EnvelopeStyle,
    /// Fields the server returns after Save.
    pub need_return_fields: Vec<String>,
}

/// Validates `[kingdee]`.
pub fn validate(t: Spanned<KingdeeFile>, errs: &mut Problems) -> Option<KingdeeSpec> {
    let table = t.span();
    let f = t.into_inner();
    let before = errs.len();
    for (what, v) in [
        ("kingdee.form_id", &f.form_id),
        ("kingdee.acct_id", &f.acct_id),
        ("kingdee.user", &f.user),
    ] {
        if v.get_ref().trim().is_empty() {
            errs.push((Some(v.span()), format!("{what} is empty")));
        }
    }
    let needs_app = f.auth != KingdeeAuth::ValidateUser;
    let mut require = |what: &str, v: &Option<Spanned<String>>, secret: bool| match v {
        None => {
            errs.push((
                Some(table.clone()),
                format!(
                    "kingdee.{what} is required with auth = \"{}\" (ask the Kingdee administrator: 第三方系统登录授权)",
                    auth_name(f.auth)
                ),
            ));
            None
        }
        Some(v) if secret => Some(by_reference(&format!("kingdee.{what}"), v, errs)),
        Some(v) => Some(SecretRef::parse(v.get_ref())),
    };
    let app_id = if needs_app {
        require("app_id", &f.app_id, false)
    } else {
        f.app_id.as_ref().map(|v| SecretRef::parse(v.get_ref()))
    };
    let app_secret = if needs_app {
        require("app_secret", &f.app_secret, true)
    } else {
        None
    };
    let password = if f.auth == KingdeeAuth::ValidateUser {
        require("password", &f.password, true)
    } else {
        None
    };
    if let (Some(SecretRef::Literal(id)), Some(span)) =
        (&app_id, f.app_id.as_ref().map(Spanned::span))
        && let Err(e) = check_app_id(id, f.auth)
    {
        errs.push((Some(span), e));
    }
    (errs.len() == before).then(|| KingdeeSpec {
        form_id: f.form_id.into_inner(),
        auth: f.auth,
        acct_id: f.acct_id.into_inner(),
        user: f.user.into_inner(),
        app_id,
        app_secret,
        password,
        lcid: f.lcid,
        org_num: f.org_num,
        envelope: f.envelope,
        need_return_fields: f.need_return_fields,
    })
}

fn auth_name(a: KingdeeAuth) -> &'static str {
    match a {
        KingdeeAuth::Signed => "signed",
        KingdeeAuth::LoginBySign => "login_by_sign",
        KingdeeAuth::LoginByAppSecret => "login_by_app_secret",
        KingdeeAuth::ValidateUser => "validate_user",
    }
}

/// An AppID must be `<clientId>_<32 chars>`; for signed headers its second part must decode.
fn check_app_id(app_id: &str, auth: KingdeeAuth) -> Result<(), String> {
    let malformed = || KingdeeError::MalformedAppId(app_id.to_owned()).to_string();
    let (client, part) = app_id.split_once('_').ok_or_else(malformed)?;
    if client.is_empty() || part.len() != 32 {
        return Err(malformed());
    }
    if auth == KingdeeAuth::Signed && wire::decode_app_secret(part, DEFAULT_SECRET_SEED).is_empty()
    {
        return Err(malformed());
    }
    Ok(())
}

/// A built Kingdee connector: credentials resolved, session cached.
pub struct KingdeeClient {
    spec: KingdeeSpec,
    creds: Credentials,
    password: Option<Secret>,
    base: url::Url,
    session: tokio::sync::Mutex<Option<Session>>,
    logins: AtomicU64,
}

impl std::fmt::Debug for KingdeeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KingdeeClient")
            .field("form_id", &self.spec.form_id)
            .field("auth", &self.spec.auth)
            .field("acct_id", &self.creds.acct_id)
            .finish_non_exhaustive()
    }
}

impl KingdeeClient {
    /// Resolves and checks the credentials.
    ///
    /// # Errors
    /// A secret that cannot be read, is empty, or an AppID that is malformed.
    pub fn build(spec: &KingdeeSpec, base: &url::Url) -> Result<KingdeeClient, String> {
        let app_id = match &spec.app_id {
            Some(r) => resolve("kingdee.app_id", r)?.expose().to_owned(),
            None => String::new(),
        };
        if spec.auth != KingdeeAuth::ValidateUser {
            check_app_id(&app_id, spec.auth).map_err(|e| format!("kingdee.app_id: {e}"))?;
        }
        let app_secret = match &spec.app_secret {
            Some(r) => resolve("kingdee.app_secret", r)?.expose().to_owned(),
            None => String::new(),
        };
        let password = match &spec.password {
            Some(r) => Some(resolve("kingdee.password", r)?),
            None => None,
        };
        Ok(KingdeeClient {
            creds: Credentials {
                acct_id: spec.acct_id.clone(),
                user: spec.user.clone(),
                app_id,
                app_secret,
                lcid: spec.lcid,
                org_num: spec.org_num.clone(),
            },
            spec: spec.clone(),
            password,
            base: base.clone(),
            session: tokio::sync::Mutex::new(None),
            logins: AtomicU64::new(0),
        })
    }

    fn url(&self, op: Op) -> url::Url {
        let mut u = self.base.clone();
        u.set_path(&op.path(self.base.path()));
        u.set_query(None);
        u
    }

    pub(super) fn document_url(&self) -> url::Url {
        self.url(Op::Save)
    }

    pub(super) fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    pub(super) fn static_secrets(&self) -> Vec<String> {
        let mut out = vec![self.creds.app_secret.clone(), self.creds.app_id.clone()];
        out.extend(self.password.iter().map(|p| p.expose().to_owned()));
        out.retain(|s| !s.is_empty());
        out
    }

    /// The Model wrapped in the Save `data` and the configured envelope.
    pub(super) fn encode(&self, model: &Value) -> Result<Vec<u8>, String> {
        if !model.is_object() {
            return Err(format!(
                "the mapping must produce the Kingdee Model as an object (the fields of form {}), not {model}",
                self.spec.form_id
            ));
        }
        let fields: Vec<&str> = self
            .spec
            .need_return_fields
            .iter()
            .map(String::as_str)
            .collect();
        let data = wire::save_data(model.clone(), &fields);
        let style = match self.spec.envelope {
            EnvelopeStyle::New => Envelope::New,
            EnvelopeStyle::Legacy => Envelope::Legacy,
        };
        serde_json::to_vec(&wire::envelope(&self.spec.form_id, &data, style))
            .map_err(|e| e.to_string())
    }

    /// The current session, logging in when there is none (one login at a time).
    async fn session(
        &self,
        http: &reqwest::Client,
        total: Duration,
        op: Op,
    ) -> Result<Session, Verdict> {
        let mut cached = self.session.lock().await;
        if let Some(s) = cached.as_ref() {
            return Ok(s.clone());
        }
        self.logins.fetch_add(1, Ordering::Relaxed);
        let ts = jiff::Timestamp::now().as_second();
        let password = self.password.as_ref().map_or("", Secret::expose);
        let body = wire::login_body(op, &self.creds, password, ts).to_string();
        let headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        let answer = super::post(http, total, &self.url(op), &headers, body.as_bytes()).await?;
        let cookies = answer
            .headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str());
        match wire::parse_login(answer.status, &answer.body, cookies) {
            Ok(s) => {
                tracing::info!(acct_id = %self.creds.acct_id, user = %self.creds.user, "logged in to Kingdee");
                *cached = Some(s.clone());
                Ok(s)
            }
            Err(e) => {
                let status = match e {
                    KingdeeError::LoginUnreadable { status, .. } => status,
                    _ => 200,
                };
                Err(auth_failed(
                    Some(status),
                    e.to_string(),
                    "check kingdee.acct_id, user, app_id and app_secret (or password) with the Kingdee administrator, then replay",
                ))
            }
        }
    }

    /// Drops `used` if it is still the cached session (one re-login for many refusals).
    async fn forget(&self, used: &Session) {
        let mut cached = self.session.lock().await;
        if cached.as_ref() == Some(used) {
            *cached = None;
        }
    }

    pub(super) async fn send(&self, http: &reqwest::Client, total: Duration, body: &[u8]) -> Sent {
        let url = self.url(Op::Save);
        let mut sent = Sent {
            method: "POST",
            url: url.clone(),
            headers: Vec::new(),
            answer: None,
            verdict: Verdict::Permanent {
                reason: String::new(),
            },
            captured: BTreeMap::new(),
            volatile: Vec::new(),
        };
        for round in 0..2 {
            let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
            let mut session = None;
            match self.spec.auth.login_op() {
                None => {
                    let ts = jiff::Timestamp::now().as_second();
                    match wire::signed_headers(&self.creds, url.path(), ts, DEFAULT_SECRET_SEED) {
                        Ok(h) => headers.extend(h.into_iter().map(|(n, v)| (n.to_owned(), v))),
                        Err(e) => {
                            // Checked at build; kept total for safety.
                            sent.verdict = Verdict::Permanent {
                                reason: e.to_string(),
                            };
                            return sent;
                        }
                    }
                }
                Some(op) => match self.session(http, total, op).await {
                    Ok(s) => {
                        headers.push(("Cookie".to_owned(), s.cookie_header()));
                        headers.push((wire::SESSION_COOKIE.to_owned(), s.id.clone()));
                        sent.volatile.push(s.id.clone());
                        sent.volatile.extend(s.aspnet.clone());
                        session = Some(s);
                    }
                    Err(v) => {
                        sent.headers = headers;
                        sent.verdict = v;
                        return sent;
                    }
                },
            }
            sent.headers = headers.clone();
            let answer = match post(http, total, &url, &headers, body).await {
                Ok(a) => a,
                Err(v) => {
                    sent.verdict = v;
                    return sent;
                }
            };
            let outcome = wire::classify(answer.status, &answer.body);
            sent.answer = Some(answer);
            if let (Outcome::Reauth { reason }, 0) = (&outcome, round) {
                tracing::info!(form_id = %self.spec.form_id, reason = %reason,
                    "Kingdee refused the session or signature; logging in again / re-signing and sending once more");
                metrics::counter!("wecom_bridge_deliver_vendor_reauth_total", "vendor" => "kingdee")
                    .increment(1);
                if let Some(s) = &session {
                    self.forget(s).await;
                }
                continue;
            }
            sent.verdict = verdict(outcome, &mut sent.captured);
            return sent;
        }
        sent
    }
}
