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
//! Before any HTTP request the probe resolves the host and opens a TCP connection itself, so
//! that "DNS", "connection refused", "timeout" and "TLS" are told apart by type, never by the
//! text of an error.
//!
//! Must NOT: send a document, write anything at the target, touch the token cache a running
//! connector uses, or retry.

pub mod vendor;

use std::net::SocketAddr;
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

/// The HTTP client a probe uses.
pub(crate) fn client(connect: Duration, total: Duration) -> Result<reqwest::Client, Problem> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .user_agent(concat!(
            "wecom-bridge/",
            env!("CARGO_PKG_VERSION"),
            " probe"
        ))
        .build()
        .map_err(|e| Problem::Config {
            detail: format!("HTTP client: {e}"),
        })
}

/// An answer as read by a probe.
#[derive(Debug)]
pub(crate) struct ProbeAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body (at most what the target sent; probes read small answers).
    pub body: Vec<u8>,
    /// The target's clock minus ours, seconds, from its `Date` header.
    pub skew_secs: Option<i64>,
}

/// Beyond this difference between the target's `Date` and our clock, a refusal is reported
/// as clock skew: signed and token requests carry our time, and targets refuse stale ones.
pub const CLOCK_SKEW_LIMIT_SECS: i64 = 300;

/// `r`, except that a refusal from a target whose clock (its `Date` header) is more than
/// [`CLOCK_SKEW_LIMIT_SECS`] from ours becomes [`Problem::ClockSkew`].
pub(crate) fn clocked(a: &ProbeAnswer, r: Result<String, Problem>) -> Result<String, Problem> {
    match (r, a.skew_secs) {
        (Err(Problem::Credentials { detail, .. }), Some(skew))
            if skew.abs() > CLOCK_SKEW_LIMIT_SECS =>
        {
            Err(Problem::ClockSkew {
                detail: format!(
                    "the target's clock is {skew} s from ours (its Date header) and it refused: {detail}"
                ),
            })
        }
        (r, _) => r,
    }
}

/// Checks that `url`'s host resolves and accepts TCP, then sends `req`.
pub(crate) async fn exchange(
    url: &url::Url,
    req: reqwest::RequestBuilder,
    connect: Duration,
    total: Duration,
) -> Result<ProbeAnswer, Problem> {
    if !behind_proxy() {
        reach(url, connect).await?;
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            Problem::Timeout {
                stage: "waiting for the answer",
                after: total,
            }
        } else if e.is_connect() && url.scheme() == "https" {
            // TCP was accepted a moment ago (`reach`), so the connection failed in TLS.
            Problem::Tls {
                host,
                detail: chain(&e.without_url()),
            }
        } else {
            Problem::Unreachable {
                addr: url.authority().to_owned(),
                detail: chain(&e.without_url()),
            }
        }
    })?;
    let status = resp.status().as_u16();
    let skew_secs = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| jiff::fmt::rfc2822::parse(d).ok())
        .map(|then| then.timestamp().as_second() - jiff::Timestamp::now().as_second());
    let body = resp
        .bytes()
        .await
        .map_or_else(|_| Vec::new(), |b| b.to_vec());
    Ok(ProbeAnswer {
        status,
        body,
        skew_secs,
    })
}

/// Whether requests go through a proxy from the environment (then a direct TCP check would
/// test the wrong path, and is skipped).
fn behind_proxy() -> bool {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Resolves `url`'s host and opens (and closes) a TCP connection to it.
async fn reach(url: &url::Url, connect: Duration) -> Result<(), Problem> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::from((ip, port))],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::from((ip, port))],
        Some(url::Host::Domain(name)) => {
            let lookup = tokio::net::lookup_host((name, port));
            match tokio::time::timeout(connect, lookup).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(e)) => {
                    return Err(Problem::Dns {
                        host: name.to_owned(),
                        detail: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(Problem::Dns {
                        host: name.to_owned(),
                        detail: format!(
                            "no answer from the resolver within {} ms",
                            connect.as_millis()
                        ),
                    });
                }
            }
        }
        None => {
            return Err(Problem::Config {
                detail: format!("URL {} has no host", shown(url)),
            });
        }
    };
    let mut last = Problem::Dns {
        host: url.host_str().unwrap_or_default().to_owned(),
        detail: "no address found".into(),
    };
    for addr in addrs {
        match tokio::time::timeout(connect, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Problem::ConnectionRefused {
                    addr: addr.to_string(),
                };
            }
            Ok(Err(e)) => {
                last = Problem::Unreachable {
                    addr: addr.to_string(),
                    detail: e.to_string(),
                };
            }
            Err(_) => {
                last = Problem::Timeout {
                    stage: "connecting",
                    after: connect,
                };
            }
        }
    }
    Err(last)
}

/// An error and its causes, `: `-separated (reqwest's own text is terse).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> ProbeAnswer {
        ProbeAnswer {
            status,
            body: body.as_bytes().to_vec(),
            skew_secs: None,
        }
    }

    #[test]
    fn oauth2_answers_are_read_by_type() {
        assert!(oauth2_answer(&answer(200, r#"{"access_token":"t","expires_in":60}"#)).is_ok());
        let refused = oauth2_answer(&answer(
            401,
            r#"{"error":"invalid_client","error_description":"no"}"#,
        ))
        .unwrap_err();
        assert!(
            matches!(&refused, Problem::Credentials { fix, .. } if fix.contains("auth.client_secret")),
            "{refused:?}"
        );
        assert!(matches!(
            oauth2_answer(&answer(403, "<html>denied</html>")),
            Err(Problem::IpNotAllowed { .. })
        ));
        assert!(matches!(
            oauth2_answer(&answer(503, "")),
            Err(Problem::Unavailable { status: 503, .. })
        ));
        assert!(matches!(
            oauth2_answer(&answer(200, "<html>login</html>")),
            Err(Problem::Unexpected { status: 200, .. })
        ));
    }

    #[test]
    fn a_refusal_from_a_target_whose_clock_is_far_from_ours_is_clock_skew() {
        let mut a = answer(401, r#"{"error":"invalid_client"}"#);
        a.skew_secs = Some(-3600);
        let r = clocked(&a, oauth2_answer(&a));
        assert!(
            matches!(&r, Err(Problem::ClockSkew { detail }) if detail.contains("-3600 s")),
            "{r:?}"
        );
        a.skew_secs = Some(2);
        assert!(matches!(
            clocked(&a, oauth2_answer(&a)),
            Err(Problem::Credentials { .. })
        ));
        // a success is a success whatever the clocks say
        let mut ok = answer(200, r#"{"access_token":"t"}"#);
        ok.skew_secs = Some(9999);
        assert!(clocked(&ok, oauth2_answer(&ok)).is_ok());
    }

    #[test]
    fn lines_name_the_connector_the_problem_and_the_fix() {
        let r = ProbeReport {
            connector: "crm".into(),
            probed: "OAuth2 token request to http://x/oauth/token".into(),
            result: ProbeResult::Failed {
                problem: Problem::ConnectionRefused {
                    addr: "127.0.0.1:9".into(),
                },
            },
        };
        assert!(!r.passed());
        let line = r.line();
        assert!(line.starts_with("crm "), "{line}");
        assert!(line.contains("connection refused at 127.0.0.1:9"), "{line}");
        assert!(line.contains("fix: check the host and port"), "{line}");
    }

    #[test]
    fn shown_urls_carry_no_credentials_or_query() {
        let u = url::Url::parse("https://u:p@h.example/t?access_token=s").unwrap();
        assert_eq!(shown(&u), "https://h.example/t");
    }
}
