//! `kind = "salesforce"`: the `[salesforce]` table and the Salesforce REST connector state.
//!
//! The connector's `url` is the org's My Domain (`https://<name>.my.salesforce.com`), where
//! the OAuth2 client-credentials token is asked for; the token answer names the
//! `instance_url` calls go to. Salesforce announces no lifetime: the token is kept until a
//! call answers 401 `INVALID_SESSION_ID`, then fetched anew (single-flight) and the call
//! sent once more. Documents are upserted by external id,
//! `PATCH …/sobjects/<object>/<external_id_field>/<value>`, the value read from the mapped
//! document (and left out of the body, which Salesforce takes from the path): 201 created →
//! delivered; 200 (the record was already there, updated) or 400 `DUPLICATE_VALUE` →
//! duplicate; errors come as a top-level JSON array.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::token_cache::TokenCache;
use super::{Problems, Sent, auth_failed, by_reference, resolve, verdict};
use crate::config::{Secret, SecretRef};
use crate::deliver::Verdict;
use crate::deliver::http::read;
use crate::deliver::vendor::salesforce::{self as wire, SalesforceError, TOKEN_PATH};
use crate::deliver::vendor::{Outcome, code_str};

/// `[salesforce]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceFile {
    client_id: Spanned<String>,
    client_secret: Spanned<String>,
    #[serde(default = "default_version")]
    api_version: Spanned<String>,
    object: Spanned<String>,
    external_id_field: Spanned<String>,
}

fn default_version() -> Spanned<String> {
    Spanned::new(0..0, "v60.0".to_owned())
}

/// `[salesforce]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceSpec {
    /// The connected app's Consumer Key.
    pub client_id: String,
    /// The connected app's Consumer Secret, by reference.
    pub client_secret: SecretRef,
    /// REST API version (`v60.0`).
    pub api_version: String,
    /// The sObject (`Account`, `Contact`, a custom `…__c`).
    pub object: String,
    /// The external id field (`WeCom_External_Id__c`); the mapped document carries its value
    /// under the same name.
    pub external_id_field: String,
}

/// Validates `[salesforce]`.
pub fn validate(t: Spanned<SalesforceFile>, errs: &mut Problems) -> Option<SalesforceSpec> {
    let f = t.into_inner();
    let before = errs.len();
    for (what, v) in [
        ("salesforce.client_id", &f.client_id),
        ("salesforce.object", &f.object),
        ("salesforce.external_id_field", &f.external_id_field),
    ] {
        if v.get_ref().trim().is_empty() || v.get_ref().contains('/') {
            errs.push((Some(v.span()), format!("{what} is empty or contains `/`")));
        }
    }
    let v = f.api_version.get_ref();
    if !(v.starts_with('v') && v[1..].parse::<f64>().is_ok()) {
        errs.push((
            Some(f.api_version.span()),
            format!("salesforce.api_version `{v}` is not like `v60.0`"),
        ));
    }
    let client_secret = by_reference("salesforce.client_secret", &f.client_secret, errs);
    (errs.len() == before).then(|| SalesforceSpec {
        client_id: f.client_id.into_inner(),
        client_secret,
        api_version: f.api_version.into_inner(),
        object: f.object.into_inner(),
        external_id_field: f.external_id_field.into_inner(),
    })
}

#[derive(Clone)]
struct Token {
    access_token: Secret,
    instance_url: String,
}

/// A built Salesforce connector: secret resolved, token cached.
pub struct SalesforceClient {
    spec: SalesforceSpec,
    client_secret: Secret,
    base: url::Url,
    tokens: TokenCache<Token>,
}

impl std::fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("client_id", &self.spec.client_id)
            .field("object", &self.spec.object)
            .finish_non_exhaustive()
    }
}

impl SalesforceClient {
    /// Resolves and checks the secret.
    ///
    /// # Errors
    /// A secret that cannot be read or is empty.
    pub fn build(spec: &SalesforceSpec, base: &url::Url) -> Result<SalesforceClient, String> {
        Ok(SalesforceClient {
            client_secret: resolve("salesforce.client_secret", &spec.client_secret)?,
            spec: spec.clone(),
            base: base.clone(),
            tokens: TokenCache::new(Duration::ZERO),
        })
    }

    fn upsert_url(&self, instance: &str, value: &str) -> Result<url::Url, String> {
        let path = wire::upsert_path(
            &self.spec.api_version,
            &self.spec.object,
            &self.spec.external_id_field,
            value,
        );
        url::Url::parse(&format!("{}{path}", instance.trim_end_matches('/')))
            .map_err(|e| format!("Salesforce instance_url `{instance}` is not a URL: {e}"))
    }

    pub(super) fn document_url(&self) -> url::Url {
        crate::deliver::probe::vendor::endpoint(
            &self.base,
            &format!(
                "/services/data/{}/sobjects/{}/{}/",
                self.spec.api_version, self.spec.object, self.spec.external_id_field
            ),
        )
    }

    pub(super) fn token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    pub(super) fn static_secrets(&self) -> Vec<String> {
        vec![self.client_secret.expose().to_owned()]
    }

    /// The mapped document as JSON, after checking it carries the external id.
    pub(super) fn encode(&self, document: &Value) -> Result<Vec<u8>, String> {
        self.external_id(document)?;
        serde_json::to_vec(document).map_err(|e| e.to_string())
    }

    fn external_id(&self, document: &Value) -> Result<String, String> {
        document
            .get(&self.spec.external_id_field)
            .and_then(code_str)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "the document has no `{}`: the mapping must fill it with the business key (the external user id or SpNo)",
                    self.spec.external_id_field
                )
            })
    }

    async fn token(&self, http: &reqwest::Client, total: Duration) -> Result<Token, Verdict> {
        self.tokens
            .get(|| async {
                let url = crate::deliver::probe::vendor::endpoint(&self.base, TOKEN_PATH);
                let form = wire::token_form(&self.spec.client_id, self.client_secret.expose());
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                    .finish();
                let req = http
                    .post(url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body);
                let a = read(req, total).await?;
                match wire::parse_token(a.status, &a.body) {
                    Ok(t) => Ok((
                        Token {
                            access_token: Secret::new(t.access_token),
                            instance_url: t.instance_url,
                        },
                        None,
                    )),
                    Err(e) => {
                        let status = match &e {
                            SalesforceError::Refused { status, .. }
                            | SalesforceError::Unreadable { status, .. } => *status,
                        };
                        Err(auth_failed(
                            Some(status),
                            e.to_string(),
                            "check salesforce.client_id and salesforce.client_secret, and that the connected app allows the client credentials flow",
                        ))
                    }
                }
            })
            .await
    }

    pub(super) async fn send(&self, http: &reqwest::Client, total: Duration, body: &[u8]) -> Sent {
        let mut sent = Sent {
            method: "PATCH",
            url: self.document_url(),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            answer: None,
            verdict: Verdict::Permanent {
                reason: String::new(),
            },
            captured: BTreeMap::new(),
            volatile: Vec::new(),
        };
        // The external id travels in the path; the body carries the other fields.
        let prepared = serde_json::from_slice::<Value>(body)
            .map_err(|e| e.to_string())
            .and_then(|mut doc| {
                let value = self.external_id(&doc)?;
                if let Some(m) = doc.as_object_mut() {
                    m.remove(&self.spec.external_id_field);
                }
                Ok((value, serde_json::to_vec(&doc).unwrap_or_default()))
            });
        let (value, fields) = match prepared {
            Ok(p) => p,
            Err(reason) => {
                sent.verdict = Verdict::Permanent { reason };
                return sent;
            }
        };
        for round in 0..2 {
            let token = match self.token(http, total).await {
                Ok(t) => t,
                Err(v) => {
                    sent.verdict = v;
                    return sent;
                }
            };
            sent.volatile.push(token.access_token.expose().to_owned());
            sent.url = match self.upsert_url(&token.instance_url, &value) {
                Ok(u) => u,
                Err(reason) => {
                    sent.verdict = Verdict::Permanent { reason };
                    return sent;
                }
            };
            sent.headers = vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                (
                    "Authorization".to_owned(),
                    format!("Bearer {}", token.access_token.expose()),
                ),
            ];
            let mut req = http.patch(sent.url.clone()).body(fields.clone());
            for (n, v) in &sent.headers {
                req = req.header(n.as_str(), v.as_str());
            }
            let answer = match read(req, total).await {
                Ok(a) => a,
                Err(v) => {
                    sent.verdict = v;
                    return sent;
                }
            };
            let outcome = wire::classify(answer.status, &answer.body);
            let updated = answer.status == 200;
            sent.answer = Some(answer);
            match (outcome, round) {
                (Outcome::Reauth { reason }, 0) => {
                    tracing::info!(reason = %reason, "Salesforce refused the token; fetching a new one and sending once more");
                    metrics::counter!("wecom_bridge_deliver_vendor_reauth_total", "vendor" => "salesforce").increment(1);
                    let used = token.access_token;
                    self.tokens.forget(|t| t.access_token == used).await;
                }
                // 200 on an upsert: a record with this external id was already there (a
                // retry after a lost answer, or created by hand): it is at the target.
                (Outcome::Success { captured }, _) if updated => {
                    if let Some(id) = captured.id {
                        sent.captured.insert("id".into(), Value::String(id));
                    }
                    sent.verdict = Verdict::Duplicate;
                    return sent;
                }
                (outcome, _) => {
                    sent.verdict = verdict(outcome, &mut sent.captured);
                    return sent;
                }
            }
        }
        sent
    }
}
