//! Probes of the vendor protocols: each system's own token request or login, built and read
//! with the primitives in `crate::deliver::vendor`, so a probe sends what deliveries send.
//!
//! Each function takes the resolved settings it needs and answers the detail of a success
//! (never a token) or the [`Problem`] with its fix. Must NOT cache what it obtains.

use std::time::Duration;

use url::Url;

use super::{ProbeAnswer, Problem, exchange, status_problem};
use crate::config::Secret;
use crate::deliver::vendor::{beisen, fxiaoke, salesforce};

/// Time limits and client for a vendor probe.
#[derive(Debug, Clone)]
pub struct ProbeHttp {
    /// The client.
    pub client: reqwest::Client,
    /// Connect limit.
    pub connect: Duration,
    /// Whole-request limit.
    pub total: Duration,
}

impl ProbeHttp {
    /// A probe client with these limits.
    ///
    /// # Errors
    /// [`Problem::Config`] when no HTTP client can be built.
    pub fn new(connect: Duration, total: Duration) -> Result<ProbeHttp, Problem> {
        Ok(ProbeHttp {
            client: super::client(connect, total)?,
            connect,
            total,
        })
    }

    async fn send(&self, url: &Url, req: reqwest::RequestBuilder) -> Result<ProbeAnswer, Problem> {
        exchange(url, req, self.connect, self.total).await
    }
}

/// `base` joined with an absolute API path (keeps a base path such as `/k3cloud`).
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    u.set_path(&joined);
    u.set_query(None);
    u
}

/// Beisen: the form-encoded token request (`POST /OAuth/Token`).
///
/// # Errors
/// The [`Problem`] with its fix.
pub async fn beisen_token(
    http: &ProbeHttp,
    base: &Url,
    app_id: &str,
    tenant_id: &str,
    secret: &Secret,
) -> Result<String, Problem> {
    let url = endpoint(base, beisen::TOKEN_PATH);
    let form = beisen::token_form(app_id, tenant_id, secret.expose());
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let req = http
        .client
        .post(url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body);
    let a = http.send(&url, req).await?;
    match beisen::parse_token(a.status, &a.body) {
        Ok(_) => Ok(format!("Beisen token issued for tenant {tenant_id}")),
        Err(beisen::BeisenError::Refused { status, error }) => {
            let fix = match error.as_str() {
                "invalid_tenantid" => "check tenant_id (租户ID) in the connector file",
                _ => "check app_id and the AppSecret (secret) in the connector file",
            };
            Err(Problem::Credentials {
                detail: format!("HTTP {status} {error}"),
                fix: fix.into(),
            })
        }
        Err(beisen::BeisenError::Unreadable { .. }) => Err(status_problem(&a)),
    }
}

/// FxiaoKe: the JSON token request (`POST /oauth2.0/token`). Uses one of the ≤ 10 token
/// calls FxiaoKe allows a minute.
///
/// # Errors
/// The [`Problem`] with its fix.
pub async fn fxiaoke_token(
    http: &ProbeHttp,
    base: &Url,
    app_id: &str,
    app_secret: &Secret,
    permanent_code: &Secret,
) -> Result<String, Problem> {
    let mut url = endpoint(base, fxiaoke::TOKEN_PATH);
    url.query_pairs_mut()
        .append_pair("thirdTraceId", &hex::encode(rand::random::<[u8; 16]>()));
    let body = fxiaoke::token_body(app_id, app_secret.expose(), permanent_code.expose());
    let req = http.client.post(url.clone()).json(&body);
    let a = http.send(&url, req).await?;
    match fxiaoke::parse_token(a.status, &a.body) {
        Ok(t) => Ok(format!("FxiaoKe token issued for enterprise account {}", t.ea)),
        Err(fxiaoke::FxiaokeError::Refused { code, message }) => Err(Problem::Credentials {
            detail: format!("errorCode {code}: {message}"),
            fix: "check app_id, the appSecret and the permanentCode in the connector file (FxiaoKe's message names the one it refused)".into(),
        }),
        Err(fxiaoke::FxiaokeError::Unreadable { .. }) => Err(status_problem(&a)),
    }
}

/// Salesforce: the OAuth2 client-credentials token request on the My Domain host.
///
/// # Errors
/// The [`Problem`] with its fix.
pub async fn salesforce_token(
    http: &ProbeHttp,
    login: &Url,
    client_id: &str,
    client_secret: &Secret,
) -> Result<String, Problem> {
    let url = endpoint(login, salesforce::TOKEN_PATH);
    let form = salesforce::token_form(client_id, client_secret.expose());
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let req = http
        .client
        .post(url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body);
    let a = http.send(&url, req).await?;
    match salesforce::parse_token(a.status, &a.body) {
        Ok(t) => Ok(format!(
            "Salesforce token issued; instance {}",
            t.instance_url
        )),
        Err(salesforce::SalesforceError::Refused {
            status,
            error,
            description,
        }) => {
            let fix = match error.as_str() {
                "invalid_client" | "invalid_client_id" => {
                    "check client_id (Consumer Key) and client_secret (Consumer Secret) of the connected app"
                }
                _ => {
                    "in Setup, enable the client credentials flow for the connected app and give it a run-as user (and allow this IP if the app restricts IPs)"
                }
            };
            Err(Problem::Credentials {
                detail: format!("HTTP {status} {error}: {description}"),
                fix: fix.into(),
            })
        }
        Err(salesforce::SalesforceError::Unreadable { .. }) => Err(status_problem(&a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path() {
        let base = Url::parse("https://erp.example/k3cloud/?x=1").unwrap();
        assert_eq!(
            endpoint(&base, "/OAuth/Token").as_str(),
            "https://erp.example/k3cloud/OAuth/Token"
        );
        let bare = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            endpoint(&bare, "/oauth2.0/token").as_str(),
            "http://127.0.0.1:8080/oauth2.0/token"
        );
    }
}
