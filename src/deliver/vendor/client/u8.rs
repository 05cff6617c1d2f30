//! `kind = "u8_eai"`: the `[u8_eai]` table and the U8 EAI connector.
//!
//! The mapped document holds the children of `<ufinterface>` (e.g. `{"voucher": {…}}` or
//! `{"po": {…}}`), written as XML by [`crate::deliver::vendor::u8eai::envelope`] under the
//! root attributes configured here. EAI has no auth of its own (it trusts the network and the
//! registered `sender`); answers are read in UTF-8 or GBK.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::{Problems, Sent, post, verdict};
use crate::deliver::Verdict;
use crate::deliver::vendor::u8eai::{self as wire, Root};

/// `[u8_eai]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct U8File {
    roottag: Spanned<String>,
    billtype: Spanned<String>,
    sender: Spanned<String>,
    #[serde(default = "default_receiver")]
    receiver: String,
    #[serde(default = "default_proc")]
    proc: String,
    #[serde(default = "default_codeexchanged")]
    codeexchanged: String,
}

fn default_receiver() -> String {
    "u8".into()
}
fn default_proc() -> String {
    "add".into()
}
fn default_codeexchanged() -> String {
    "N".into()
}

/// `[u8_eai]`, validated: the `<ufinterface>` root attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct U8Spec {
    /// `roottag` (`voucher`, `po`, …).
    pub roottag: String,
    /// `billtype` (`gl`, `purchaseorder`, …).
    pub billtype: String,
    /// `sender`: the EAI code registered for the bridge in U8 (EAI接口设置).
    pub sender: String,
    /// `receiver` (`u8`).
    pub receiver: String,
    /// `proc` (`add`).
    pub proc_: String,
    /// `codeexchanged` (`N`).
    pub codeexchanged: String,
}

/// Validates `[u8_eai]`.
pub fn validate(t: Spanned<U8File>, errs: &mut Problems) -> Option<U8Spec> {
    let f = t.into_inner();
    let before = errs.len();
    for (what, v) in [
        ("u8_eai.roottag", &f.roottag),
        ("u8_eai.billtype", &f.billtype),
        ("u8_eai.sender", &f.sender),
    ] {
        let text = v.get_ref();
        if text.trim().is_empty()
            || !text
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            errs.push((
                Some(v.span()),
                format!("{what} `{text}` must be a non-empty code (letters, digits, _ - .)"),
            ));
        }
    }
    (errs.len() == before).then(|| U8Spec {
        roottag: f.roottag.into_inner(),
        billtype: f.billtype.into_inner(),
        sender: f.sender.into_inner(),
        receiver: f.receiver,
        proc_: f.proc,
        codeexchanged: f.codeexchanged,
    })
}

/// A built U8 EAI connector.
#[derive(Debug)]
pub struct U8Client {
    root: Root,
    url: url::Url,
}

impl U8Client {
    /// Builds the client (nothing to resolve).
    pub fn build(spec: &U8Spec, base: &url::Url) -> U8Client {
        U8Client {
            root: Root {
                roottag: spec.roottag.clone(),
                billtype: spec.billtype.clone(),
                sender: spec.sender.clone(),
                receiver: spec.receiver.clone(),
                proc_: spec.proc_.clone(),
                codeexchanged: spec.codeexchanged.clone(),
            },
            url: base.clone(),
        }
    }

    pub(super) fn document_url(&self) -> url::Url {
        self.url.clone()
    }

    pub(super) fn encode(&self, document: &Value) -> Result<Vec<u8>, String> {
        wire::envelope(&self.root, document).map_err(|e| e.to_string())
    }

    pub(super) async fn send(&self, http: &reqwest::Client, total: Duration, body: &[u8]) -> Sent {
        let headers = vec![(
            "Content-Type".to_owned(),
            "text/xml; charset=utf-8".to_owned(),
        )];
        let mut sent = Sent {
            method: "POST",
            url: self.url.clone(),
            headers: headers.clone(),
            answer: None,
            verdict: Verdict::Permanent {
                reason: String::new(),
            },
            captured: BTreeMap::new(),
            volatile: Vec::new(),
        };
        match post(http, total, &self.url, &headers, body).await {
            Ok(mut a) => {
                sent.verdict = verdict(wire::classify(a.status, &a.body), &mut sent.captured);
                // Recorded as text people can read: a GBK answer is kept decoded (UTF-8).
                a.body = wire::decode(&a.body).into_bytes();
                sent.answer = Some(a);
            }
            Err(v) => sent.verdict = v,
        }
        sent
    }
}
