//! Authentication of a connector's requests: one enum, one `match`.
//!
//! None, HTTP basic, bearer, API key (header or query), OAuth2 client credentials
//! (form-encoded token request; the token is cached until shortly before it expires, fetched
//! single-flight, and refreshed once when the target answers 401) and HMAC-SHA256 request
//! signing over a configurable canonical string. Secrets are references in [`AuthSpec`] and
//! [`Secret`]s once resolved; `Debug` never prints them. Owns credentials and signing; must
//! not classify target answers (only the token endpoint's).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{Secret, SecretRef};

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyLocation {
    /// A request header.
    #[default]
    Header,
    /// A query parameter.
    Query,
}

/// How an OAuth2 client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `Authorization: Basic` (RFC 6749 §2.3.1, which servers MUST support).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// The unit of the signing timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    /// Unix seconds.
    #[default]
    UnixSeconds,
    /// Unix milliseconds.
    UnixMillis,
}

/// How the signature bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Lower-case hex.
    #[default]
    Hex,
    /// Standard Base64 of the 32 bytes.
    Base64,
    /// Base64 of the lower-case hex text (Kingdee's `HmacHex64`).
    HexBase64,
}

/// Where the nonce comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonceSource {
    /// 16 random bytes, hex.
    #[default]
    Random,
    /// The timestamp itself (Kingdee).
    Timestamp,
}

/// The `[auth]` table of a connector: secrets by reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// No authentication.
    None,
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password (reference).
        password: SecretRef,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token (reference).
        token: SecretRef,
    },
    /// An API key in a header or the query.
    ApiKey {
        /// Header or parameter name.
        name: String,
        /// The key (reference).
        value: SecretRef,
        /// Header (default) or query.
        #[serde(default)]
        location: KeyLocation,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4).
    Oauth2ClientCredentials {
        /// Token endpoint.
        token_url: SecretRef,
        /// Client id.
        client_id: String,
        /// Client secret (reference).
        client_secret: SecretRef,
        /// Scope, if the target wants one.
        scope: Option<String>,
        /// Audience, if the target wants one.
        audience: Option<String>,
        /// How the client authenticates at the token endpoint.
        #[serde(default)]
        client_auth: ClientAuth,
        /// Refresh this many seconds before the token expires (a token living less than this
        /// is fetched for every request).
        #[serde(default = "default_refresh_early")]
        refresh_early_secs: u64,
    },
    /// HMAC-SHA256 over a canonical string built from the request.
    HmacSha256 {
        /// The signing key (reference).
        secret: SecretRef,
        /// A key id sent beside the signature, if the target wants one.
        key_id: Option<String>,
        /// The canonical string; see [`PLACEHOLDERS`].
        canonical: String,
        /// Timestamp unit.
        #[serde(default)]
        timestamp: TimestampUnit,
        /// Nonce source.
        #[serde(default)]
        nonce: NonceSource,
        /// Output encoding.
        #[serde(default)]
        encoding: SignatureEncoding,
        /// Header carrying the signature.
        #[serde(default = "default_signature_header")]
        signature_header: String,
        /// Text before the signature in its header (e.g. `"HMAC-SHA256 "`).
        #[serde(default)]
        signature_prefix: String,
        /// Header carrying the timestamp.
        #[serde(default = "default_timestamp_header")]
        timestamp_header: String,
        /// Header carrying the nonce.
        #[serde(default = "default_nonce_header")]
        nonce_header: String,
        /// Header carrying the key id.
        #[serde(default = "default_key_id_header")]
        key_id_header: String,
    },
}

fn default_refresh_early() -> u64 {
    30
}
fn default_signature_header() -> String {
    "X-Signature".into()
}
fn default_timestamp_header() -> String {
    "X-Timestamp".into()
}
fn default_nonce_header() -> String {
    "X-Nonce".into()
}
fn default_key_id_header() -> String {
    "X-Key-Id".into()
}

/// Placeholders a canonical string may use.
pub const PLACEHOLDERS: &[&str] = &[
    "method",
    "path",
    "path_encoded",
    "query",
    "host",
    "timestamp",
    "nonce",
    "body_sha256",
    "body_sha256_base64",
    "key_id",
];

impl AuthSpec {
    /// What is wrong with this auth table (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut by_reference = |what: &str, r: &SecretRef| {
            if r.is_literal() {
                out.push(format!(
                    "auth.{what} is written in the file; give it by reference (`env:NAME` or `file:PATH`) so it stays out of the repository"
                ));
            }
        };
        match self {
            AuthSpec::None => {}
            AuthSpec::Basic { password, .. } => by_reference("password", password),
            AuthSpec::Bearer { token } => by_reference("token", token),
            AuthSpec::ApiKey { name, value, .. } => {
                by_reference("value", value);
                if name.is_empty() {
                    out.push("auth.name (the header or parameter name) is empty".into());
                }
            }
            AuthSpec::Oauth2ClientCredentials {
                token_url,
                client_secret,
                ..
            } => {
                by_reference("client_secret", client_secret);
                if let SecretRef::Literal(u) = token_url
                    && !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
                {
                    out.push(format!("auth.token_url `{u}` is not an http(s) URL"));
                }
            }
            AuthSpec::HmacSha256 {
                secret,
                canonical,
                signature_header,
                timestamp_header,
                nonce_header,
                key_id_header,
                ..
            } => {
                by_reference("secret", secret);
                if let Err(m) = render(canonical, |_| Some(String::new())) {
                    out.push(format!("auth.canonical: {m}"));
                }
                for h in [
                    signature_header,
                    timestamp_header,
                    nonce_header,
                    key_id_header,
                ] {
                    if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        out.push(format!("auth: `{h}` is not a valid header name"));
                    }
                }
            }
        }
        out
    }
}

/// Fills `{name}` placeholders (`{{`/`}}` for literal braces). Unknown names are an error.
fn render(template: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            out.push('{');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("}}") {
            out.push('}');
            rest = t;
        } else if let Some(t) = tail.strip_prefix('{') {
            let end = t.find('}').ok_or("a `{` is not closed")?;
            let name = &t[..end];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder `{{{name}}}`; known: {}",
                    PLACEHOLDERS.join(", ")
                ));
            }
            out.push_str(&value(name).unwrap_or_default());
            rest = &t[end + 1..];
        } else {
            return Err("a `}` has no `{`; write `}}` for a literal brace".into());
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The parts of a request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// The URL.
    pub url: &'a url::Url,
    /// The body bytes.
    pub body: &'a [u8],
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// A fresh random nonce (used when the nonce source is random).
    pub random_nonce: &'a str,
}

/// An HMAC-SHA256 signer, resolved.
pub struct HmacSigner {
    secret: Secret,
    key_id: Option<String>,
    canonical: String,
    timestamp: TimestampUnit,
    nonce: NonceSource,
    encoding: SignatureEncoding,
    signature_header: String,
    signature_prefix: String,
    timestamp_header: String,
    nonce_header: String,
    key_id_header: String,
}

impl std::fmt::Debug for HmacSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSigner")
            .field("key_id", &self.key_id)
            .field("canonical", &self.canonical)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length (RFC 2104 hashes long ones), so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

impl HmacSigner {
    /// The canonical string for a request (exposed for tests and `check`).
    pub fn canonical_string(&self, input: &SigningInput<'_>) -> (String, String, String) {
        let ts = match self.timestamp {
            TimestampUnit::UnixSeconds => (input.now_ms.div_euclid(1000)).to_string(),
            TimestampUnit::UnixMillis => input.now_ms.to_string(),
        };
        let nonce = match self.nonce {
            NonceSource::Random => input.random_nonce.to_owned(),
            NonceSource::Timestamp => ts.clone(),
        };
        let body_hash = Sha256::digest(input.body);
        let canonical = render(&self.canonical, |name| {
            Some(match name {
                "method" => input.method.to_owned(),
                "path" => input.url.path().to_owned(),
                "path_encoded" => url::form_urlencoded::byte_serialize(input.url.path().as_bytes())
                    .collect::<String>()
                    .replace('+', "%20"),
                "query" => input.url.query().unwrap_or("").to_owned(),
                "host" => input.url.host_str().unwrap_or("").to_owned(),
                "timestamp" => ts.clone(),
                "nonce" => nonce.clone(),
                "body_sha256" => hex::encode(body_hash),
                "body_sha256_base64" => BASE64.encode(body_hash),
                "key_id" => self.key_id.clone().unwrap_or_default(),
                _ => return None,
            })
        })
        // The template was checked at load (`AuthSpec::problems`).
        .unwrap_or_default();
        (canonical, ts, nonce)
    }

    /// The headers to add to a request.
    pub fn headers(&self, input: &SigningInput<'_>) -> Vec<(String, String)> {
        let (canonical, ts, nonce) = self.canonical_string(input);
        let mac = hmac_sha256(self.secret.expose().as_bytes(), canonical.as_bytes());
        let sig = match self.encoding {
            SignatureEncoding::Hex => hex::encode(mac),
            SignatureEncoding::Base64 => BASE64.encode(mac),
            SignatureEncoding::HexBase64 => BASE64.encode(hex::encode(mac)),
        };
        let mut out = vec![
            (
                self.signature_header.clone(),
                format!("{}{sig}", self.signature_prefix),
            ),
            (self.timestamp_header.clone(), ts),
            (self.nonce_header.clone(), nonce),
        ];
        if let Some(k) = &self.key_id {
            out.push((self.key_id_header.clone(), k.clone()));
        }
        out
    }

    /// The signature header's name (redacted in records).
    pub fn signature_header(&self) -> &str {
        &self.signature_header
    }
}

/// Why no credentials could be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The token endpoint could not be reached or failed (retryable).
    #[error("token endpoint unreachable or failing: {0}")]
    Unavailable(String),
    /// The token endpoint refused the credentials or answered nonsense (permanent until an
    /// operator fixes the credentials).
    #[error("token endpoint refused: {0}")]
    Refused(String),
}

#[derive(Clone)]
struct CachedToken {
    value: Secret,
    fresh_until: Instant,
}

/// An OAuth2 client-credentials token source with a single-flight cache.
pub struct OAuth2Client {
    token_url: url::Url,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    audience: Option<String>,
    client_auth: ClientAuth,
    refresh_early: Duration,
    cache: tokio::sync::Mutex<Option<CachedToken>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for OAuth2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Client")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

impl OAuth2Client {
    /// A valid token: the cached one, or a new one (one fetch at a time; callers that wait
    /// meanwhile get the fetched token).
    pub async fn token(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Secret, AuthFailure> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.as_ref()
            && t.fresh_until > Instant::now()
        {
            return Ok(t.value.clone());
        }
        let fetched = self.fetch(http, timeout).await?;
        let value = fetched.value.clone();
        *cache = Some(fetched);
        Ok(value)
    }

    /// Drops `used` from the cache after the target refused it (401), unless another request
    /// already replaced it.
    pub async fn invalidate(&self, used: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|t| &t.value == used) {
            *cache = None;
        }
    }

    /// Token requests made so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &url::Url {
        &self.token_url
    }

    /// The token request, exactly as [`OAuth2Client::token`] sends it (also used by
    /// `crate::deliver::probe`, so that a probe tests what deliveries will do). Uncached.
    pub fn token_request(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(s) = &self.scope {
            form.append_pair("scope", s);
        }
        if let Some(a) = &self.audience {
            form.append_pair("audience", a);
        }
        let mut req = http
            .post(self.token_url.clone())
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        match self.client_auth {
            ClientAuth::Basic => {
                req = req.basic_auth(&self.client_id, Some(self.client_secret.expose()));
            }
            ClientAuth::Post => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", self.client_secret.expose());
            }
        }
        req.body(form.finish())
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<CachedToken, AuthFailure> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let req = self.token_request(http, timeout);
        let started = Instant::now();
        let answer = req.send().await.map_err(|e| {
            metrics::counter!("wecom_bridge_deliver_token_failures_total", "reason" => "unreachable").increment(1);
            AuthFailure::Unavailable(e.without_url().to_string())
        })?;
        let status = answer.status().as_u16();
        let body = answer
            .bytes()
            .await
            .map_err(|e| AuthFailure::Unavailable(e.without_url().to_string()))?;
        let parsed: Option<TokenAnswer> = serde_json::from_slice(&body).ok();
        if status >= 500 || status == 429 {
            metrics::counter!("wecom_bridge_deliver_token_failures_total", "reason" => "server")
                .increment(1);
            return Err(AuthFailure::Unavailable(format!("HTTP {status}")));
        }
        let Some(t) = parsed else {
            metrics::counter!("wecom_bridge_deliver_token_failures_total", "reason" => "refused")
                .increment(1);
            return Err(AuthFailure::Refused(format!(
                "HTTP {status}, not a token answer: {}",
                super::classify::excerpt(&body)
            )));
        };
        match (status, t.access_token) {
            (200..=299, Some(token)) if !token.is_empty() => {
                let lifetime = t
                    .expires_in
                    .as_ref()
                    .and_then(|v| super::predicate::scalar_text(v)?.parse::<f64>().ok())
                    .map_or(Duration::from_secs(3600), |s| {
                        Duration::from_secs_f64(s.max(0.0))
                    });
                let early = self.refresh_early.min(lifetime);
                Ok(CachedToken {
                    value: Secret::new(token),
                    fresh_until: started + lifetime.saturating_sub(early),
                })
            }
            _ => {
                metrics::counter!("wecom_bridge_deliver_token_failures_total", "reason" => "refused").increment(1);
                Err(AuthFailure::Refused(format!(
                    "HTTP {status}: {} {}",
                    t.error.unwrap_or_else(|| "no access_token".into()),
                    t.error_description.unwrap_or_default()
                )))
            }
        }
    }
}

/// Credentials of a built connector.
#[derive(Debug)]
pub enum Auth {
    /// None.
    None,
    /// A fixed `Authorization` header value (basic or bearer).
    Header(Secret),
    /// An API key.
    ApiKey {
        /// Header or parameter name.
        name: String,
        /// The key.
        value: Secret,
        /// Where it goes.
        location: KeyLocation,
    },
    /// OAuth2 client credentials.
    OAuth2(OAuth2Client),
    /// HMAC-SHA256 signing.
    Hmac(HmacSigner),
}

/// A secret could not be read.
#[derive(Debug, thiserror::Error)]
#[error("auth.{field}: {detail}")]
pub struct ResolveError {
    /// Which key.
    pub field: &'static str,
    /// What went wrong (never the value).
    pub detail: String,
}

fn resolve(field: &'static str, r: &SecretRef) -> Result<Secret, ResolveError> {
    r.resolve().map_err(|e| ResolveError {
        field,
        detail: e.to_string(),
    })
}

impl Auth {
    /// Resolves the secrets of `spec`.
    pub fn build(spec: &AuthSpec) -> Result<Auth, ResolveError> {
        Ok(match spec {
            AuthSpec::None => Auth::None,
            AuthSpec::Basic { username, password } => {
                let pw = resolve("password", password)?;
                Auth::Header(Secret::new(format!(
                    "Basic {}",
                    BASE64.encode(format!("{username}:{}", pw.expose()))
                )))
            }
            AuthSpec::Bearer { token } => Auth::Header(Secret::new(format!(
                "Bearer {}",
                resolve("token", token)?.expose()
            ))),
            AuthSpec::ApiKey {
                name,
                value,
                location,
            } => Auth::ApiKey {
                name: name.clone(),
                value: resolve("value", value)?,
                location: *location,
            },
            AuthSpec::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
                client_auth,
                refresh_early_secs,
            } => {
                let raw = resolve("token_url", token_url)?;
                let token_url = url::Url::parse(raw.expose()).map_err(|e| ResolveError {
                    field: "token_url",
                    detail: format!("not a URL: {e}"),
                })?;
                Auth::OAuth2(OAuth2Client {
                    token_url,
                    client_id: client_id.clone(),
                    client_secret: resolve("client_secret", client_secret)?,
                    scope: scope.clone(),
                    audience: audience.clone(),
                    client_auth: *client_auth,
                    refresh_early: Duration::from_secs(*refresh_early_secs),
                    cache: tokio::sync::Mutex::new(None),
                    fetches: AtomicU64::new(0),
                })
            }
            AuthSpec::HmacSha256 {
                secret,
                key_id,
                canonical,
                timestamp,
                nonce,
                encoding,
                signature_header,
                signature_prefix,
                timestamp_header,
                nonce_header,
                key_id_header,
            } => Auth::Hmac(HmacSigner {
                secret: resolve("secret", secret)?,
                key_id: key_id.clone(),
                canonical: canonical.clone(),
                timestamp: *timestamp,
                nonce: *nonce,
                encoding: *encoding,
                signature_header: signature_header.clone(),
                signature_prefix: signature_prefix.clone(),
                timestamp_header: timestamp_header.clone(),
                nonce_header: nonce_header.clone(),
                key_id_header: key_id_header.clone(),
            }),
        })
    }

    /// Secret values that must never appear in a record (scrubbed wherever found).
    pub fn static_secrets(&self) -> Vec<String> {
        match self {
            Auth::None | Auth::Hmac(_) => Vec::new(),
            Auth::Header(v) => {
                let v = v.expose();
                let bare = v.split_once(' ').map_or(v, |(_, b)| b);
                vec![v.to_owned(), bare.to_owned()]
            }
            Auth::ApiKey { value, .. } => vec![value.expose().to_owned()],
            Auth::OAuth2(c) => vec![c.client_secret.expose().to_owned()],
        }
    }

    /// Header names whose values are secret, besides the usual ones.
    pub fn secret_headers(&self) -> Vec<String> {
        match self {
            Auth::ApiKey {
                name,
                location: KeyLocation::Header,
                ..
            } => vec![name.to_ascii_lowercase()],
            Auth::Hmac(s) => vec![s.signature_header().to_ascii_lowercase()],
            _ => Vec::new(),
        }
    }

    /// Query parameters whose values are secret.
    pub fn secret_query(&self) -> Option<&str> {
        match self {
            Auth::ApiKey {
                name,
                location: KeyLocation::Query,
                ..
            } => Some(name),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
