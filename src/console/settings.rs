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
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secure_cookie: false,
            session_idle_minutes: 30,
            audit_retention_days: 180,
        }
    }
}

/// The minimum audit retention: shorter settings are refused at start.
pub const MIN_AUDIT_RETENTION_DAYS: u64 = 180;
