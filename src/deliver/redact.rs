//! What may be recorded of a request or answer: secret headers and query values replaced by
//! `***`, every secret value scrubbed wherever it appears, configured document fields
//! replaced, bodies capped. Owns only that.

use serde_json::Value;

/// The replacement text.
pub(crate) const MASK: &str = "***";

/// Headers whose values are always secret.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// Secrets shorter than this are not scrubbed from free text (they would mangle it); their
/// headers and parameters are still masked by name.
const MIN_SCRUB_LEN: usize = 4;

#[derive(Clone)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
    secret_headers: Vec<String>,
    secret_query: Vec<String>,
    fields: Vec<String>,
    limit: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    pub(crate) fn new(
        secrets: Vec<String>,
        secret_headers: Vec<String>,
        secret_query: Vec<String>,
        fields: Vec<String>,
        limit: usize,
    ) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SCRUB_LEN)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets,
            secret_headers,
            secret_query,
            fields,
            limit,
        }
    }

    /// Masks every known secret value in `text`, plus `extra` (e.g. the current token).
    pub(crate) fn scrub(&self, text: &str, extra: &[&str]) -> String {
        let mut out = text.to_owned();
        for s in self
            .secrets
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
        {
            if s.len() >= MIN_SCRUB_LEN && out.contains(s) {
                out = out.replace(s, MASK);
            }
        }
        out
    }

    pub(crate) fn headers(
        &self,
        headers: &[(String, String)],
        extra: &[&str],
    ) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| {
                let lower = n.to_ascii_lowercase();
                let secret = SECRET_HEADERS.contains(&lower.as_str())
                    || self.secret_headers.contains(&lower);
                (
                    n.clone(),
                    if secret {
                        MASK.to_owned()
                    } else {
                        self.scrub(v, extra)
                    },
                )
            })
            .collect()
    }

    pub(crate) fn url(&self, url: &url::Url, extra: &[&str]) -> String {
        let mut u = url.clone();
        let _ = u.set_password(None);
        if u.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if self.secret_query.iter().any(|s| s.as_str() == k.as_ref()) {
                        MASK.to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        self.scrub(u.as_str(), extra)
    }

    /// The document with the configured fields masked.
    pub(crate) fn document(&self, doc: &Value) -> Value {
        let mut doc = doc.clone();
        for p in &self.fields {
            if let Some(v) = doc.pointer_mut(p) {
                *v = Value::String(MASK.to_owned());
            }
        }
        doc
    }

    /// Whether any field is configured for redaction.
    pub(crate) fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// A body as recorded: lossily decoded, scrubbed, capped at a character boundary.
    pub(crate) fn body(&self, bytes: &[u8], extra: &[&str]) -> (String, bool) {
        let text = self.scrub(&String::from_utf8_lossy(bytes), extra);
        if text.len() <= self.limit {
            return (text, false);
        }
        let mut end = self.limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (text[..end].to_owned(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r() -> Redactor {
        Redactor::new(
            vec!["s3cr3t-value".into(), "ab".into()],
            vec!["x-signature".into()],
            vec!["api_key".into()],
            vec!["/payee/account".into()],
            10,
        )
    }

    #[test]
    fn headers_urls_documents_and_bodies() {
        let h = r().headers(
            &[
                ("Authorization".into(), "Bearer tok".into()),
                ("X-Signature".into(), "abc".into()),
                ("X-Echo".into(), "has s3cr3t-value inside".into()),
                ("X-Token-Copy".into(), "current-token".into()),
            ],
            &["current-token"],
        );
        assert_eq!(h[0].1, MASK);
        assert_eq!(h[1].1, MASK);
        assert_eq!(h[2].1, "has *** inside");
        assert_eq!(h[3].1, MASK);
        let u = url::Url::parse("https://user:pw@t.example/v?api_key=k1&x=ab").unwrap();
        assert_eq!(
            r().url(&u, &[]),
            "https://user@t.example/v?api_key=***&x=ab"
        );
        assert_eq!(
            r().document(&json!({"payee": {"account": "6222", "name": "张三"}})),
            json!({"payee": {"account": "***", "name": "张三"}})
        );
        assert_eq!(
            r().body("0123456789abc".as_bytes(), &[]),
            ("0123456789".into(), true)
        );
        assert_eq!(
            r().body("一二三四".as_bytes(), &[]),
            ("一二三".into(), true)
        );
    }
}
