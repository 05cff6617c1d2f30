//! Secret references (`env:NAME`, `file:PATH`, a literal) and the resolved values, whose
//! `Debug` and `Display` never show them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, DEMO_ENCODING_AES_KEY, DEMO_TOKEN};

/// A reference to a secret: `env:NAME`, `file:PATH`, or a literal value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// Read from an environment variable.
    Env(String),
    /// Read from a file (trailing newline trimmed).
    File(PathBuf),
    /// Written in the configuration itself.
    Literal(String),
}

impl SecretRef {
    /// Parses `env:NAME`, `file:PATH`, or anything else as a literal.
    pub fn parse(s: &str) -> Self {
        if let Some(name) = s.strip_prefix("env:") {
            SecretRef::Env(name.to_string())
        } else if let Some(path) = s.strip_prefix("file:") {
            SecretRef::File(PathBuf::from(path))
        } else {
            SecretRef::Literal(s.to_string())
        }
    }

    /// Reads the secret's value.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        match self {
            SecretRef::Env(name) => std::env::var(name).map(Secret).map_err(|_| {
                ConfigError::Secret(format!("environment variable {name} is not set"))
            }),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| ConfigError::Secret(format!("cannot read {}: {e}", path.display()))),
            SecretRef::Literal(v) => Ok(Secret(v.clone())),
        }
    }

    /// Whether the secret is written in the configuration file itself.
    pub fn is_literal(&self) -> bool {
        matches!(self, SecretRef::Literal(_))
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Literal(_) => f.write_str("***"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(SecretRef::parse(&s))
    }
}

/// A resolved secret value. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(v: impl Into<String>) -> Self {
        Secret(v.into())
    }
    /// The value itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Secrets resolved at start.
#[derive(Debug, Clone)]
pub struct ResolvedSecrets {
    /// Per-app callback credentials, by app name.
    pub apps: BTreeMap<String, AppSecrets>,
    /// The admin API bearer token, if one is configured.
    pub admin_token: Option<Secret>,
}

/// The callback credentials of one app.
#[derive(Debug, Clone)]
pub struct AppSecrets {
    /// Callback Token.
    pub token: Secret,
    /// EncodingAESKey.
    pub encoding_aes_key: Secret,
    /// The app Secret for the WeCom API, if configured.
    pub secret: Option<Secret>,
}

impl AppSecrets {
    /// Whether these are the public sample credentials from WeCom's documentation.
    pub fn is_demo(&self) -> bool {
        self.token.expose() == DEMO_TOKEN && self.encoding_aes_key.expose() == DEMO_ENCODING_AES_KEY
    }
}
