//! `kind = "yonbip"`: the `[yonbip]` table and the YonBIP connector state.
//!
//! The access token comes from a signed GET (HMAC-SHA256 over `appKey…timestamp…`), is cached
//! for its lifetime (2 h) minus a margin, fetched one at a time (single-flight), carried in the
//! query string (`access_token`), and fetched anew once when the gateway says `非法token`.
//! With `tenant_id` set, the connector's `url` is the discovery host and the tenant's
//! gateway and token addresses are discovered first (and kept).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::{Problems, Sent, auth_failed, by_reference, get, post, resolve, verdict};
use crate::config::{Secret, SecretRef};
use crate::deliver::Verdict;
use crate::deliver::vendor::Outcome;
use crate::deliver::vendor::yonbip::{
    self as wire, ADD_VOUCHER_PATH, GATEWAY_PATH, Gateways, TOKEN_PATH, YonbipError,
};

/// `[yonbip]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YonbipFile {
    app_key: Spanned<String>,
    app_secret: Spanned<String>,
    #[serde(default = "default_path")]
    path: Spanned<String>,
    tenant_id: Option<String>,
    token_url: Option<Spanned<String>>,
    #[serde(default = "default_business_key")]
    business_key: Spanned<String>,
    #[serde(default = "default_refresh_early")]
    refresh_early_secs: u64,
}

fn default_path() -> Spanned<String> {
    Spanned::new(0..0, ADD_VOUCHER_PATH.to_owned())
}
fn default_business_key() -> Spanned<String> {
    Spanned::new(0..0, "/businessId".to_owned())
}
fn default_refresh_early() -> u64 {
    300
}

/// `[yonbip]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct YonbipSpec {
    /// The app key (应用 appKey).
    pub app_key: String,
    /// The app secret, by reference.
    pub app_secret: SecretRef,
    /// The API path under the gateway (default: `addVoucher`).
    pub path: String,
    /// The tenant id, when the gateway is discovered.
    pub tenant_id: Option<String>,
    /// The token host, when not the connector's URL (nor discovered).
    pub token_url: Option<url::Url>,
    /// JSON pointer of the business key (`businessId`, ≤ 32 characters) in the document.
    pub business_key: String,
    /// Fetch a new token this long before the old one expires.
    pub refresh_early: Duration,
}

/// Validates `[yonbip]`.
pub fn validate(t: Spanned<YonbipFile>, errs: &mut Problems) -> Option<YonbipSpec> {
    let f = t.into_inner();
    let before = errs.len();
    if f.app_key.get_ref().trim().is_empty() {
        errs.push((Some(f.app_key.span()), "yonbip.app_key is empty".into()));
    }
    let app_secret = by_reference("yonbip.app_secret", &f.app_secret, errs);
    if !f.path.get_ref().starts_with('/') {
        errs.push((
            Some(f.path.span()),
            format!(
                "yonbip.path `{}` must start with / (e.g. `{ADD_VOUCHER_PATH}`)",
                f.path.get_ref()
            ),
        ));
    }
    if !f.business_key.get_ref().starts_with('/') {
        errs.push((
            Some(f.business_key.span()),
            "yonbip.business_key must be a JSON pointer, e.g. `/businessId`".into(),
        ));
    }
    let token_url = f
        .token_url
        .as_ref()
        .and_then(|u| match url::Url::parse(u.get_ref()) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Some(parsed),
            _ => {
                errs.push((
                    Some(u.span()),
                    format!("yonbip.token_url `{}` is not an http(s) URL", u.get_ref()),
                ));
                None
            }
        });
    (errs.len() == before).then(|| YonbipSpec {
        app_key: f.app_key.into_inner(),
        app_secret,
        path: f.path.into_inner(),
        tenant_id: f.tenant_id,
        token_url,
        business_key: f.business_key.into_inner(),
        refresh_early: Duration::from_secs(f.refresh_early_secs),
    })
}

struct Cached {
    token: Secret,
    fresh_until: Instant,
}

#[derive(Default)]
struct State {
    gateways: Option<Gateways>,
    token: Option<Cached>,
}

/// A built YonBIP connector: secret resolved, token cached.
pub struct YonbipClient {
    spec: YonbipSpec,
    app_secret: Secret,
    base: url::Url,
    state: tokio::sync::Mutex<State>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for YonbipClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YonbipClient")
            .field("app_key", &self.spec.app_key)
            .field("path", &self.spec.path)
            .finish_non_exhaustive()
    }
}

fn join(base: &str, path: &str) -> Result<url::Url, String> {
    url::Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|e| format!("YonBIP address `{base}` is not a URL: {e}"))
}

impl YonbipClient {
    /// Resolves and checks the app secret.
    ///
    /// # Errors
    /// A secret that cannot be read or is empty.
    pub fn build(spec: &YonbipSpec, base: &url::Url) -> Result<YonbipClient, String> {
        let app_secret = resolve("yonbip.app_secret", &spec.app_secret)?;
        Ok(YonbipClient {
            spec: spec.clone(),
            app_secret,
            base: base.clone(),
            state: tokio::sync::Mutex::new(State::default()),
            fetches: AtomicU64::new(0),
        })
    }

    fn base_str(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    pub(super) fn document_url(&self) -> url::Url {
        join(&self.base_str(), &self.spec.path).unwrap_or_else(|_| self.base.clone())
    }

    pub(super) fn token_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub(super) fn static_secrets(&self) -> Vec<String> {
        vec![self.app_secret.expose().to_owned()]
    }

    /// The document as JSON, after checking its business key (≤ 32 characters).
    pub(super) fn encode(&self, document: &Value) -> Result<Vec<u8>, String> {
        if let Some(key) = document
            .pointer(&self.spec.business_key)
            .and_then(Value::as_str)
        {
            wire::resubmit_check_key(key).map_err(|e| e.to_string())?;
        }
        serde_json::to_vec(document).map_err(|e| e.to_string())
    }

    /// Gateway and token addresses: discovered (once) with `tenant_id`, else configured.
    async fn gateways(
        &self,
        state: &mut State,
        http: &reqwest::Client,
        total: Duration,
    ) -> Result<Gateways, Verdict> {
        if let Some(g) = &state.gateways {
            return Ok(g.clone());
        }
        let g = match &self.spec.tenant_id {
            None => Gateways {
                gateway_url: self.base_str(),
                token_url: self.spec.token_url.as_ref().map_or_else(
                    || self.base_str(),
                    |u| u.as_str().trim_end_matches('/').to_owned(),
                ),
            },
            Some(tenant) => {
                let mut url = join(&self.base_str(), GATEWAY_PATH)
                    .map_err(|reason| Verdict::Permanent { reason })?;
                url.query_pairs_mut().append_pair("tenantId", tenant);
                let a = get(http, total, &url).await?;
                wire::parse_gateways(a.status, &a.body).map_err(|e| {
                    auth_failed(
                        Some(a.status),
                        format!("YonBIP gateway discovery: {e}"),
                        "check yonbip.tenant_id and the connector url (the discovery host)",
                    )
                })?
            }
        };
        state.gateways = Some(g.clone());
        Ok(g)
    }

    /// A valid token and the gateway address (one fetch at a time; waiters reuse it).
    async fn token(
        &self,
        http: &reqwest::Client,
        total: Duration,
    ) -> Result<(Secret, String), Verdict> {
        let mut state = self.state.lock().await;
        let g = self.gateways(&mut state, http, total).await?;
        if let Some(t) = &state.token
            && t.fresh_until > Instant::now()
        {
            return Ok((t.token.clone(), g.gateway_url));
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut url =
            join(&g.token_url, TOKEN_PATH).map_err(|reason| Verdict::Permanent { reason })?;
        let ts = jiff::Timestamp::now().as_millisecond();
        url.query_pairs_mut().extend_pairs(wire::token_query(
            &self.spec.app_key,
            self.app_secret.expose(),
            ts,
        ));
        let a = get(http, total, &url).await?;
        match wire::parse_token(a.status, &a.body) {
            Ok(t) => {
                let life = t.expires_in.saturating_sub(self.spec.refresh_early);
                let token = Secret::new(t.access_token);
                state.token = Some(Cached {
                    token: token.clone(),
                    fresh_until: Instant::now() + life,
                });
                Ok((token, g.gateway_url))
            }
            Err(e) => {
                let status = match &e {
                    YonbipError::Unreadable { status, .. } => *status,
                    _ => a.status,
                };
                Err(auth_failed(
                    Some(status),
                    format!("YonBIP token request: {e}"),
                    "check yonbip.app_key and yonbip.app_secret with the YonBIP administrator (and this server's clock)",
                ))
            }
        }
    }

    /// Drops `used` if it is still the cached token.
    async fn forget(&self, used: &Secret) {
        let mut state = self.state.lock().await;
        if state.token.as_ref().is_some_and(|t| &t.token == used) {
            state.token = None;
        }
    }

    pub(super) async fn send(&self, http: &reqwest::Client, total: Duration, body: &[u8]) -> Sent {
        let mut sent = Sent {
            method: "POST",
            url: self.document_url(),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            answer: None,
            verdict: Verdict::Permanent {
                reason: String::new(),
            },
            captured: BTreeMap::new(),
            volatile: Vec::new(),
        };
        for round in 0..2 {
            let (token, gateway) = match self.token(http, total).await {
                Ok(t) => t,
                Err(v) => {
                    sent.verdict = v;
                    return sent;
                }
            };
            sent.volatile.push(token.expose().to_owned());
            let mut url = match join(&gateway, &self.spec.path) {
                Ok(u) => u,
                Err(reason) => {
                    sent.verdict = Verdict::Permanent { reason };
                    return sent;
                }
            };
            url.query_pairs_mut()
                .append_pair("access_token", token.expose());
            sent.url = url.clone();
            let answer = match post(http, total, &url, &sent.headers, body).await {
                Ok(a) => a,
                Err(v) => {
                    sent.verdict = v;
                    return sent;
                }
            };
            let outcome = wire::classify(answer.status, &answer.body);
            sent.answer = Some(answer);
            if let (Outcome::Reauth { reason }, 0) = (&outcome, round) {
                tracing::info!(reason = %reason, "YonBIP refused the token; fetching a new one and sending once more");
                metrics::counter!("wecom_bridge_deliver_vendor_reauth_total", "vendor" => "yonbip")
                    .increment(1);
                self.forget(&token).await;
                continue;
            }
            sent.verdict = verdict(outcome, &mut sent.captured);
            return sent;
        }
        sent
    }
}
