//! The admin listener's defence against web pages: a `Host` allow-list (which defeats DNS
//! rebinding) and a cross-site check on state-changing requests (which defeats a page in the
//! operator's browser posting to `/admin/replay`).
//!
//! It applies to `/admin/*` only. `/healthz`, `/readyz` and `/metrics` take no action and
//! show no payloads, and probes and scrapers address the listener by whatever IP they see.
//! It does not check the token: that is the handlers' prelude.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::AdminConfig;
use crate::ingress::log_limit::LogLimiter;
use crate::telemetry::names;

/// One accepted `Host`: a lower-case name and, if given, the port it must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostName {
    host: String,
    port: Option<u16>,
}

/// What the admin listener accepts, built once the listener's port is known.
#[derive(Debug, Clone)]
pub struct AdminGuard {
    allowed: Arc<Vec<HostName>>,
    log_limit: Arc<LogLimiter>,
}

/// Why a request to `/admin/*` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardRefusal {
    /// No `Host` header.
    #[error("no Host header")]
    NoHost,
    /// A `Host` that is not one of the listener's names (DNS rebinding, or a missing
    /// `admin.allowed_hosts` entry).
    #[error("Host `{0}` is not a name of this admin listener (see admin.allowed_hosts)")]
    UnknownHost(String),
    /// A state-changing request sent by a page of another site.
    #[error(
        "cross-site {0} refused: the admin API takes actions only from the operator's own tools"
    )]
    CrossSite(String),
}

impl GuardRefusal {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GuardRefusal::NoHost => "no_host",
            GuardRefusal::UnknownHost(_) => "unknown_host",
            GuardRefusal::CrossSite(_) => "cross_site",
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into a lower-case host and an optional port.
fn split_host(s: &str) -> Option<HostName> {
    let s = s.trim().to_ascii_lowercase();
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (h, rest) = s.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h.to_string(), Some(p.parse().ok()?)),
            None if rest.is_empty() => (h.to_string(), None),
            None => return None,
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (s.clone(), None),
        }
    };
    (!host.is_empty()).then_some(HostName { host, port })
}

fn host_of(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

impl AdminGuard {
    /// Loopback names and the listen address with the bound port, plus `admin.allowed_hosts`.
    pub fn new(cfg: &AdminConfig, bound: SocketAddr) -> Self {
        let port = Some(bound.port());
        let mut allowed: Vec<HostName> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|h| HostName {
                host: (*h).to_string(),
                port,
            })
            .collect();
        allowed.push(HostName {
            host: host_of(&bound),
            port,
        });
        if let Ok(listen) = cfg.listen.parse::<SocketAddr>() {
            allowed.push(HostName {
                host: host_of(&listen),
                port,
            });
        }
        allowed.extend(cfg.allowed_hosts.iter().filter_map(|h| split_host(h)));
        allowed.dedup();
        AdminGuard {
            allowed: Arc::new(allowed),
            log_limit: Arc::new(LogLimiter::new(Duration::from_secs(60))),
        }
    }

    fn accepts(&self, name: &HostName) -> bool {
        self.allowed
            .iter()
            .any(|a| a.host == name.host && (a.port.is_none() || a.port == name.port))
    }

    /// Checks one request's headers; `Ok` lets it through.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), GuardRefusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or(GuardRefusal::NoHost)?;
        if !split_host(host).is_some_and(|h| self.accepts(&h)) {
            return Err(GuardRefusal::UnknownHost(host.chars().take(100).collect()));
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        // Browsers send Sec-Fetch-Site; `none` is a user-typed URL, `same-origin` our own page.
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or("invalid");
            if !matches!(site, "same-origin" | "none") {
                return Err(GuardRefusal::CrossSite(format!(
                    "{method} (Sec-Fetch-Site: {site})"
                )));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("invalid");
            if !self.origin_accepted(origin) {
                let shown: String = origin.chars().take(100).collect();
                return Err(GuardRefusal::CrossSite(format!(
                    "{method} (Origin: {shown})"
                )));
            }
        }
        Ok(())
    }

    /// `scheme://host[:port]` whose host and port are ours; `null` and anything else is not.
    fn origin_accepted(&self, origin: &str) -> bool {
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        let Some(mut name) = split_host(rest) else {
            return false;
        };
        if name.port.is_none() {
            name.port = match scheme {
                "http" => Some(80),
                "https" => Some(443),
                _ => return false,
            };
        }
        self.accepts(&name)
    }
}

/// Middleware for `/admin/*`: refuses with 403 and a reason what [`AdminGuard::check`] refuses.
pub async fn enforce(State(guard): State<AdminGuard>, req: Request, next: Next) -> Response {
    match guard.check(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            metrics::counter!(names::ADMIN_REFUSED, "reason" => refusal.reason()).increment(1);
            if let Some(suppressed) = guard.log_limit.admit("admin", refusal.reason()) {
                tracing::warn!(
                    path = %req.uri().path(),
                    reason = refusal.reason(),
                    suppressed,
                    error = %refusal,
                    hint = "a web page or an unknown name tried the admin API; if this is your own tool, add its host name to admin.allowed_hosts",
                    "admin request refused"
                );
            }
            (StatusCode::FORBIDDEN, format!("{refusal}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(extra: &[&str]) -> AdminGuard {
        let cfg = AdminConfig {
            allowed_hosts: extra.iter().map(|s| s.to_string()).collect(),
            ..AdminConfig::default()
        };
        AdminGuard::new(&cfg, "127.0.0.1:8081".parse().unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_names_with_the_listener_port_are_accepted() {
        let g = guard(&[]);
        for host in [
            "localhost:8081",
            "127.0.0.1:8081",
            "[::1]:8081",
            "LOCALHOST:8081",
        ] {
            assert_eq!(
                g.check(&Method::GET, &headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "localhost:9999",
            "evil.example:8081",
            "evil.example",
            "127.0.0.1",
        ] {
            assert!(
                matches!(
                    g.check(&Method::GET, &headers(&[("host", host)])),
                    Err(GuardRefusal::UnknownHost(_))
                ),
                "{host}"
            );
        }
        assert_eq!(
            g.check(&Method::GET, &HeaderMap::new()),
            Err(GuardRefusal::NoHost)
        );
    }

    #[test]
    fn configured_names_match_with_or_without_a_port() {
        let g = guard(&["admin.internal", "ops.internal:9000"]);
        let ok = |h: &str| g.check(&Method::GET, &headers(&[("host", h)])).is_ok();
        assert!(ok("admin.internal"));
        assert!(ok("admin.internal:1234"));
        assert!(ok("ops.internal:9000"));
        assert!(!ok("ops.internal:9001"));
    }

    #[test]
    fn cross_site_state_changes_are_refused_and_own_tools_pass() {
        let g = guard(&[]);
        let host = ("host", "127.0.0.1:8081");
        let post = |extra: &[(&'static str, &str)]| {
            let mut all = vec![host];
            all.extend_from_slice(extra);
            g.check(&Method::POST, &headers(&all))
        };
        assert_eq!(post(&[]), Ok(())); // curl, the CLI
        assert_eq!(post(&[("sec-fetch-site", "same-origin")]), Ok(()));
        assert_eq!(post(&[("origin", "http://127.0.0.1:8081")]), Ok(()));
        for bad in [
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "http://127.0.0.1:9999")],
        ] {
            assert!(
                matches!(post(&bad), Err(GuardRefusal::CrossSite(_))),
                "{bad:?}"
            );
        }
        // reads are not state changes: a cross-site GET is left to the Host check and token
        assert_eq!(
            g.check(
                &Method::GET,
                &headers(&[host, ("sec-fetch-site", "cross-site")])
            ),
            Ok(())
        );
    }
}
