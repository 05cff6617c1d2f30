//! Sign-in with WeCom: operators prove who they are with their WeCom identity instead of a
//! token — WeCom's OAuth2 web login inside the WeCom client, or its QR-code web login in a
//! browser. Both send the browser back to `/console/wecom/callback` with a one-time `code`
//! and our `state`; the code is exchanged for the member's user id (`auth/getuserinfo`, with
//! the app's access token), and the user id is looked up in `[[console.wecom_users]]`.
//!
//! It owns the login URLs, the `state` check (a random value in a cookie bound to the
//! browser: login CSRF), and the decision who may in with which role; every refusal is a
//! typed [`Refusal`]. The pages that run the flow are in `pages::wecom_sign_in`.
//!
//! It never logs or stores a code; a refused member is audited with their user id.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::settings::{ConsoleConfig, Role};
use crate::config::AppConfig;
use crate::route::RouteContext;
use crate::wecom::api::{ApiError, Credentials, LoginIdentity, WeComApi};

/// The cookie that binds a sign-in's `state` to the browser that started it.
pub const STATE_COOKIE: &str = "wb_wecom_state";
/// Where WeCom sends the browser back.
pub const CALLBACK_PATH: &str = "/console/wecom/callback";
/// How long a started sign-in may take (the state cookie's lifetime), in seconds.
pub const STATE_MAX_AGE_SECS: u64 = 600;

/// Which of WeCom's two login pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginKind {
    /// The OAuth2 web login, inside the WeCom client (silent: no QR code).
    OAuth2,
    /// The web login page with a QR code, in a browser.
    Qr,
}

impl LoginKind {
    /// OAuth2 inside the WeCom client (its user agent says `wxwork`), the QR code elsewhere.
    pub fn for_user_agent(user_agent: &str) -> LoginKind {
        if user_agent.to_ascii_lowercase().contains("wxwork") {
            LoginKind::OAuth2
        } else {
            LoginKind::Qr
        }
    }
}

/// Why a sign-in with WeCom was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `state` is missing or is not the one this browser started with (login CSRF, or
    /// a sign-in that took longer than the cookie lives).
    #[error("the sign-in's state does not match this browser's")]
    BadState,
    /// WeCom sent the browser back without a code (the member declined).
    #[error("WeCom returned no code (sign-in declined)")]
    Declined,
    /// WeCom does not know the code: used before, older than five minutes, or forged.
    #[error("invalid or used code")]
    InvalidCode,
    /// The person is not a member of the corp.
    #[error("not a member of the corp (openid {0})")]
    NotMember(String),
    /// A member who is not in `[[console.wecom_users]]`.
    #[error("WeCom user {0} is not allowed")]
    UnknownUser(String),
    /// WeCom could not be asked (network, token, permission); says why.
    #[error("WeCom did not answer: {0}")]
    WeCom(String),
}

impl Refusal {
    /// Label for the metric `wecom_bridge_console_refused_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadState => "wecom_state",
            Refusal::Declined => "wecom_declined",
            Refusal::InvalidCode => "wecom_code",
            Refusal::NotMember(_) => "wecom_not_member",
            Refusal::UnknownUser(_) => "wecom_unknown_user",
            Refusal::WeCom(_) => "wecom_unavailable",
        }
    }

    /// Who the audit row names: the user id when WeCom told us, else `unknown`.
    pub fn who(&self) -> String {
        match self {
            Refusal::UnknownUser(id) => principal_name(id),
            Refusal::NotMember(open_id) => format!("wecom-openid:{open_id}"),
            _ => "unknown".into(),
        }
    }

    /// The HTTP status of the refusal page.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Refusal::BadState | Refusal::NotMember(_) | Refusal::UnknownUser(_) => {
                StatusCode::FORBIDDEN
            }
            Refusal::Declined | Refusal::InvalidCode => StatusCode::UNAUTHORIZED,
            Refusal::WeCom(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// What the page tells the person, and what to do.
    pub fn message(&self) -> String {
        match self {
            Refusal::BadState => "This sign-in was not started in this browser, or it took too long. Please start again.".into(),
            Refusal::Declined => "WeCom did not confirm the sign-in. Please start again and confirm it in WeCom.".into(),
            Refusal::InvalidCode => "This WeCom sign-in link was already used or has expired. Please start again.".into(),
            Refusal::NotMember(_) => "Only members of the company can sign in with WeCom.".into(),
            Refusal::UnknownUser(id) => format!(
                "Your WeCom account ({id}) has no access to this console. Ask the bridge's administrator to add it under [[console.wecom_users]]."
            ),
            Refusal::WeCom(_) => "WeCom could not confirm the sign-in right now. Please try again in a minute, or sign in with a token.".into(),
        }
    }
}

/// The principal name of a WeCom member (`wecom:<user_id>`), so the audit log tells them
/// apart from token names.
pub fn principal_name(user_id: &str) -> String {
    format!("wecom:{user_id}")
}

/// Sign-in with WeCom as configured, resolved at start.
#[derive(Debug)]
pub struct WeComSignIn {
    credentials: Credentials,
    agent_id: i64,
    authorize_url: String,
    sso_url: String,
    public_url: Option<String>,
    users: HashMap<String, Role>,
}

impl WeComSignIn {
    /// Sign-in with WeCom from `[console.wecom_login]`, the app it names (its AgentId) and
    /// the app's credentials as the route context resolved them; `None` when it is off
    /// (validation has already refused an app without a secret or AgentId).
    pub fn from_config(
        console: &ConsoleConfig,
        apps: &BTreeMap<String, AppConfig>,
        route: &RouteContext,
    ) -> Option<WeComSignIn> {
        let login = &console.wecom_login;
        if login.app.is_empty() {
            return None;
        }
        let agent_id = apps.get(&login.app)?.agent_id?;
        let credentials = route.apps.get(&login.app)?.credentials.clone()?;
        let public_url =
            Some(login.public_url.trim_end_matches('/').to_string()).filter(|u| !u.is_empty());
        Some(WeComSignIn {
            credentials,
            agent_id,
            authorize_url: login.authorize_url.clone(),
            sso_url: login.sso_url.clone(),
            public_url,
            users: console
                .wecom_users
                .iter()
                .map(|u| (u.user_id.clone(), u.role))
                .collect(),
        })
    }

    /// The absolute callback URL WeCom must send the browser to: from `public_url`, or from
    /// the request's `Host` (which the listener's guard has checked).
    pub fn redirect_uri(&self, host: &str, secure: bool) -> String {
        match &self.public_url {
            Some(base) => format!("{base}{CALLBACK_PATH}"),
            None => {
                let scheme = if secure { "https" } else { "http" };
                format!("{scheme}://{host}{CALLBACK_PATH}")
            }
        }
    }

    /// The WeCom page that signs the member in and sends them to `redirect_uri` with a code
    /// and `state`.
    pub fn login_url(&self, kind: LoginKind, redirect_uri: &str, state: &str) -> String {
        let corp = self.credentials.corp_id.as_str();
        let agent = self.agent_id.to_string();
        let (base, pairs, fragment): (&str, Vec<(&str, &str)>, &str) = match kind {
            // The fragment tells the WeCom client to add the identity (WeCom's documented form).
            LoginKind::OAuth2 => (
                &self.authorize_url,
                vec![
                    ("appid", corp),
                    ("redirect_uri", redirect_uri),
                    ("response_type", "code"),
                    ("scope", "snsapi_base"),
                    ("state", state),
                    ("agentid", &agent),
                ],
                "#wechat_redirect",
            ),
            LoginKind::Qr => (
                &self.sso_url,
                vec![
                    ("login_type", "CorpApp"),
                    ("appid", corp),
                    ("agentid", &agent),
                    ("redirect_uri", redirect_uri),
                    ("state", state),
                ],
                "",
            ),
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{base}?{query}{fragment}")
    }

    /// The role of a member, if they may sign in.
    pub fn role_of(&self, user_id: &str) -> Option<Role> {
        self.users.get(user_id).copied()
    }

    /// Checks the callback: `state` against the browser's cookie, then the code with WeCom,
    /// then the member against `[[console.wecom_users]]`. Answers (user id, role).
    pub async fn sign_in(
        &self,
        api: &WeComApi,
        cookie_state: Option<&str>,
        state: Option<&str>,
        code: Option<&str>,
    ) -> Result<(String, Role), Refusal> {
        match (cookie_state, state) {
            (Some(c), Some(s)) if !c.is_empty() && super::auth::same(c, s) => {}
            _ => return Err(Refusal::BadState),
        }
        let code = code.filter(|c| !c.is_empty()).ok_or(Refusal::Declined)?;
        if code.len() > 512 {
            // WeCom's codes are at most 512 bytes: anything longer is not one of them.
            return Err(Refusal::InvalidCode);
        }
        let identity = api
            .login_identity(&self.credentials, code)
            .await
            .map_err(|e| match e {
                ApiError::Permanent { errcode: 40029, .. } => Refusal::InvalidCode,
                other => Refusal::WeCom(other.to_string()),
            })?;
        match identity {
            LoginIdentity::NotMember { open_id } => Err(Refusal::NotMember(open_id)),
            LoginIdentity::Member { user_id } => match self.role_of(&user_id) {
                Some(role) => Ok((user_id, role)),
                None => Err(Refusal::UnknownUser(user_id)),
            },
        }
    }
}

/// Errors of `[console.wecom_login]` and `[[console.wecom_users]]`.
pub(super) fn settings_errors(
    console: &ConsoleConfig,
    apps: &BTreeMap<String, AppConfig>,
) -> Vec<String> {
    let mut errors = Vec::new();
    let login = &console.wecom_login;
    for (i, u) in console.wecom_users.iter().enumerate() {
        if u.user_id.trim().is_empty() || u.user_id.len() > 64 {
            errors.push(format!(
                "console.wecom_users[{i}].user_id must be a WeCom user id of 1 to 64 characters"
            ));
        }
        if console.wecom_users[..i]
            .iter()
            .any(|o| o.user_id == u.user_id)
        {
            errors.push(format!(
                "console.wecom_users: `{}` is listed twice; give each member one role",
                u.user_id
            ));
        }
    }
    if login.app.is_empty() {
        if !console.wecom_users.is_empty() {
            errors.push(
                "console.wecom_users is set but console.wecom_login.app is not: name the [apps.<name>] whose corp id, AgentId and secret sign operators in".into(),
            );
        }
        return errors;
    }
    match apps.get(&login.app) {
        None => errors.push(format!(
            "console.wecom_login.app `{}` is not one of the configured [apps.*]",
            login.app
        )),
        Some(app) => {
            if app.secret.is_none() {
                errors.push(format!(
                    "console.wecom_login: apps.{}.secret is not set; the bridge needs the app's secret to ask WeCom who signed in",
                    login.app
                ));
            }
            if app.agent_id.is_none() {
                errors.push(format!(
                    "console.wecom_login: apps.{}.agent_id is not set; WeCom's login pages need the app's AgentId",
                    login.app
                ));
            }
        }
    }
    for (key, value) in [
        ("authorize_url", &login.authorize_url),
        ("sso_url", &login.sso_url),
    ] {
        if !is_http_url(value) {
            errors.push(format!(
                "console.wecom_login.{key} `{value}` is not an http(s) URL"
            ));
        }
    }
    if !login.public_url.is_empty() && !is_http_url(&login.public_url) {
        errors.push(format!(
            "console.wecom_login.public_url `{}` is not an http(s) URL like https://bridge-admin.example.com",
            login.public_url
        ));
    }
    errors
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::settings::{WeComLoginConfig, WeComUser};

    fn sign_in() -> WeComSignIn {
        WeComSignIn {
            credentials: Credentials::new("wwcorp", crate::config::Secret::new("s")),
            agent_id: 1000002,
            authorize_url: "https://open.weixin.qq.com/connect/oauth2/authorize".into(),
            sso_url: "https://login.work.weixin.qq.com/wwlogin/sso/login".into(),
            public_url: None,
            users: HashMap::from([("zhangsan".to_string(), Role::Operator)]),
        }
    }

    #[test]
    fn login_urls_follow_wecoms_documented_forms() {
        let s = sign_in();
        let back = s.redirect_uri("127.0.0.1:8081", false);
        assert_eq!(back, "http://127.0.0.1:8081/console/wecom/callback");
        let oauth = s.login_url(LoginKind::OAuth2, &back, "st1");
        assert_eq!(
            oauth,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wwcorp&redirect_uri=http%3A%2F%2F127.0.0.1%3A8081%2Fconsole%2Fwecom%2Fcallback&response_type=code&scope=snsapi_base&state=st1&agentid=1000002#wechat_redirect"
        );
        let qr = s.login_url(LoginKind::Qr, &back, "st1");
        assert!(
            qr.starts_with("https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=CorpApp&appid=wwcorp&agentid=1000002&redirect_uri=http%3A%2F%2F"),
            "{qr}"
        );
        assert_eq!(
            LoginKind::for_user_agent("Mozilla/5.0 wxwork/4.1.0 MicroMessenger/7.0.1"),
            LoginKind::OAuth2
        );
        assert_eq!(
            LoginKind::for_user_agent("Mozilla/5.0 Chrome"),
            LoginKind::Qr
        );
        let mut with_public = sign_in();
        with_public.public_url = Some("https://ops.example.com".into());
        assert_eq!(
            with_public.redirect_uri("ignored:1", true),
            "https://ops.example.com/console/wecom/callback"
        );
    }

    #[tokio::test]
    async fn a_missing_or_foreign_state_is_refused_before_wecom_is_asked() {
        let s = sign_in();
        // an unreachable API: asking it would fail differently
        let api = WeComApi::new(crate::wecom::api::ApiConfig {
            base_url: "http://127.0.0.1:9/cgi-bin".into(),
            ..Default::default()
        })
        .unwrap();
        for (cookie, state) in [
            (None, Some("a")),
            (Some("a"), None),
            (Some("a"), Some("b")),
            (Some(""), Some("")),
        ] {
            assert_eq!(
                s.sign_in(&api, cookie, state, Some("code")).await,
                Err(Refusal::BadState)
            );
        }
        assert_eq!(
            s.sign_in(&api, Some("a"), Some("a"), None).await,
            Err(Refusal::Declined)
        );
        let long = "x".repeat(513);
        assert_eq!(
            s.sign_in(&api, Some("a"), Some("a"), Some(&long)).await,
            Err(Refusal::InvalidCode)
        );
        assert_eq!(
            Refusal::UnknownUser("lisi".into()).who(),
            "wecom:lisi",
            "a refused member is audited by user id"
        );
    }

    #[test]
    fn settings_name_an_app_with_secret_and_agent_id_and_unique_users() {
        let mut console = ConsoleConfig {
            wecom_users: vec![
                WeComUser {
                    user_id: "zhangsan".into(),
                    role: Role::Operator,
                },
                WeComUser {
                    user_id: "zhangsan".into(),
                    role: Role::Viewer,
                },
            ],
            ..ConsoleConfig::default()
        };
        let apps = BTreeMap::new();
        let e = settings_errors(&console, &apps).join("\n");
        assert!(
            e.contains("listed twice") && e.contains("wecom_login.app is not"),
            "{e}"
        );
        console.wecom_users.pop();
        console.wecom_login = WeComLoginConfig {
            app: "hr".into(),
            sso_url: "ftp://x".into(),
            ..WeComLoginConfig::default()
        };
        let e = settings_errors(&console, &apps).join("\n");
        assert!(
            e.contains("`hr` is not one of") && e.contains("sso_url"),
            "{e}"
        );
    }
}
