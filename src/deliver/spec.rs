//! Connector files (`connectors/*.toml`) → a typed, validated [`ConnectorSpec`].
//!
//! Pure: reads no environment, no files besides the one given, opens nothing. Every problem
//! is collected with `file:line:col` (as a [`Diagnostic`]) so an operator fixes them all in
//! one pass. Secrets stay references ([`SecretRef`]) here; [`super::Connector::build`]
//! resolves them. The contract is written up in `docs/connectors.md`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::auth::AuthSpec;
use super::circuit::CircuitConfig;
use super::classify::AnswerRules;
use super::encode::BodySpec;
use super::predicate::{self, Locator, Predicate, StatusRange};
use super::vendor::client::{self, VendorSpec, VendorTables};
use super::xml_path::XmlPath;
use crate::catalog::{Diagnostic, diag};
use crate::config::SecretRef;
use file::ConnectorFile;

mod file;

/// Connector kinds. A closed set: a new kind is a new variant and one more `match` arm.
///
/// `http` is the generic connector, configured entirely by the file. The others speak one
/// vendor's protocol (auth, envelope, answers: PROTOCOLS.md); their vendor-specific settings
/// sit in a table named like the kind (`[kingdee]`, `[yonbip]`, `[u8_eai]`, …), parsed by
/// [`super::vendor::client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// A document sent in one HTTP request (JSON, form or XML body).
    Http,
    /// Kingdee 金蝶云·星空 (K3Cloud) WebAPI: signed headers or session login, `Save`.
    Kingdee,
    /// Yonyou YonBIP / YonSuite open API: signed token GET, token in the query string.
    Yonbip,
    /// Yonyou U8 EAI (on-premise): the `<ufinterface>` XML envelope.
    U8Eai,
    /// Beisen 北森 iTalent (HR).
    Beisen,
    /// FxiaoKe 纷享销客 (CRM).
    Fxiaoke,
    /// Salesforce REST.
    Salesforce,
}

impl ConnectorKind {
    /// The name used in files (also the name of the kind's vendor table).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Http => "http",
            ConnectorKind::Kingdee => "kingdee",
            ConnectorKind::Yonbip => "yonbip",
            ConnectorKind::U8Eai => "u8_eai",
            ConnectorKind::Beisen => "beisen",
            ConnectorKind::Fxiaoke => "fxiaoke",
            ConnectorKind::Salesforce => "salesforce",
        }
    }
}

/// HTTP methods a document can be sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// POST (default).
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// Time limits for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the connection.
    pub connect: Duration,
    /// The whole request, answer included.
    pub total: Duration,
}

/// Where the idempotency key travels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Idempotency {
    /// A request header carrying the job's idempotency key (e.g. `Idempotency-Key`).
    pub header: Option<String>,
    /// A JSON pointer to the document field the mapping fills with the business key (e.g.
    /// `/document_no`, Kingdee `/Model/FBillNo`); the connector refuses to send a document
    /// without it.
    pub field: Option<String>,
}

/// The retry schedule of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySpec {
    /// Delays between attempts, each one a broker retry tier.
    pub schedule: Vec<Duration>,
    /// Attempts in all (the first included) before a job is dead-lettered.
    pub max_attempts: u32,
    /// Where `schedule_secs` was written (for [`check_retry_tiers`]).
    pub position: (usize, usize),
}

impl RetrySpec {
    /// The delay before attempt `attempt + 1` after `attempt` attempts (1-based), the last
    /// tier repeating; `None` when no attempt is left.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let i = (attempt.max(1) - 1) as usize;
        self.schedule.get(i).or(self.schedule.last()).copied()
    }
}

/// A validated connector. Secrets are still references.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSpec {
    /// Unique name (the file stem unless `name` is set); its queue is `deliver.<name>`.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Kind.
    pub kind: ConnectorKind,
    /// Endpoint URL, by reference (`env:`/`file:`) or literal (without credentials).
    pub url: SecretRef,
    /// HTTP method.
    pub method: Method,
    /// Body encoding.
    pub body: BodySpec,
    /// Static headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Requests in flight at most (also the consumer prefetch).
    pub concurrency: u32,
    /// Requests per second at most, if limited.
    pub rate_per_sec: Option<f64>,
    /// How answers are read.
    pub answers: AnswerRules,
    /// Values copied from a success or duplicate answer, by name.
    pub capture: Vec<(String, Locator)>,
    /// Idempotency carriers.
    pub idempotency: Idempotency,
    /// Retry schedule.
    pub retry: RetrySpec,
    /// JSON pointers of document and answer fields replaced by `***` in the record.
    pub redact: Vec<String>,
    /// Pilot mode: prepare and record, send nothing.
    pub dry_run: bool,
    /// Authentication.
    pub auth: AuthSpec,
    /// When to stop sending to a failing target and probe it instead.
    pub circuit: CircuitConfig,
    /// Largest body kept in the record, in bytes.
    pub record_body_limit: usize,
    /// The vendor protocol's settings (`None` for `kind = "http"`).
    pub vendor: Option<VendorSpec>,
}

/// Default connect timeout.
pub const DEFAULT_CONNECT: Duration = Duration::from_secs(5);
/// Default total timeout.
pub const DEFAULT_TOTAL: Duration = Duration::from_secs(30);
/// Default concurrency cap.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Default retry schedule, in seconds (the default broker tiers).
pub const DEFAULT_SCHEDULE_SECS: [u64; 5] = [5, 30, 120, 600, 3600];
/// Default largest recorded body.
pub const DEFAULT_RECORD_BODY_LIMIT: usize = 16 * 1024;

/// Parses and validates one connector file. `default_name` is used when the file sets no
/// `name` (the catalog passes the file stem).
pub fn parse(
    file: &Path,
    text: &str,
    default_name: &str,
) -> Result<ConnectorSpec, Vec<Diagnostic>> {
    let f: ConnectorFile = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => return Err(vec![diag(file, text, e.span(), e.message().to_string())]),
    };
    // Spans of the generic settings a vendor kind must not have (checked below).
    let generic: Vec<(&str, Range<usize>)> = [
        ("method", f.method.as_ref().map(Spanned::span)),
        ("[body]", f.body.as_ref().map(Spanned::span)),
        ("[auth]", f.auth.as_ref().map(Spanned::span)),
        ("[success]", f.success.as_ref().map(Spanned::span)),
        ("[duplicate]", f.duplicate.as_ref().map(Spanned::span)),
        ("[retryable]", f.retryable.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(key, span)| span.map(|s| (key, s)))
    .collect();
    let mut errs: Vec<(Option<Range<usize>>, String)> = Vec::new();
    let mut at = |span: Range<usize>, m: String| errs.push((Some(span), m));

    let url = SecretRef::parse(f.url.get_ref());
    if let SecretRef::Literal(u) = &url {
        match url::Url::parse(u) {
            Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => {
                at(f.url.span(), format!("url `{u}` must be http or https"));
            }
            Ok(parsed) if parsed.password().is_some() => at(
                f.url.span(),
                "url carries a password; write it by reference (`env:NAME` or `file:PATH`) or use [auth]".into(),
            ),
            Ok(_) => {}
            Err(e) => at(
                f.url.span(),
                format!("url is not a URL ({e}); write a URL or a reference like `env:FINANCE_URL`"),
            ),
        }
    }

    let body = match f.body {
        None => BodySpec::json(),
        Some(b) => {
            let span = b.span();
            let b = b.into_inner();
            let spec = BodySpec {
                encoding: b.encoding,
                root: b.root,
                namespace: b.namespace,
                namespaces: b.namespaces.into_iter().collect(),
                attributes: b.attributes.into_iter().collect(),
                envelope: b.envelope,
                declaration: b.declaration,
            };
            for m in spec.problems() {
                at(span.clone(), m);
            }
            spec
        }
    };

    let mut headers = Vec::new();
    for (name, value) in f.headers {
        let lower = name.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            at(value.span(), format!("`{name}` is not a valid header name"));
        } else if reqwest::header::HeaderValue::from_str(value.get_ref()).is_err() {
            at(
                value.span(),
                format!("the value of header `{name}` has characters a header cannot carry"),
            );
        } else if matches!(
            lower.as_str(),
            "authorization" | "cookie" | "proxy-authorization"
        ) {
            at(
                value.span(),
                format!(
                    "do not write `{name}` as a static header: secrets go in [auth], by reference"
                ),
            );
        } else if lower == "content-type" || lower == "content-length" {
            at(
                value.span(),
                format!("`{name}` is set from [body]; remove it from [headers]"),
            );
        }
        headers.push((name, value.into_inner()));
    }

    let timeouts = match f.timeouts {
        None => Timeouts {
            connect: DEFAULT_CONNECT,
            total: DEFAULT_TOTAL,
        },
        Some(t) => {
            let span = t.span();
            let t = t.into_inner();
            let connect = t.connect_ms.map_or(DEFAULT_CONNECT, Duration::from_millis);
            let total = t.total_ms.map_or(DEFAULT_TOTAL, Duration::from_millis);
            if connect.is_zero() || total.is_zero() {
                at(span.clone(), "timeouts must be above 0 ms".into());
            }
            if connect > total {
                at(
                    span,
                    "timeouts.connect_ms must not exceed timeouts.total_ms".into(),
                );
            }
            Timeouts { connect, total }
        }
    };

    let concurrency = match f.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(c) => {
            if !(1..=1024).contains(c.get_ref()) {
                at(c.span(), "concurrency must be between 1 and 1024".into());
            }
            *c.get_ref()
        }
    };
    let rate_per_sec = f.rate_per_sec.map(|r| {
        let v = *r.get_ref();
        if !(v.is_finite() && v > 0.0 && v <= 1_000_000.0) {
            at(
                r.span(),
                "rate_per_sec must be above 0 (e.g. 0.5 for one request every two seconds)".into(),
            );
        }
        v
    });

    let auth = match f.auth {
        None => AuthSpec::None,
        Some(a) => {
            let span = a.span();
            let a = a.into_inner();
            for m in a.problems() {
                at(span.clone(), m);
            }
            a
        }
    };

    let idempotency = match f.idempotency {
        None => Idempotency::default(),
        Some(i) => {
            let span = i.span();
            let i = i.into_inner();
            if i.header.is_none() && i.field.is_none() {
                at(
                    span.clone(),
                    "[idempotency] needs `header` and/or `field`".into(),
                );
            }
            if let Some(h) = &i.header
                && reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err()
            {
                at(span.clone(), format!("`{h}` is not a valid header name"));
            }
            if let Some(p) = &i.field
                && !p.starts_with('/')
            {
                at(
                    span,
                    format!("idempotency.field `{p}` must be a JSON pointer, e.g. `/document_no`"),
                );
            }
            Idempotency {
                header: i.header,
                field: i.field,
            }
        }
    };

    let mut pred_errs = Vec::new();
    let success = f.success.map_or(
        Predicate::Status(vec![StatusRange {
            low: 200,
            high: 299,
        }]),
        |p| predicate::compile(p, &mut pred_errs),
    );
    let duplicate = f.duplicate.map(|p| predicate::compile(p, &mut pred_errs));
    let retryable = f.retryable.map(|p| predicate::compile(p, &mut pred_errs));
    for (span, m) in pred_errs {
        at(span, m);
    }

    let mut locate = |s: Spanned<String>, what: &str| -> Option<Locator> {
        let (span, s) = (s.span(), s.into_inner());
        if let Some(h) = s.strip_prefix("header:") {
            return Some(Locator::Header(h.trim().to_owned()));
        }
        if !s.starts_with('/') {
            at(
                span,
                format!(
                    "{what} `{s}` must be a JSON pointer (`/data/voucher_no`), an XML path (`//item/@dsc`) or `header:Name`"
                ),
            );
            return None;
        }
        // Read as a JSON pointer in JSON answers and as an XML path in XML ones (both_ways).
        Some(Locator::Pointer(s))
    };
    let message: Vec<Locator> = f
        .message
        .into_iter()
        .filter_map(|m| locate(m, "message path"))
        .flat_map(both_ways)
        .collect();
    let capture: Vec<(String, Locator)> = f
        .capture
        .into_iter()
        .filter_map(|(name, p)| locate(p, "capture path").map(|l| (name, l)))
        .flat_map(|(name, l)| both_ways(l).into_iter().map(move |l| (name.clone(), l)))
        .collect();

    let mut redact = Vec::new();
    for r in f.redact {
        if r.get_ref().starts_with('/') {
            redact.push(r.into_inner());
        } else {
            at(
                r.span(),
                format!(
                    "redact entry `{}` must be a JSON pointer, e.g. `/payee/bank_account`",
                    r.get_ref()
                ),
            );
        }
    }

    let retry = match f.retry {
        None => RetrySpec {
            schedule: DEFAULT_SCHEDULE_SECS.map(Duration::from_secs).to_vec(),
            max_attempts: DEFAULT_SCHEDULE_SECS.len() as u32 + 1,
            position: (0, 0),
        },
        Some(r) => {
            let span = r.span();
            let r = r.into_inner();
            if r.schedule_secs.is_empty() || r.schedule_secs.contains(&0) {
                at(
                    span.clone(),
                    "retry.schedule_secs must list delays above 0 s (broker retry tiers)".into(),
                );
            }
            let max_attempts = r.max_attempts.unwrap_or(r.schedule_secs.len() as u32 + 1);
            if max_attempts == 0 {
                at(span.clone(), "retry.max_attempts must be at least 1".into());
            }
            RetrySpec {
                schedule: r
                    .schedule_secs
                    .into_iter()
                    .map(Duration::from_secs)
                    .collect(),
                max_attempts,
                position: crate::catalog::position(text, span.start),
            }
        }
    };

    let circuit = match f.circuit {
        None => CircuitConfig::default(),
        Some(c) => {
            let span = c.span();
            let c = c.into_inner();
            if c.failures == 0 || c.cool_down_secs == 0 {
                at(
                    span,
                    "circuit.failures and circuit.cool_down_secs must be above 0".into(),
                );
            }
            CircuitConfig {
                failures: c.failures,
                cool_down: Duration::from_secs(c.cool_down_secs),
            }
        }
    };
    let record_body_limit = f
        .record
        .map_or(DEFAULT_RECORD_BODY_LIMIT, |r| r.body_limit_bytes);

    let kind = *f.kind.get_ref();
    if kind != ConnectorKind::Http {
        // The vendor protocol decides these; a generic setting would be silently ignored.
        for (key, span) in generic {
            at(
                span,
                format!(
                    "{key} does not apply to kind = \"{}\": the vendor protocol sets it; remove it (vendor settings go in [{}])",
                    kind.as_str(),
                    kind.as_str()
                ),
            );
        }
    }
    let vendor = client::parse(
        kind,
        f.kind.span(),
        VendorTables {
            kingdee: f.kingdee,
            yonbip: f.yonbip,
            u8_eai: f.u8_eai,
            beisen: f.beisen,
            fxiaoke: f.fxiaoke,
            salesforce: f.salesforce,
        },
        &mut errs,
    );

    if !errs.is_empty() {
        return Err(errs
            .into_iter()
            .map(|(span, m)| diag(file, text, span, m))
            .collect());
    }
    Ok(ConnectorSpec {
        name: f.name.unwrap_or_else(|| default_name.to_owned()),
        file: file.to_path_buf(),
        kind,
        url,
        method: f.method.map_or(Method::Post, Spanned::into_inner),
        body,
        headers,
        timeouts,
        concurrency,
        rate_per_sec,
        answers: AnswerRules {
            success,
            duplicate,
            retryable,
            message,
        },
        capture,
        idempotency,
        retry,
        redact,
        dry_run: f.dry_run,
        auth,
        circuit,
        record_body_limit,
        vendor,
    })
}

/// A path that reads the same in JSON and XML answers (`/data/code` is both a JSON pointer
/// and an XML path from the root) is kept both ways; the body's type picks the one that can
/// match.
fn both_ways(l: Locator) -> Vec<Locator> {
    match &l {
        Locator::Pointer(p) => match XmlPath::parse(p) {
            Ok(x) => vec![l.clone(), Locator::Xml(x)],
            Err(_) => vec![l],
        },
        _ => vec![l],
    }
}

/// Checks that every connector's retry delays are broker retry tiers (`broker.retry_tiers_secs`),
/// so that a delay is never silently rounded to another tier.
pub fn check_retry_tiers(specs: &[ConnectorSpec], tiers_secs: &[u64]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in specs {
        for d in &s.retry.schedule {
            if !tiers_secs.contains(&d.as_secs()) {
                out.push(Diagnostic {
                    file: s.file.clone(),
                    line: s.retry.position.0,
                    col: s.retry.position.1,
                    message: format!(
                        "retry delay {} s is not a broker retry tier (broker.retry_tiers_secs = {tiers_secs:?}); use one of those or add the tier",
                        d.as_secs()
                    ),
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
