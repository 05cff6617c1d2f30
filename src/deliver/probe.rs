//! Probe: does a connector's authentication work, and if it does not, what should the operator
//! fix? `wecom-bridge check --online` calls [`probe`] for every connector; the console's "test
//! auth" button calls it for one.
//!
//! One harmless exchange per connector, chosen by its auth:
//! * OAuth2 client credentials: the token request, exactly as deliveries send it
//!   ([`super::auth::OAuth2Client::token_request`]), uncached;
//! * vendor protocols: their token request or login ([`vendor`]);
//! * any other auth (none, basic, bearer, API key, HMAC): no call is known to be harmless and
//!   to check those credentials, so the probe only proves the target is reachable (a `HEAD` of
//!   the URL's origin, without credentials) and says that the credentials were not checked.
//!
//! Before any HTTP request the probe resolves the host and opens a TCP connection itself
//! ([`transport`]), so that "DNS", "connection refused", "timeout" and "TLS" are told apart by
//! type, never by the text of an error; a refusal from a target whose `Date` is far from our
//! clock is reported as clock skew.
//!
//! Must NOT: send a document, write anything at the target, touch the token cache a running
//! connector uses, or retry.

mod transport;
pub mod vendor;

pub use transport::CLOCK_SKEW_LIMIT_SECS;
pub(crate) use transport::{ProbeAnswer, client, clocked, exchange};

use std::time::Duration;

use serde::Serialize;

use super::auth::{Auth, AuthSpec};
use super::spec::ConnectorSpec;
use super::vendor::client::VendorClient;
use super::{Connector, vendor::excerpt};

/// What one probe found, for one connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// Connector name.
    pub connector: String,
    /// What was tried (e.g. `OAuth2 token request to https://idp.example/oauth/token`).
    pub probed: String,
    /// What came of it.
    pub result: ProbeResult,
}

impl ProbeReport {
    /// Whether the connector passed (its credentials work, or it is reachable and has no
    /// credentials a probe can check).
    #[must_use]
    pub fn passed(&self) -> bool {
        !matches!(self.result, ProbeResult::Failed { .. })
    }

    /// One line for people: `name  ok  detail` or `name  FAILED  problem — fix: …`.
    #[must_use]
    pub fn line(&self) -> String {
        match &self.result {
            ProbeResult::Ok { detail } => format!("{:<16} ok      {detail}", self.connector),
            ProbeResult::Reachable { detail } => {
                format!("{:<16} ok      {detail}", self.connector)
            }
            ProbeResult::Failed { problem } => format!(
                "{:<16} FAILED  {}: {problem} — fix: {}",
                self.connector,
                self.probed,
                problem.fix()
            ),
        }
    }
}

/// The outcome of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ProbeResult {
    /// The credentials were accepted.
    Ok {
        /// What the target answered (never a token).
        detail: String,
    },
    /// The target answers, but this auth has no harmless call to check its credentials.
    Reachable {
        /// What was checked and what was not.
        detail: String,
    },
    /// Something is wrong.
    Failed {
        /// What, with the fix.
        problem: Problem,
    },
}

/// Why a probe failed. Each variant knows its fix ([`Problem::fix`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A secret or setting of the connector cannot be read.
    #[error("{detail}")]
    Config {
        /// What cannot be read.
        detail: String,
    },
    /// The target refused the credentials.
    #[error("credentials refused: {detail}")]
    Credentials {
        /// The target's own words.
        detail: String,
        /// Which keys of the connector file to check.
        fix: String,
    },
    /// The target says our clock is off.
    #[error("clock skew: {detail}")]
    ClockSkew {
        /// The target's own words.
        detail: String,
    },
    /// The target refuses this machine's address.
    #[error("IP address not allowed: {detail}")]
    IpNotAllowed {
        /// The target's own words.
        detail: String,
    },
    /// The host name does not resolve.
    #[error("DNS: `{host}` cannot be resolved ({detail})")]
    Dns {
        /// The host name.
        host: String,
        /// What the resolver said.
        detail: String,
    },
    /// Nothing accepts connections there.
    #[error("connection refused at {addr}")]
    ConnectionRefused {
        /// Address tried.
        addr: String,
    },
    /// The connection could not be opened for another reason (no route, reset, …).
    #[error("cannot connect to {addr}: {detail}")]
    Unreachable {
        /// Address tried.
        addr: String,
        /// What the system said.
        detail: String,
    },
    /// No answer in time.
    #[error("no answer within {} ms ({stage})", after.as_millis())]
    Timeout {
        /// Connecting or waiting for the answer.
        stage: &'static str,
        /// The limit that ran out.
        after: Duration,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {host} failed: {detail}")]
    Tls {
        /// The host.
        host: String,
        /// What the TLS library said.
        detail: String,
    },
    /// The target is failing or busy (5xx, 429): the credentials could not be checked.
    #[error("the target is failing or busy (HTTP {status}): {excerpt}")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// Raw excerpt.
        excerpt: String,
    },
    /// The connector has used the token requests the target allows a minute (FxiaoKe).
    #[error("not probed: the {per_minute} token requests a minute are used by deliveries")]
    Rationed {
        /// Token requests allowed a minute.
        per_minute: usize,
        /// Until one is free.
        wait: Duration,
    },
    /// An answer that is not what this endpoint answers (wrong URL, a proxy's page, …).
    #[error("unexpected answer (HTTP {status}): {excerpt}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// Raw excerpt.
        excerpt: String,
    },
}

impl Problem {
    /// What the operator should do.
    #[must_use]
    pub fn fix(&self) -> String {
        match self {
            Problem::Config { .. } => {
                "set the secret or setting named above (env:/file: reference), then probe again"
                    .into()
            }
            Problem::Credentials { fix, .. } => fix.clone(),
            Problem::ClockSkew { .. } => {
                "set this machine's clock right (enable NTP, e.g. `timedatectl set-ntp true`)".into()
            }
            Problem::IpNotAllowed { .. } => {
                "ask the target's administrator to allow this machine's public IP address (IP allow-list / 白名单)".into()
            }
            Problem::Dns { .. } => {
                "check the host name in the connector's URL and this machine's DNS".into()
            }
            Problem::ConnectionRefused { .. } => {
                "check the host and port in the URL and that the service runs there".into()
            }
            Problem::Unreachable { .. } => {
                "check the network path (routes, firewall, proxy) to the target".into()
            }
            Problem::Timeout { .. } => {
                "check that the URL is right and that no firewall drops the traffic; raise [timeouts] if the target is slow".into()
            }
            Problem::Tls { .. } => {
                "check http:// vs https:// and the port, and that the target's certificate is valid for this host name and issued by a trusted CA".into()
            }
            Problem::Unavailable { .. } => "try again later; nothing is wrong on our side".into(),
            Problem::Rationed { wait, .. } => {
                format!("probe again in {} s", wait.as_secs().max(1))
            }
            Problem::Unexpected { .. } => {
                "check that the URL points at the target's API (not a web page or a proxy)".into()
            }
        }
    }
}

/// Probes one built (running) connector. Never fails: every outcome is in the report. A
/// FxiaoKe probe takes its token request from the connector's own allowance, so that "test
/// auth" pressed in the console never pushes deliveries over FxiaoKe's limit.
pub async fn probe(connector: &Connector) -> ProbeReport {
    if let Some(VendorClient::Fxiaoke(c)) = connector.vendor()
        && let Err(wait) = c.take_token_call()
    {
        return ProbeReport {
            connector: connector.name().to_owned(),
            probed: "FxiaoKe token request".into(),
            result: ProbeResult::Failed {
                problem: Problem::Rationed {
                    per_minute: c.token_calls_per_minute(),
                    wait,
                },
            },
        };
    }
    probe_spec(connector.spec()).await
}

/// Probes a connector from its spec (its secrets are resolved here).
pub async fn probe_spec(spec: &ConnectorSpec) -> ProbeReport {
    let report = |probed: String, result| ProbeReport {
        connector: spec.name.clone(),
        probed,
        result,
    };
    let failed = |problem| ProbeResult::Failed { problem };
    let http = match client(spec.timeouts.connect, spec.timeouts.total) {
        Ok(h) => h,
        Err(p) => return report("building the HTTP client".into(), failed(p)),
    };
    let auth = match Auth::build(&spec.auth) {
        Ok(a) => a,
        Err(e) => {
            let detail = e.to_string();
            return report(
                "reading the secrets".into(),
                failed(Problem::Config { detail }),
            );
        }
    };
    let result_of =
        |r: Result<String, Problem>| r.map_or_else(failed, |detail| ProbeResult::Ok { detail });
    match (&spec.auth, &auth) {
        (AuthSpec::Oauth2ClientCredentials { .. }, Auth::OAuth2(client)) => {
            let url = client.token_url().clone();
            let probed = format!("OAuth2 token request to {}", shown(&url));
            let req = client.token_request(&http, spec.timeouts.total);
            let answer = exchange(&url, req, spec.timeouts.connect, spec.timeouts.total).await;
            report(
                probed,
                result_of(answer.and_then(|a| clocked(&a, oauth2_answer(&a)))),
            )
        }
        (other, _) => {
            let url = match spec.url.resolve() {
                Ok(u) => url::Url::parse(u.expose().trim()).map_err(|e| Problem::Config {
                    detail: format!("url is not a URL: {e}"),
                }),
                Err(e) => Err(Problem::Config {
                    detail: format!("url cannot be read: {e}"),
                }),
            };
            let url = match url {
                Ok(u) => u,
                Err(p) => return report("reading the URL".into(), failed(p)),
            };
            let http = vendor::ProbeHttp {
                client: http,
                connect: spec.timeouts.connect,
                total: spec.timeouts.total,
            };
            let (probed, result) = match &spec.vendor {
                Some(v) => vendor::probe(&http, v, &url).await,
                None => reachable(&http, &url, auth_kind(other)).await,
            };
            report(probed, result)
        }
    }
}

/// A `HEAD` of `url`'s origin without credentials: reachable or not; `what` names the
/// credentials that are not checked.
pub(crate) async fn reachable(
    http: &vendor::ProbeHttp,
    url: &url::Url,
    what: &str,
) -> (String, ProbeResult) {
    let origin = url.join("/").unwrap_or_else(|_| url.clone());
    let probed = format!("HEAD {}", shown(&origin));
    let req = http.client.head(origin.clone());
    let result = match exchange(&origin, req, http.connect, http.total).await {
        Ok(a) => ProbeResult::Reachable {
            detail: format!(
                "reachable (HEAD {} answered HTTP {}); {what} credentials are not checked: no harmless call is known for them, the first delivery shows",
                shown(&origin),
                a.status
            ),
        },
        Err(problem) => ProbeResult::Failed { problem },
    };
    (probed, result)
}

/// The name of an auth kind, as written in connector files.
fn auth_kind(spec: &AuthSpec) -> &'static str {
    match spec {
        AuthSpec::None => "no",
        AuthSpec::Basic { .. } => "basic",
        AuthSpec::Bearer { .. } => "bearer",
        AuthSpec::ApiKey { .. } => "api_key",
        AuthSpec::Oauth2ClientCredentials { .. } => "oauth2_client_credentials",
        AuthSpec::HmacSha256 { .. } => "hmac_sha256",
    }
}

/// Reads an OAuth2 token endpoint's answer (RFC 6749 §5.1, §5.2).
fn oauth2_answer(a: &ProbeAnswer) -> Result<String, Problem> {
    let json: Option<serde_json::Value> = serde_json::from_slice(&a.body).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|v| v.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    if (200..300).contains(&a.status) && field("access_token").is_some_and(|t| !t.is_empty()) {
        return Ok(format!("token issued (HTTP {})", a.status));
    }
    if let Some(error) = field("error") {
        let detail = format!(
            "HTTP {} {error}: {}",
            a.status,
            field("error_description").unwrap_or_default()
        );
        let fix = match error.as_str() {
            "invalid_client" | "unauthorized_client" => {
                "check auth.client_id and auth.client_secret (and auth.client_auth: basic or post)"
            }
            "invalid_scope" => "check auth.scope",
            "unsupported_grant_type" | "invalid_grant" => {
                "ask the administrator to allow the client-credentials grant for this client"
            }
            _ => "check the [auth] settings against what the target's administrator gave you",
        };
        return Err(Problem::Credentials {
            detail,
            fix: fix.into(),
        });
    }
    Err(status_problem(a))
}

/// An answer that carried no token and no refusal the endpoint documents: classified by status.
pub(crate) fn status_problem(a: &ProbeAnswer) -> Problem {
    let excerpt = excerpt(&a.body);
    match a.status {
        403 => Problem::IpNotAllowed {
            detail: format!("HTTP 403: {excerpt}"),
        },
        429 | 500.. => Problem::Unavailable {
            status: a.status,
            excerpt,
        },
        status => Problem::Unexpected { status, excerpt },
    }
}

/// A URL without query, user or password (for the report).
pub(crate) fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

#[cfg(test)]
mod tests;
