//! Probes of the vendor protocols: each system's own token request or login, built and read
//! with the primitives in `crate::deliver::vendor`, so a probe sends what deliveries send.
//!
//! Each function takes the resolved settings it needs and answers the detail of a success
//! (never a token) or the [`Problem`] with its fix. Must NOT cache what it obtains.

use std::time::Duration;

use url::Url;

use super::{
    ProbeAnswer, ProbeResult, Problem, clocked, exchange, reachable, shown, status_problem,
};
use crate::config::{Secret, SecretRef};
use crate::deliver::vendor::client::{VendorSpec, kingdee::KingdeeAuth, resolve};
use crate::deliver::vendor::kingdee::{self, Op};
use crate::deliver::vendor::{beisen, fxiaoke, salesforce, yonbip};

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

    /// Sends `form` form-encoded to `url` (an OAuth2 token request).
    async fn send_form(
        &self,
        url: &Url,
        form: &[(&'static str, String)],
    ) -> Result<ProbeAnswer, Problem> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let req = self
            .client
            .post(url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(url, req).await
    }
}

/// Probes a vendor connector whose URL is `base`: what was probed, and the result.
pub(crate) async fn probe(
    http: &ProbeHttp,
    vendor: &VendorSpec,
    base: &Url,
) -> (String, ProbeResult) {
    let secret =
        |what: &str, r: &SecretRef| resolve(what, r).map_err(|detail| Problem::Config { detail });
    let done = |probed: String, r: Result<String, Problem>| {
        let result = match r {
            Ok(detail) => ProbeResult::Ok { detail },
            Err(problem) => ProbeResult::Failed { problem },
        };
        (probed, result)
    };
    match vendor {
        VendorSpec::Beisen(s) => {
            let probed = format!(
                "Beisen token request to {}",
                shown(&endpoint(base, beisen::TOKEN_PATH))
            );
            let r = match secret("beisen.secret", &s.secret) {
                Ok(k) => beisen_token(http, base, &s.app_id, &s.tenant_id, &k).await,
                Err(p) => Err(p),
            };
            done(probed, r)
        }
        VendorSpec::Fxiaoke(s) => {
            let probed = format!(
                "FxiaoKe token request to {}",
                shown(&endpoint(base, fxiaoke::TOKEN_PATH))
            );
            let r = match (
                secret("fxiaoke.app_secret", &s.app_secret),
                secret("fxiaoke.permanent_code", &s.permanent_code),
            ) {
                (Ok(a), Ok(p)) => fxiaoke_token(http, base, &s.app_id, &a, &p).await,
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            done(probed, r)
        }
        VendorSpec::Salesforce(s) => {
            let probed = format!(
                "Salesforce token request to {}",
                shown(&endpoint(base, salesforce::TOKEN_PATH))
            );
            let r = match secret("salesforce.client_secret", &s.client_secret) {
                Ok(k) => salesforce_token(http, base, &s.client_id, &k).await,
                Err(p) => Err(p),
            };
            done(probed, r)
        }
        VendorSpec::Yonbip(s) => {
            let probed = "YonBIP token request".to_owned();
            let r = match secret("yonbip.app_secret", &s.app_secret) {
                Ok(k) => {
                    yonbip_token(
                        http,
                        base,
                        s.tenant_id.as_deref(),
                        s.token_url.as_ref(),
                        &s.app_key,
                        &k,
                    )
                    .await
                }
                Err(p) => Err(p),
            };
            done(probed, r)
        }
        VendorSpec::Kingdee(s) => {
            let Some(op) = login_op(s.auth) else {
                return reachable(http, base, "Kingdee signed-header").await;
            };
            let url = endpoint(base, &Op::path(op, ""));
            let probed = format!("Kingdee {} at {}", op.service(), shown(&url));
            let creds = (|| {
                let opt = |what: &str, r: &Option<SecretRef>| match r {
                    Some(r) => secret(what, r).map(|s| s.expose().to_owned()),
                    None => Ok(String::new()),
                };
                Ok::<_, Problem>((
                    kingdee::Credentials {
                        acct_id: s.acct_id.clone(),
                        user: s.user.clone(),
                        app_id: opt("kingdee.app_id", &s.app_id)?,
                        app_secret: opt("kingdee.app_secret", &s.app_secret)?,
                        lcid: s.lcid,
                        org_num: s.org_num.clone(),
                    },
                    opt("kingdee.password", &s.password)?,
                ))
            })();
            let r = match creds {
                Ok((c, password)) => kingdee_login(http, &url, op, &c, &password).await,
                Err(p) => Err(p),
            };
            done(probed, r)
        }
        VendorSpec::U8Eai(_) => {
            reachable(http, base, "U8 EAI (network-level: no credentials)").await
        }
    }
}

fn login_op(auth: KingdeeAuth) -> Option<Op> {
    match auth {
        KingdeeAuth::Signed => None,
        KingdeeAuth::LoginBySign => Some(Op::LoginBySign),
        KingdeeAuth::LoginByAppSecret => Some(Op::LoginByAppSecret),
        KingdeeAuth::ValidateUser => Some(Op::ValidateUser),
    }
}

/// Kingdee: a session login (`LoginBySign`, `LoginByAppSecret` or `ValidateUser`).
///
/// # Errors
/// The [`Problem`] with its fix.
pub async fn kingdee_login(
    http: &ProbeHttp,
    url: &Url,
    op: Op,
    creds: &kingdee::Credentials,
    password: &str,
) -> Result<String, Problem> {
    let body = kingdee::login_body(op, creds, password, jiff::Timestamp::now().as_second());
    let req = http.client.post(url.clone()).json(&body);
    let a = http.send(url, req).await?;
    let r = match kingdee::parse_login(a.status, &a.body, std::iter::empty()) {
        Ok(_) => Ok(format!("Kingdee login accepted for user {} in 账套 {}", creds.user, creds.acct_id)),
        Err(kingdee::KingdeeError::LoginRefused { result_type, message }) => Err(Problem::Credentials {
            detail: format!("LoginResultType {result_type}: {message}"),
            fix: "check kingdee.acct_id (账套ID), kingdee.user and the app_id/app_secret or password with the Kingdee administrator".into(),
        }),
        Err(_) => Err(status_problem(&a)),
    };
    clocked(&a, r)
}

/// YonBIP: gateway discovery (with a tenant id) and the signed token GET.
///
/// # Errors
/// The [`Problem`] with its fix.
pub async fn yonbip_token(
    http: &ProbeHttp,
    base: &Url,
    tenant_id: Option<&str>,
    token_url: Option<&Url>,
    app_key: &str,
    app_secret: &Secret,
) -> Result<String, Problem> {
    let token_base = match (tenant_id, token_url) {
        (Some(tenant), _) => {
            let mut url = endpoint(base, yonbip::GATEWAY_PATH);
            url.query_pairs_mut().append_pair("tenantId", tenant);
            let a = http.send(&url, http.client.get(url.clone())).await?;
            let g = yonbip::parse_gateways(a.status, &a.body).map_err(|e| match e {
                yonbip::YonbipError::AuthRefused { code, message } => Problem::Credentials {
                    detail: format!("gateway discovery: code {code}: {message}"),
                    fix: "check yonbip.tenant_id (租户ID)".into(),
                },
                _ => status_problem(&a),
            })?;
            Url::parse(&g.token_url).map_err(|e| Problem::Unexpected {
                status: a.status,
                excerpt: format!("tokenUrl is not a URL: {e}"),
            })?
        }
        (None, Some(u)) => u.clone(),
        (None, None) => base.clone(),
    };
    let mut url = endpoint(&token_base, yonbip::TOKEN_PATH);
    url.query_pairs_mut().extend_pairs(yonbip::token_query(
        app_key,
        app_secret.expose(),
        jiff::Timestamp::now().as_millisecond(),
    ));
    let a = http.send(&url, http.client.get(url.clone())).await?;
    let r = match yonbip::parse_token(a.status, &a.body) {
        Ok(_) => Ok(format!("YonBIP token issued by {}", shown(&url))),
        Err(yonbip::YonbipError::AuthRefused { code, message }) => Err(Problem::Credentials {
            detail: format!("code {code}: {message}"),
            fix: "check yonbip.app_key and yonbip.app_secret with the YonBIP administrator; the request is signed with this machine's time, so check its clock too".into(),
        }),
        Err(_) => Err(status_problem(&a)),
    };
    clocked(&a, r)
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
    let a = http.send_form(&url, &form).await?;
    let r = match beisen::parse_token(a.status, &a.body) {
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
    };
    clocked(&a, r)
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
    let r = match fxiaoke::parse_token(a.status, &a.body) {
        Ok(t) => Ok(format!("FxiaoKe token issued for enterprise account {}", t.ea)),
        Err(fxiaoke::FxiaokeError::Refused { code, message }) => Err(Problem::Credentials {
            detail: format!("errorCode {code}: {message}"),
            fix: "check app_id, the appSecret and the permanentCode in the connector file (FxiaoKe's message names the one it refused)".into(),
        }),
        Err(fxiaoke::FxiaokeError::Unreadable { .. }) => Err(status_problem(&a)),
    };
    clocked(&a, r)
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
    let a = http.send_form(&url, &form).await?;
    let r = match salesforce::parse_token(a.status, &a.body) {
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
    };
    clocked(&a, r)
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
