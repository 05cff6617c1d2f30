//! How a probe talks to a target: its HTTP client, and one exchange that first resolves the
//! host and opens a TCP connection itself, so that DNS, refused connections, timeouts and TLS
//! are told apart by type; the target's clock is read from its `Date` header.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Problem, shown};
use crate::stage::error_chain;

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
                detail: error_chain(&e.without_url()),
            }
        } else {
            Problem::Unreachable {
                addr: url.authority().to_owned(),
                detail: error_chain(&e.without_url()),
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
