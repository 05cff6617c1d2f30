//! The HTTP connector: builds a [`Connector`] from a spec with its secrets resolved, and sends
//! one document per [`Connector::send`].
//!
//! One send = encode → idempotency carriers → wait for a slot (concurrency, rate) → auth →
//! request → read the answer (capped) → classify → capture → redact for the record. With
//! OAuth2 a 401 drops the token and the request is sent once more with a fresh one. Owns the
//! exchange with the target; must not retry beyond that (the deliver stage retries through the
//! broker) nor write the record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::{Auth, AuthFailure, ResolveError, SigningInput};
use super::classify::{TransportFailure, classify, parse_body, transport_verdict};
use super::encode::encode;
use super::predicate::AnswerView;
use super::redact::Redactor;
use super::spec::{ConnectorSpec, Method};
use super::vendor::client::VendorClient;
use super::{Attempt, Outgoing, RecordedRequest, RecordedResponse, Verdict};
use crate::config::Secret;

/// Largest answer read from a target; a longer one is cut and not understood.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Why a connector cannot be built from its spec.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A secret could not be read.
    #[error("connector `{connector}`: {source}")]
    Secret {
        /// Connector name.
        connector: String,
        /// Which secret and why.
        source: ResolveError,
    },
    /// The resolved URL is unusable.
    #[error("connector `{connector}`: url {detail}")]
    Url {
        /// Connector name.
        connector: String,
        /// What is wrong.
        detail: String,
    },
    /// A vendor setting or secret is missing or malformed (`[kingdee]`, `[yonbip]`, …).
    #[error("connector `{connector}`: {detail}")]
    Vendor {
        /// Connector name.
        connector: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The HTTP client could not be built.
    #[error("connector `{connector}`: HTTP client: {detail}")]
    Client {
        /// Connector name.
        connector: String,
        /// What is wrong.
        detail: String,
    },
}

/// A built connector, ready to send. Cheap to share behind an `Arc`.
pub struct Connector {
    spec: Arc<ConnectorSpec>,
    url: url::Url,
    http: reqwest::Client,
    auth: Auth,
    vendor: Option<VendorClient>,
    limits: super::limits::Limits,
    redactor: Redactor,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.spec.name)
            .field("auth", &self.auth)
            .field("vendor", &self.vendor)
            .finish_non_exhaustive()
    }
}

/// An answer as read off the wire.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// Body, capped at [`MAX_ANSWER_BYTES`].
    pub body: Vec<u8>,
    /// Whether the body was cut at the cap.
    pub truncated: bool,
}

impl Answer {
    /// The body parsed as its `content-type` says.
    fn parsed_body(&self) -> super::predicate::Body {
        let content_type = self
            .headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.as_str());
        parse_body(content_type, &self.body, self.truncated)
    }
}

/// What one exchange produced.
struct Exchange {
    url: url::Url,
    headers: Vec<(String, String)>,
    token: Option<Secret>,
    outcome: Result<Answer, Verdict>,
}

impl Connector {
    /// Resolves the secrets of `spec` and builds its HTTP client.
    pub fn build(spec: ConnectorSpec) -> Result<Connector, BuildError> {
        let name = spec.name.clone();
        let raw_url = spec.url.resolve().map_err(|e| BuildError::Url {
            connector: name.clone(),
            detail: format!("cannot be read: {e}"),
        })?;
        let url = url::Url::parse(raw_url.expose().trim()).map_err(|e| BuildError::Url {
            connector: name.clone(),
            detail: format!("is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BuildError::Url {
                connector: name,
                detail: "must be http or https".into(),
            });
        }
        let auth = Auth::build(&spec.auth).map_err(|source| BuildError::Secret {
            connector: name.clone(),
            source,
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(spec.timeouts.connect)
            .timeout(spec.timeouts.total)
            .pool_max_idle_per_host(spec.concurrency as usize)
            .user_agent(concat!("wecom-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Client {
                connector: name,
                detail: e.to_string(),
            })?;
        let vendor = match &spec.vendor {
            None => None,
            Some(v) => Some(
                VendorClient::build(v, &url).map_err(|detail| BuildError::Vendor {
                    connector: spec.name.clone(),
                    detail,
                })?,
            ),
        };
        let mut secrets = auth.static_secrets();
        let mut secret_headers = auth.secret_headers();
        if let Some(v) = &vendor {
            secrets.extend(v.static_secrets());
            secret_headers.extend(v.secret_headers());
        }
        let mut secret_query: Vec<String> =
            auth.secret_query().map(str::to_owned).into_iter().collect();
        secret_query.extend(["access_token", "token", "sign", "signature"].map(String::from));
        let redactor = Redactor::new(
            secrets,
            secret_headers,
            secret_query,
            spec.redact.clone(),
            spec.record_body_limit,
        );
        Ok(Connector {
            limits: super::limits::Limits::new(spec.concurrency, spec.rate_per_sec),
            spec: Arc::new(spec),
            url,
            http,
            auth,
            vendor,
            redactor,
        })
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &ConnectorSpec {
        &self.spec
    }

    /// The vendor protocol's client (its token and session state), for `kind`s other than
    /// `http`.
    pub fn vendor(&self) -> Option<&VendorClient> {
        self.vendor.as_ref()
    }

    /// Token requests or logins made so far (OAuth2, or the vendor protocol's; 0 for other
    /// auth kinds).
    pub fn token_fetches(&self) -> u64 {
        if let Some(v) = &self.vendor {
            return v.auth_requests();
        }
        match &self.auth {
            Auth::OAuth2(c) => c.fetches(),
            _ => 0,
        }
    }

    /// The document as sent: the vendor envelope, or the `[body]` encoding.
    fn encode(&self, document: &serde_json::Value) -> Result<Vec<u8>, String> {
        match &self.vendor {
            Some(v) => v.encode(document),
            None => encode(&self.spec.body, document).map_err(|e| e.to_string()),
        }
    }

    /// Sends one document and says what became of it. Never fails: every outcome, including
    /// a document the connector cannot encode, is a [`Verdict`] in the returned [`Attempt`].
    pub async fn send(&self, out: &Outgoing<'_>) -> Attempt {
        let started_at_ms = jiff::Timestamp::now().as_millisecond();
        let t0 = Instant::now();
        let method = self.spec.method.as_str();
        let encoded = self.encode(out.document);
        // Without redacted fields the recorded body is the body sent: encoded once.
        let (body_text, body_truncated) = if self.redactor.has_fields() {
            let recorded = self
                .encode(&self.redactor.document(out.document))
                .unwrap_or_default();
            self.redactor.body(&recorded, &[])
        } else {
            let sent = encoded.as_deref().unwrap_or_default();
            self.redactor.body(sent, &[])
        };
        let target_url = self
            .vendor
            .as_ref()
            .map_or_else(|| self.url.clone(), VendorClient::document_url);
        let mut request = RecordedRequest {
            method: method.to_owned(),
            url: self.redactor.url(&target_url, &[]),
            headers: self.redactor.headers(&self.base_headers(out), &[]),
            body: body_text,
            body_truncated,
        };
        let finish = |verdict: Verdict, request: RecordedRequest, response, captured| {
            let duration = t0.elapsed();
            metrics::counter!("wecom_bridge_deliver_attempts_total", "connector" => self.spec.name.clone(), "verdict" => verdict.as_str()).increment(1);
            metrics::histogram!("wecom_bridge_deliver_request_seconds", "connector" => self.spec.name.clone()).record(duration.as_secs_f64());
            match &verdict {
                Verdict::Retryable { reason, .. } => tracing::warn!(
                    connector = %self.spec.name, business_key = out.business_key, reason = %reason,
                    hint = "the target failed or is busy; the job is retried on the broker's schedule",
                    "delivery attempt failed"
                ),
                Verdict::Permanent { reason } => tracing::warn!(
                    connector = %self.spec.name, business_key = out.business_key, reason = %reason,
                    hint = "fix the document, mapping or connector, then replay the dead letter",
                    "delivery refused"
                ),
                _ => {
                    tracing::debug!(connector = %self.spec.name, business_key = out.business_key, verdict = verdict.as_str(), "delivery attempt")
                }
            }
            Attempt {
                verdict,
                started_at_ms,
                duration,
                request,
                response,
                captured,
            }
        };

        if let Some(field) = &self.spec.idempotency.field {
            let filled = out
                .document
                .pointer(field)
                .and_then(super::predicate::scalar_text)
                .is_some_and(|t| !t.trim().is_empty());
            if !filled {
                let reason = format!(
                    "the document has no `{field}`, which carries the business key to the target; the mapping must fill it (e.g. with `{}`)",
                    out.business_key
                );
                return finish(
                    Verdict::Permanent { reason },
                    request,
                    None,
                    BTreeMap::new(),
                );
            }
        }
        let body = match encoded {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                let reason = format!("cannot encode the document: {e}");
                return finish(
                    Verdict::Permanent { reason },
                    request,
                    None,
                    BTreeMap::new(),
                );
            }
        };
        if self.spec.dry_run {
            return finish(Verdict::DryRun, request, None, BTreeMap::new());
        }

        let _slot = self.limits.acquire().await;
        if let Some(vendor) = &self.vendor {
            let sent = vendor
                .send(&self.http, self.spec.timeouts.total, &body)
                .await;
            let extra: Vec<&str> = sent.volatile.iter().map(String::as_str).collect();
            request.method = sent.method.to_owned();
            request.url = self.redactor.url(&sent.url, &extra);
            request.headers = self.redactor.headers(&sent.headers, &extra);
            let Some(answer) = sent.answer else {
                return finish(sent.verdict, request, None, sent.captured);
            };
            let mut captured = sent.captured;
            let response = self.recorded_answer(&answer, &sent.verdict, &extra, &mut captured);
            return finish(sent.verdict, request, Some(response), captured);
        }
        let mut exchange = self.exchange(out, &body).await;
        if let (Auth::OAuth2(client), Ok(Answer { status: 401, .. }), Some(token)) =
            (&self.auth, &exchange.outcome, &exchange.token)
        {
            tracing::info!(connector = %self.spec.name, "target refused the OAuth2 token (401); fetching a new one and sending once more");
            metrics::counter!("wecom_bridge_deliver_token_refreshed_on_401_total", "connector" => self.spec.name.clone()).increment(1);
            client.invalidate(token).await;
            exchange = self.exchange(out, &body).await;
        }
        let token = exchange.token.as_ref().map(|t| t.expose().to_owned());
        let extra: Vec<&str> = token.iter().map(String::as_str).collect();
        request.url = self.redactor.url(&exchange.url, &extra);
        request.headers = self.redactor.headers(&exchange.headers, &extra);
        let answer = match exchange.outcome {
            Ok(a) => a,
            Err(verdict) => return finish(verdict, request, None, BTreeMap::new()),
        };
        let parsed = answer.parsed_body();
        let view = AnswerView {
            status: answer.status,
            headers: &answer.headers,
            body: &parsed,
        };
        let verdict = classify(
            &self.spec.answers,
            &view,
            &answer.body,
            jiff::Timestamp::now(),
        );
        let mut captured = BTreeMap::new();
        let response = self.recorded_answer(&answer, &verdict, &extra, &mut captured);
        finish(verdict, request, Some(response), captured)
    }

    /// The answer as recorded (redacted), and the configured captures of a delivered one
    /// added to `captured` (values already there win).
    fn recorded_answer(
        &self,
        answer: &Answer,
        verdict: &Verdict,
        extra: &[&str],
        captured: &mut BTreeMap<String, serde_json::Value>,
    ) -> RecordedResponse {
        let parsed = answer.parsed_body();
        if verdict.is_delivered() {
            let view = AnswerView {
                status: answer.status,
                headers: &answer.headers,
                body: &parsed,
            };
            for (name, at) in &self.spec.capture {
                if !captured.contains_key(name)
                    && let Some(v) = view.read(at)
                {
                    captured.insert(name.clone(), v);
                }
            }
        }
        let recorded = match (&parsed, self.redactor.has_fields()) {
            (super::predicate::Body::Json(v), true) => {
                serde_json::to_vec(&self.redactor.document(v)).unwrap_or_default()
            }
            _ => answer.body.clone(),
        };
        let (body, body_truncated) = self.redactor.body(&recorded, extra);
        RecordedResponse {
            status: answer.status,
            headers: self.redactor.headers(&answer.headers, extra),
            body,
            body_truncated: body_truncated || answer.truncated,
        }
    }

    /// Static headers, content type and the idempotency header.
    fn base_headers(&self, out: &Outgoing<'_>) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = self.spec.headers.clone();
        h.push(("Content-Type".into(), self.spec.body.content_type().into()));
        if let Some(name) = &self.spec.idempotency.header {
            h.push((name.clone(), out.idempotency_key.to_owned()));
        }
        h
    }

    async fn exchange(&self, out: &Outgoing<'_>, body: &bytes::Bytes) -> Exchange {
        let mut url = self.url.clone();
        let mut headers = self.base_headers(out);
        let mut token = None;
        match &self.auth {
            Auth::None => {}
            Auth::Header(v) => headers.push(("Authorization".into(), v.expose().to_owned())),
            Auth::ApiKey {
                name,
                value,
                location,
            } => match location {
                super::auth::KeyLocation::Header => {
                    headers.push((name.clone(), value.expose().to_owned()))
                }
                super::auth::KeyLocation::Query => {
                    url.query_pairs_mut().append_pair(name, value.expose());
                }
            },
            Auth::OAuth2(client) => {
                match client.token(&self.http, self.spec.timeouts.total).await {
                    Ok(t) => {
                        headers.push(("Authorization".into(), format!("Bearer {}", t.expose())));
                        token = Some(t);
                    }
                    Err(e) => {
                        let verdict = match &e {
                            AuthFailure::Unavailable(_) => Verdict::Retryable {
                                after: None,
                                reason: e.to_string(),
                            },
                            AuthFailure::Refused(_) => Verdict::Permanent {
                                reason: format!(
                                    "{e}; check auth.client_id and auth.client_secret, then replay"
                                ),
                            },
                        };
                        return Exchange {
                            url,
                            headers,
                            token,
                            outcome: Err(verdict),
                        };
                    }
                }
            }
            Auth::Hmac(signer) => {
                let nonce = hex::encode(rand::random::<[u8; 16]>());
                headers.extend(signer.headers(&SigningInput {
                    method: self.spec.method.as_str(),
                    url: &url,
                    body,
                    now_ms: jiff::Timestamp::now().as_millisecond(),
                    random_nonce: &nonce,
                }));
            }
        }
        let method = match self.spec.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
        };
        let mut req = self.http.request(method, url.clone()).body(body.clone());
        for (n, v) in &headers {
            req = req.header(n.as_str(), v.as_str());
        }
        let outcome = read(req, self.spec.timeouts.total).await;
        Exchange {
            url,
            headers,
            token,
            outcome,
        }
    }
}

/// Sends `req` and reads the answer (capped at [`MAX_ANSWER_BYTES`]); a transport failure is
/// its (retryable) verdict. `total` is the timeout, quoted in the reason.
pub(crate) async fn read(req: reqwest::RequestBuilder, total: Duration) -> Result<Answer, Verdict> {
    let failure = |e: reqwest::Error| {
        let f = if e.is_timeout() {
            TransportFailure::Timeout { after: total }
        } else if e.is_connect() {
            TransportFailure::Connect {
                detail: e.without_url().to_string(),
            }
        } else {
            TransportFailure::Interrupted {
                detail: e.without_url().to_string(),
            }
        };
        transport_verdict(&f)
    };
    let mut resp = req.send().await.map_err(failure)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = resp.chunk().await.map_err(failure)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            body.extend_from_slice(&chunk[..MAX_ANSWER_BYTES - body.len()]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
        truncated,
    })
}

/// The wait before the next attempt after `attempts_so_far` attempts ended in `verdict`: the
/// connector's schedule, or the target's `Retry-After` when that is longer; `None` when the job
/// should not be retried (not retryable, or no attempt left: dead-letter). The broker rounds
/// the wait up to one of its tiers.
pub fn next_delay(
    spec: &ConnectorSpec,
    verdict: &Verdict,
    attempts_so_far: u32,
) -> Option<Duration> {
    let scheduled = spec.retry.delay_after(attempts_so_far)?;
    match verdict {
        Verdict::Retryable { after, .. } => Some(after.map_or(scheduled, |a| a.max(scheduled))),
        _ => None,
    }
}
