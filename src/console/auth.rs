//! Who is asking, and may they: named tokens with roles, console sessions, and CSRF tokens.
//!
//! Tokens are configured by reference (`[[admin.users]]`, plus the legacy `admin.token` as a
//! token named `admin` with the `admin` role) and compared in constant time. A console
//! session is a random 256-bit id in an `HttpOnly`, `SameSite=Strict` cookie (also `Secure`
//! when configured), held in memory only: a restart signs everyone out. Each session has its
//! own CSRF token, which every console form carries and every POST must match.
//!
//! It never stores or logs a token: only the token's name leaves this module.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::settings::{AdminUser, Role};
use crate::config::{AdminConfig, ConfigError, Secret};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "wb_session";
/// Name of the cookie that carries the sign-in form's CSRF value before a session exists.
pub const SIGN_IN_COOKIE: &str = "wb_signin";
/// Most sessions held at once; the least recently used is dropped beyond it.
const MAX_SESSIONS: usize = 1_000;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's configured name (`anonymous` on a token-less loopback listener).
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// Whether the caller holds at least `role`.
    pub fn may(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// The configured tokens, resolved at start.
pub struct TokenBook {
    entries: Vec<(String, Role, Secret)>,
}

impl std::fmt::Debug for TokenBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(n, r, _)| (n, r)))
            .finish()
    }
}

impl TokenBook {
    /// Resolves `admin.users` and adds the legacy `admin.token` (already resolved by
    /// `Config::resolve`) as `admin`/`admin`. Fails on unreadable or empty tokens.
    pub fn resolve(admin: &AdminConfig, legacy: Option<Secret>) -> Result<Self, ConfigError> {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        if let Some(token) = legacy {
            entries.push(("admin".to_string(), Role::Admin, token));
        }
        for AdminUser { name, token, role } in &admin.users {
            match token.resolve() {
                Ok(s) if s.expose().trim().is_empty() => errors.push(format!(
                    "admin.users `{name}`: the token ({token:?}) resolves to an empty value"
                )),
                Ok(s) => entries.push((name.clone(), *role, s)),
                Err(e) => errors.push(format!("admin.users `{name}`: {e}")),
            }
        }
        for (i, (a, _, ta)) in entries.iter().enumerate() {
            for (b, _, tb) in &entries[i + 1..] {
                if ta.expose() == tb.expose() {
                    errors.push(format!(
                        "admin tokens `{a}` and `{b}` are the same: give every user their own token"
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(TokenBook { entries })
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// A book with the given (name, role, token) entries; for tests and the demo.
    pub fn from_entries(entries: Vec<(String, Role, Secret)>) -> Self {
        TokenBook { entries }
    }

    /// No token is configured: the admin API is open (allowed on a loopback listener only).
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal a presented token belongs to. Every entry is compared, in constant
    /// time, whatever matches first.
    pub fn authenticate(&self, given: &str) -> Option<Principal> {
        let mut found = None;
        for (name, role, token) in &self.entries {
            if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) && found.is_none() {
                found = Some(Principal {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found
    }
}

/// A random 256-bit value, hex-encoded (session ids, CSRF tokens).
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Constant-time equality of two presented values (CSRF checks).
pub fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A live session as the pages see it.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in.
    pub principal: Principal,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

struct Held {
    session: Session,
    last_seen: Instant,
}

/// The live console sessions (in memory).
pub struct Sessions {
    held: Mutex<HashMap<String, Held>>,
    idle: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions that end after `idle` without a request.
    pub fn new(idle: Duration) -> Self {
        Sessions {
            held: Mutex::new(HashMap::new()),
            idle,
        }
    }

    /// Starts a session; returns its id (for the cookie).
    pub fn create(&self, principal: Principal) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|_, h| now.duration_since(h.last_seen) < self.idle);
        if held.len() >= MAX_SESSIONS
            && let Some(oldest) = held
                .iter()
                .min_by_key(|(_, h)| h.last_seen)
                .map(|(k, _)| k.clone())
        {
            held.remove(&oldest);
        }
        held.insert(
            id.clone(),
            Held {
                session: Session {
                    principal,
                    csrf: random_token(),
                },
                last_seen: now,
            },
        );
        id
    }

    /// The live session with this id, which counts as activity.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let h = held.get_mut(id)?;
        if now.duration_since(h.last_seen) >= self.idle {
            held.remove(id);
            return None;
        }
        h.last_seen = now;
        Some(h.session.clone())
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value for a console cookie (path `/console`, `HttpOnly`,
/// `SameSite=Strict`, `Secure` when asked); `None` clears it.
pub fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!("{name}={v}; Path=/console; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    fn book() -> TokenBook {
        TokenBook::from_entries(vec![
            ("vera".into(), Role::Viewer, Secret::new("tok-view")),
            ("otto".into(), Role::Operator, Secret::new("tok-op")),
        ])
    }

    #[test]
    fn tokens_map_to_their_name_and_role() {
        let b = book();
        assert_eq!(b.authenticate("tok-op").unwrap().name, "otto");
        assert_eq!(b.authenticate("tok-view").unwrap().role, Role::Viewer);
        assert!(b.authenticate("tok-o").is_none());
        assert!(b.authenticate("").is_none());
        assert!(!b.is_open());
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }

    #[test]
    fn the_legacy_token_is_an_admin_and_shared_or_empty_tokens_are_refused() {
        let mut admin = AdminConfig::default();
        admin.users.push(AdminUser {
            name: "otto".into(),
            token: SecretRef::parse("op-token"),
            role: Role::Operator,
        });
        let b = TokenBook::resolve(&admin, Some(Secret::new("legacy"))).unwrap();
        let p = b.authenticate("legacy").unwrap();
        assert_eq!((p.name.as_str(), p.role), ("admin", Role::Admin));
        let e = TokenBook::resolve(&admin, Some(Secret::new("op-token"))).unwrap_err();
        assert!(e.to_string().contains("are the same"), "{e}");
        admin.users[0].token = SecretRef::parse("env:WB_TEST_SURELY_UNSET_VARIABLE");
        let e = TokenBook::resolve(&admin, None).unwrap_err();
        assert!(e.to_string().contains("admin.users `otto`"), "{e}");
    }

    #[test]
    fn sessions_expire_when_idle_and_end_on_sign_out() {
        let s = Sessions::new(Duration::from_secs(3600));
        let p = Principal {
            name: "otto".into(),
            role: Role::Operator,
        };
        let id = s.create(p.clone());
        let got = s.get(&id).unwrap();
        assert_eq!(got.principal, p);
        assert_eq!(got.csrf.len(), 64);
        assert!(s.get("nope").is_none());
        s.remove(&id);
        assert!(s.get(&id).is_none());
        let zero = Sessions::new(Duration::ZERO);
        let id = zero.create(p);
        assert!(
            zero.get(&id).is_none(),
            "an idle-expired session is refused"
        );
    }

    #[test]
    fn cookies_are_parsed_and_set_strictly() {
        assert_eq!(
            cookie("a=1; wb_session=abc; b=2", "wb_session"),
            Some("abc")
        );
        assert_eq!(cookie("wb_session_x=abc", "wb_session"), None);
        let c = set_cookie(SESSION_COOKIE, Some("v"), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, Some("v"), false).contains("Secure"));
        assert!(set_cookie(SESSION_COOKIE, None, false).contains("Max-Age=0"));
    }
}
