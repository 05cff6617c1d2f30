//! WeCom's sign-in, as the fake WeCom server plays it: the OAuth2 authorize page opened
//! inside the WeCom client (`/connect/oauth2/authorize`), the web login page with the QR
//! code (`/wwlogin/sso/login`), and `cgi-bin/auth/getuserinfo`.
//!
//! No one scans a QR code here: both pages act as if the configured test member
//! ([`FakeWeCom::set_login_user`]) had confirmed, and send the browser back to
//! `redirect_uri` with a fresh `code` and the caller's `state` (the authorize page with a
//! 302; the QR-code page, being a page of WeCom's site, with a refresh: see
//! [`refresh_target`]); with nobody configured (or
//! [`FakeWeCom::decline_logins`]) they send it back with `state` only, as WeCom does when the
//! member declines. Codes are single-use and expire after five minutes, and only a token of
//! the corp that issued them can redeem them (40029 otherwise), as WeCom's.

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakeState, FakeWeCom, QueryMap, Shared, lock, mix};

/// How long a code may wait to be redeemed (WeCom: five minutes).
const CODE_TTL: Duration = Duration::from_secs(300);

/// Who "confirms" at the login pages.
#[derive(Debug, Clone)]
enum Confirming {
    Member(String),
    NotMember(String),
}

struct IssuedCode {
    corp_id: String,
    who: Confirming,
    issued: Instant,
}

/// The login half of the fake's state.
#[derive(Default)]
pub(super) struct LoginState {
    confirming: Option<Confirming>,
    codes: std::collections::HashMap<String, IssuedCode>,
    issued: usize,
}

impl FakeWeCom {
    /// From now on the login pages sign in the corp member `user_id`.
    pub fn set_login_user(&self, user_id: &str) {
        self.lock().login.confirming = Some(Confirming::Member(user_id.to_owned()));
    }

    /// From now on the login pages sign in someone who is not a member of the corp
    /// (`auth/getuserinfo` then answers an `openid`, no `userid`).
    pub fn set_login_non_member(&self, open_id: &str) {
        self.lock().login.confirming = Some(Confirming::NotMember(open_id.to_owned()));
    }

    /// From now on the login pages send the browser back without a code (declined).
    pub fn decline_logins(&self) {
        self.lock().login.confirming = None;
    }

    /// How many codes the login pages have issued.
    pub fn login_codes_issued(&self) -> usize {
        self.lock().login.issued
    }

    /// The OAuth2 authorize page (WeCom's `https://open.weixin.qq.com/connect/oauth2/authorize`).
    pub fn authorize_url(&self) -> String {
        format!("http://{}/connect/oauth2/authorize", self.server.addr)
    }

    /// The web login page (WeCom's `https://login.work.weixin.qq.com/wwlogin/sso/login`).
    pub fn sso_login_url(&self) -> String {
        format!("http://{}/wwlogin/sso/login", self.server.addr)
    }
}

impl FakeState {
    /// Checks a login page's query (the corp must be known) and answers the redirect back.
    fn login_page(&mut self, q: &QueryMap, page: &str) -> Result<String, String> {
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
        let corp_id = get("appid");
        if !self.credentials.contains_key(corp_id) {
            return Err(format!("{page}: unknown appid `{corp_id}`"));
        }
        match page {
            "authorize" => {
                if get("response_type") != "code" {
                    return Err("authorize: response_type must be `code`".into());
                }
                if !matches!(get("scope"), "snsapi_base" | "snsapi_privateinfo") {
                    return Err("authorize: scope must be snsapi_base or snsapi_privateinfo".into());
                }
            }
            _ => {
                if get("login_type") != "CorpApp" {
                    return Err("sso/login: login_type must be `CorpApp` for a corp's app".into());
                }
                if get("agentid").parse::<i64>().is_err() {
                    return Err("sso/login: agentid is required for login_type CorpApp".into());
                }
            }
        }
        let mut back = url::Url::parse(get("redirect_uri"))
            .map_err(|e| format!("{page}: redirect_uri is not a URL: {e}"))?;
        let state = get("state").to_owned();
        if let Some(who) = self.login.confirming.clone() {
            let n = self.next_id();
            let code = format!("FAKE_CODE_{:016x}{n:06}", mix(n));
            self.login.codes.insert(
                code.clone(),
                IssuedCode {
                    corp_id: corp_id.to_owned(),
                    who,
                    issued: Instant::now(),
                },
            );
            self.login.issued += 1;
            back.query_pairs_mut().append_pair("code", &code);
        }
        back.query_pairs_mut().append_pair("state", &state);
        Ok(back.into())
    }

    /// `auth/getuserinfo`, after the access token was checked: redeems the code once.
    fn getuserinfo(&mut self, q: &QueryMap) -> Value {
        let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
            return self.error(41008);
        };
        let token_corp = q
            .get("access_token")
            .and_then(|t| self.tokens.get(t))
            .map(|t| t.corp_id.clone());
        let Some(issued) = self.login.codes.remove(code) else {
            return self.error(40029);
        };
        if issued.issued.elapsed() >= CODE_TTL || token_corp.as_deref() != Some(&issued.corp_id) {
            return self.error(40029);
        }
        match issued.who {
            Confirming::Member(user_id) => FakeState::ok(json!({ "userid": user_id })),
            Confirming::NotMember(open_id) => FakeState::ok(json!({ "openid": open_id })),
        }
    }
}

/// The authorize page inside the WeCom client redirects at once (302).
fn redirect_or_error(result: Result<String, String>) -> Response {
    match result {
        Ok(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        // WeCom shows an error page in the browser; so does the fake.
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// The QR-code page is a page of WeCom's own, which navigates back once the code is scanned:
/// here at once (a refresh), so the way back starts on the stand-in's site, as with WeCom.
fn page_then_back(result: Result<String, String>) -> Response {
    match result {
        Ok(to) => {
            let to = to.replace('&', "&amp;").replace('"', "&quot;");
            let html = format!(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0; url={to}\"><title>WeCom login (stand-in)</title></head><body>scanned</body></html>"
            );
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// The URL a [`page_then_back`] page navigates to (for HTTP clients that are not browsers).
pub fn refresh_target(html: &str) -> Option<String> {
    let start = html.find("url=")? + 4;
    let end = start + html[start..].find('"')?;
    Some(
        html[start..end]
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

pub(super) async fn authorize(State(st): State<Shared>, Query(q): Query<QueryMap>) -> Response {
    redirect_or_error(lock(&st).login_page(&q, "authorize"))
}

pub(super) async fn sso_login(State(st): State<Shared>, Query(q): Query<QueryMap>) -> Response {
    page_then_back(lock(&st).login_page(&q, "sso/login"))
}

pub(super) async fn getuserinfo(
    State(st): State<Shared>,
    Query(q): Query<QueryMap>,
) -> axum::Json<Value> {
    let mut st = lock(&st);
    axum::Json(match st.authorize("auth/getuserinfo", &q) {
        Ok(()) => st.getuserinfo(&q),
        Err(e) => e,
    })
}
