//! Configuration of the operator console and of the named, role-bearing admin tokens
//! (`[console]` and `[[admin.users]]`). Read by `config`; resolved at start by `auth`.

use serde::Deserialize;

use crate::config::SecretRef;

/// What a signed-in operator may do. Ordered: each role may do everything the one before it
/// may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything except payload bodies.
    Viewer,
    /// Also replays, reconciles, reroutes, and sees payload bodies.
    Operator,
    /// Also sees the configuration.
    Admin,
}

impl Role {
    /// The role's name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named token (`[[admin.users]]`). The token is a reference (`env:`, `file:`); the name
/// is what the audit log records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    /// Who this is, e.g. `alice` or `finance-ops`; shown in the audit log.
    pub name: String,
    /// The bearer token, by reference.
    pub token: SecretRef,
    /// What the token may do.
    pub role: Role,
}

/// The operator console on the admin listener (`/console`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve `/console` on the admin listener.
    pub enabled: bool,
    /// Mark the session cookie `Secure` (set this when the admin listener is reached over
    /// TLS, e.g. behind a reverse proxy; browsers then never send it over plain HTTP).
    pub secure_cookie: bool,
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u64,
    /// Audit rows are kept at least this many days (minimum 180).
    pub audit_retention_days: u64,
    /// Sign-in with WeCom (`[console.wecom_login]`); off while `app` is empty.
    pub wecom_login: WeComLoginConfig,
    /// The WeCom members who may sign in with WeCom, each with a role
    /// (`[[console.wecom_users]]`); anyone else is refused (and audited).
    pub wecom_users: Vec<WeComUser>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secure_cookie: false,
            session_idle_minutes: 30,
            audit_retention_days: 180,
            wecom_login: WeComLoginConfig::default(),
            wecom_users: Vec::new(),
        }
    }
}

/// WeCom's OAuth2 authorize page, opened inside the WeCom client.
pub const WECOM_AUTHORIZE_URL: &str = "https://open.weixin.qq.com/connect/oauth2/authorize";
/// WeCom's web login page (QR code), opened in a browser.
pub const WECOM_SSO_URL: &str = "https://login.work.weixin.qq.com/wwlogin/sso/login";

/// Sign-in with WeCom: the OAuth2 web login inside the WeCom client and the QR-code login
/// in a browser. Both end with WeCom sending the browser back to
/// `<public_url>/console/wecom/callback` with a one-time `code`, which the bridge exchanges
/// for the member's user id (`auth/getuserinfo`) with the app's access token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeComLoginConfig {
    /// The `[apps.<name>]` whose corp id, AgentId and secret sign operators in (the app
    /// whose 可信域名 / 授权回调域 holds the console's host). Empty: sign-in with WeCom is off.
    pub app: String,
    /// The OAuth2 authorize page (inside the WeCom client). Tests and the demo point it at
    /// the WeCom stand-in.
    pub authorize_url: String,
    /// The web login page with the QR code (in a browser).
    pub sso_url: String,
    /// The console's address as the operator's browser reaches it, e.g.
    /// `https://bridge-admin.example.com` (behind a reverse proxy). Empty: taken from the
    /// request's `Host` (already checked against `admin.allowed_hosts`), `https` when
    /// `secure_cookie` is set.
    pub public_url: String,
}

impl Default for WeComLoginConfig {
    fn default() -> Self {
        Self {
            app: String::new(),
            authorize_url: WECOM_AUTHORIZE_URL.into(),
            sso_url: WECOM_SSO_URL.into(),
            public_url: String::new(),
        }
    }
}

/// A WeCom member allowed into the console (`[[console.wecom_users]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComUser {
    /// The member's WeCom user id (成员 UserID, e.g. `zhangsan`), as `auth/getuserinfo`
    /// answers it; the audit log records it as `wecom:<user_id>`.
    pub user_id: String,
    /// What the member may do.
    pub role: Role,
}

/// The minimum audit retention: shorter settings are refused at start.
pub const MIN_AUDIT_RETENTION_DAYS: u64 = 180;
