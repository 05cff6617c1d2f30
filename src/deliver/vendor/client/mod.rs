//! Vendor connectors: the stateful side of the vendor protocols, used by
//! [`crate::deliver::Connector`] when a connector file says `kind = "kingdee"`, `"yonbip"`,
//! `"u8_eai"`, … instead of `"http"`.
//!
//! Three steps, one enum each, one `match` per step:
//! 1. [`parse`]: the connector file's vendor table (`[kingdee]`, …) → a [`VendorSpec`], pure,
//!    every problem with its span (the caller turns them into `file:line:col`). Secrets stay
//!    references.
//! 2. [`VendorClient::build`]: secrets resolved and checked (a malformed AppID or an empty
//!    AppSecret fails here, i.e. at `check` and at start, not at the first delivery).
//! 3. [`VendorClient::encode`] turns the mapped document into the vendor's envelope and
//!    [`VendorClient::send`] sends it: the client holds the per-connector state (token cache,
//!    session cookie; single-flight), applies auth, and maps the vendor's [`Outcome`] onto a
//!    [`Verdict`]: success → delivered with `id`/`number` captured; duplicate → duplicate;
//!    retryable → retryable; re-auth → refresh (new token, new login, new signature) and send
//!    once more, then permanent; permanent → permanent with the vendor's message.
//!
//! Must NOT: retry beyond that one re-auth resend (the deliver stage retries through the
//! broker), write the record (the connector redacts and records what [`Sent`] says), or know
//! a vendor's wire details (the pure modules in [`super`] do).

pub mod beisen;
pub mod fxiaoke;
pub mod kingdee;
pub mod salesforce;
mod token_cache;
pub mod u8;
pub mod yonbip;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde_json::Value;
use toml::Spanned;

use super::Outcome;
use crate::config::{Secret, SecretRef};
use crate::deliver::Verdict;
use crate::deliver::http::{Answer, read};
use crate::deliver::spec::ConnectorKind;

/// The capture names every vendor connector fills from a success: the target's internal id
/// and its human-facing number (Kingdee `Id`/`Number`, YonBIP `voucherId`/`billCode`, U8
/// `u8voucher_id`/`key`).
pub const CAPTURED: [&str; 2] = ["id", "number"];

/// Problems found while parsing, with the span they point at.
pub type Problems = Vec<(Option<Range<usize>>, String)>;

/// The vendor tables a connector file may carry; only the one its `kind` names is allowed.
#[derive(Default)]
pub struct VendorTables {
    /// `[kingdee]`.
    pub kingdee: Option<Spanned<kingdee::KingdeeFile>>,
    /// `[yonbip]`.
    pub yonbip: Option<Spanned<yonbip::YonbipFile>>,
    /// `[u8_eai]`.
    pub u8_eai: Option<Spanned<u8::U8File>>,
    /// `[beisen]`.
    pub beisen: Option<Spanned<beisen::BeisenFile>>,
    /// `[fxiaoke]`.
    pub fxiaoke: Option<Spanned<fxiaoke::FxiaokeFile>>,
    /// `[salesforce]`.
    pub salesforce: Option<Spanned<salesforce::SalesforceFile>>,
}

impl VendorTables {
    /// The tables present, by name, with their spans.
    fn present(&self) -> Vec<(&'static str, Range<usize>)> {
        [
            ("kingdee", self.kingdee.as_ref().map(Spanned::span)),
            ("yonbip", self.yonbip.as_ref().map(Spanned::span)),
            ("u8_eai", self.u8_eai.as_ref().map(Spanned::span)),
            ("beisen", self.beisen.as_ref().map(Spanned::span)),
            ("fxiaoke", self.fxiaoke.as_ref().map(Spanned::span)),
            ("salesforce", self.salesforce.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(n, s)| s.map(|s| (n, s)))
        .collect()
    }
}

/// The validated vendor part of a connector. Secrets are still references.
#[derive(Debug, Clone, PartialEq)]
pub enum VendorSpec {
    /// Kingdee K3Cloud WebAPI.
    Kingdee(kingdee::KingdeeSpec),
    /// YonBIP / YonSuite open API.
    Yonbip(yonbip::YonbipSpec),
    /// U8 EAI XML.
    U8Eai(u8::U8Spec),
    /// Beisen iTalent (HR).
    Beisen(beisen::BeisenSpec),
    /// FxiaoKe (CRM).
    Fxiaoke(fxiaoke::FxiaokeSpec),
    /// Salesforce REST.
    Salesforce(salesforce::SalesforceSpec),
}

/// Validates the vendor table of a connector of `kind` (pure). `None` for `http`, or when
/// the table has problems (pushed onto `errs`).
pub fn parse(
    kind: ConnectorKind,
    kind_span: Range<usize>,
    tables: VendorTables,
    errs: &mut Problems,
) -> Option<VendorSpec> {
    for (name, span) in tables.present() {
        if name != kind.as_str() {
            errs.push((
                Some(span),
                format!(
                    "[{name}] does not apply to kind = \"{}\"; remove it or set kind = \"{name}\"",
                    kind.as_str()
                ),
            ));
        }
    }
    let missing = |errs: &mut Problems| {
        errs.push((
            Some(kind_span.clone()),
            format!(
                "kind = \"{k}\" needs a [{k}] table with the system's settings (see docs/connectors.md, or start from `wecom-bridge init --template …`)",
                k = kind.as_str()
            ),
        ));
        None
    };
    match kind {
        ConnectorKind::Http => None,
        ConnectorKind::Kingdee => match tables.kingdee {
            Some(t) => kingdee::validate(t, errs).map(VendorSpec::Kingdee),
            None => missing(errs),
        },
        ConnectorKind::Yonbip => match tables.yonbip {
            Some(t) => yonbip::validate(t, errs).map(VendorSpec::Yonbip),
            None => missing(errs),
        },
        ConnectorKind::U8Eai => match tables.u8_eai {
            Some(t) => u8::validate(t, errs).map(VendorSpec::U8Eai),
            None => missing(errs),
        },
        ConnectorKind::Beisen => match tables.beisen {
            Some(t) => beisen::validate(t, errs).map(VendorSpec::Beisen),
            None => missing(errs),
        },
        ConnectorKind::Fxiaoke => match tables.fxiaoke {
            Some(t) => fxiaoke::validate(t, errs).map(VendorSpec::Fxiaoke),
            None => missing(errs),
        },
        ConnectorKind::Salesforce => match tables.salesforce {
            Some(t) => salesforce::validate(t, errs).map(VendorSpec::Salesforce),
            None => missing(errs),
        },
    }
}

/// A secret reference written in the file as a literal: refused (pushed onto `errs`).
pub(crate) fn by_reference(what: &str, value: &Spanned<String>, errs: &mut Problems) -> SecretRef {
    let r = SecretRef::parse(value.get_ref());
    if r.is_literal() {
        errs.push((
            Some(value.span()),
            format!(
                "{what} is written in the file; give it by reference (`env:NAME` or `file:PATH`) so it stays out of the repository"
            ),
        ));
    }
    r
}

/// Resolves a secret for `what`, refusing an empty or blank value.
pub(crate) fn resolve(what: &str, r: &SecretRef) -> Result<Secret, String> {
    let s = r
        .resolve()
        .map_err(|e| format!("{what}: secret could not be read: {e}"))?;
    if s.expose().trim().is_empty() {
        return Err(format!(
            "{what} is empty; put the value the administrator gave you in {r:?}"
        ));
    }
    if s.expose().chars().any(char::is_whitespace) {
        return Err(format!(
            "{what} contains spaces or line breaks; copy it again without them (from {r:?})"
        ));
    }
    Ok(s)
}

/// A built vendor client with its state (tokens, sessions).
#[derive(Debug)]
pub enum VendorClient {
    /// Kingdee.
    Kingdee(kingdee::KingdeeClient),
    /// YonBIP.
    Yonbip(yonbip::YonbipClient),
    /// U8 EAI.
    U8Eai(u8::U8Client),
    /// Beisen.
    Beisen(beisen::BeisenClient),
    /// FxiaoKe.
    Fxiaoke(fxiaoke::FxiaokeClient),
    /// Salesforce.
    Salesforce(salesforce::SalesforceClient),
}

/// One exchange as it may be recorded (the connector redacts it): the document request as
/// finally sent, its answer, and the verdict.
#[derive(Debug)]
pub struct Sent {
    /// HTTP method.
    pub method: &'static str,
    /// The URL (secret query values are masked by the connector).
    pub url: url::Url,
    /// Headers sent (secret ones are masked by the connector).
    pub headers: Vec<(String, String)>,
    /// The answer, when one arrived.
    pub answer: Option<Answer>,
    /// What became of it.
    pub verdict: Verdict,
    /// `id` and `number` the target returned, when it did.
    pub captured: BTreeMap<String, Value>,
    /// Short-lived secrets used (token, session id) to scrub from the record.
    pub volatile: Vec<String>,
}

impl VendorClient {
    /// Resolves the secrets of `spec` and checks them; `base` is the connector's URL.
    ///
    /// # Errors
    /// What is missing or malformed, naming the setting.
    pub fn build(spec: &VendorSpec, base: &url::Url) -> Result<VendorClient, String> {
        Ok(match spec {
            VendorSpec::Kingdee(s) => {
                VendorClient::Kingdee(kingdee::KingdeeClient::build(s, base)?)
            }
            VendorSpec::Yonbip(s) => VendorClient::Yonbip(yonbip::YonbipClient::build(s, base)?),
            VendorSpec::U8Eai(s) => VendorClient::U8Eai(u8::U8Client::build(s, base)),
            VendorSpec::Beisen(s) => VendorClient::Beisen(beisen::BeisenClient::build(s, base)?),
            VendorSpec::Fxiaoke(s) => {
                VendorClient::Fxiaoke(fxiaoke::FxiaokeClient::build(s, base)?)
            }
            VendorSpec::Salesforce(s) => {
                VendorClient::Salesforce(salesforce::SalesforceClient::build(s, base)?)
            }
        })
    }

    /// The document in the vendor's envelope (the body sent).
    ///
    /// # Errors
    /// Why the document cannot be wrapped (the document is refused, permanently).
    pub fn encode(&self, document: &Value) -> Result<Vec<u8>, String> {
        match self {
            VendorClient::Kingdee(c) => c.encode(document),
            VendorClient::Yonbip(c) => c.encode(document),
            VendorClient::U8Eai(c) => c.encode(document),
            VendorClient::Beisen(c) => c.encode(document),
            VendorClient::Fxiaoke(c) => c.encode(document),
            VendorClient::Salesforce(c) => c.encode(document),
        }
    }

    /// The `Content-Type` of the body.
    pub fn content_type(&self) -> &'static str {
        match self {
            VendorClient::Kingdee(_)
            | VendorClient::Yonbip(_)
            | VendorClient::Beisen(_)
            | VendorClient::Fxiaoke(_)
            | VendorClient::Salesforce(_) => "application/json",
            VendorClient::U8Eai(_) => "text/xml; charset=utf-8",
        }
    }

    /// The URL documents are sent to, as far as known before sending (for the record of a
    /// request that was never sent).
    pub fn document_url(&self) -> url::Url {
        match self {
            VendorClient::Kingdee(c) => c.document_url(),
            VendorClient::Yonbip(c) => c.document_url(),
            VendorClient::U8Eai(c) => c.document_url(),
            VendorClient::Beisen(c) => c.document_url(),
            VendorClient::Fxiaoke(c) => c.document_url(),
            VendorClient::Salesforce(c) => c.document_url(),
        }
    }

    /// Sends one encoded document (with one re-auth resend at most).
    pub async fn send(&self, http: &reqwest::Client, total: Duration, body: &[u8]) -> Sent {
        match self {
            VendorClient::Kingdee(c) => c.send(http, total, body).await,
            VendorClient::Yonbip(c) => c.send(http, total, body).await,
            VendorClient::U8Eai(c) => c.send(http, total, body).await,
            VendorClient::Beisen(c) => c.send(http, total, body).await,
            VendorClient::Fxiaoke(c) => c.send(http, total, body).await,
            VendorClient::Salesforce(c) => c.send(http, total, body).await,
        }
    }

    /// Values always secret (AppSecret, password, AppID), scrubbed wherever they appear.
    pub fn static_secrets(&self) -> Vec<String> {
        match self {
            VendorClient::Kingdee(c) => c.static_secrets(),
            VendorClient::Yonbip(c) => c.static_secrets(),
            VendorClient::U8Eai(_) => Vec::new(),
            VendorClient::Beisen(c) => c.static_secrets(),
            VendorClient::Fxiaoke(c) => c.static_secrets(),
            VendorClient::Salesforce(c) => c.static_secrets(),
        }
    }

    /// Header names (lower case) whose values are secret (signatures, session ids).
    pub fn secret_headers(&self) -> Vec<String> {
        match self {
            VendorClient::Kingdee(_) => kingdee::SECRET_HEADERS.map(String::from).to_vec(),
            VendorClient::Yonbip(_)
            | VendorClient::U8Eai(_)
            | VendorClient::Beisen(_)
            | VendorClient::Fxiaoke(_)
            | VendorClient::Salesforce(_) => Vec::new(),
        }
    }

    /// Logins or token requests made so far.
    pub fn auth_requests(&self) -> u64 {
        match self {
            VendorClient::Kingdee(c) => c.logins(),
            VendorClient::Yonbip(c) => c.token_fetches(),
            VendorClient::U8Eai(_) => 0,
            VendorClient::Beisen(c) => c.token_fetches(),
            VendorClient::Fxiaoke(c) => c.token_fetches(),
            VendorClient::Salesforce(c) => c.token_fetches(),
        }
    }
}

/// POSTs `body` to `url`; the answer (capped) or the transport failure's verdict.
pub(crate) async fn post(
    http: &reqwest::Client,
    total: Duration,
    url: &url::Url,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Answer, Verdict> {
    let mut req = http.post(url.clone()).body(body.to_vec());
    for (n, v) in headers {
        req = req.header(n.as_str(), v.as_str());
    }
    read(req, total).await
}

/// GETs `url`; the answer (capped) or the transport failure's verdict.
pub(crate) async fn get(
    http: &reqwest::Client,
    total: Duration,
    url: &url::Url,
) -> Result<Answer, Verdict> {
    read(http.get(url.clone()), total).await
}

/// The verdict for a vendor outcome other than re-auth (which the client handles first);
/// `captured` receives the id and number of a success.
pub(crate) fn verdict(outcome: Outcome, captured: &mut BTreeMap<String, Value>) -> Verdict {
    match outcome {
        Outcome::Success { captured: ids } => {
            if let Some(id) = ids.id {
                captured.insert("id".into(), Value::String(id));
            }
            if let Some(number) = ids.number {
                captured.insert("number".into(), Value::String(number));
            }
            Verdict::Delivered
        }
        Outcome::Duplicate { .. } => Verdict::Duplicate,
        Outcome::Retryable { reason, after } => Verdict::Retryable { after, reason },
        Outcome::Reauth { reason } => Verdict::Permanent {
            reason: format!(
                "{reason} — refused again after fresh credentials; check the connector's account, user and secrets (and the server clock), then replay"
            ),
        },
        Outcome::Permanent { reason } => Verdict::Permanent { reason },
    }
}

/// The verdict when credentials could not be obtained: retryable when the auth endpoint
/// failed or was unreachable (5xx, transport), permanent when it refused.
pub(crate) fn auth_failed(status: Option<u16>, reason: String, fix: &str) -> Verdict {
    match status {
        Some(s) if s < 500 => Verdict::Permanent {
            reason: format!("{reason}; {fix}"),
        },
        _ => Verdict::Retryable {
            after: None,
            reason,
        },
    }
}

#[cfg(test)]
mod tests;
