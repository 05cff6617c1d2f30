//! The outer XML envelope of an encrypted POST callback:
//! `<xml><ToUserName/><Encrypt/><AgentID/></xml>`, elements in any order.
//!
//! Only `Encrypt` is trusted, and only after its signature is verified; `ToUserName` and
//! `AgentID` are unauthenticated hints.

use quick_xml::Reader;
use quick_xml::events::Event;

/// The parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The base64 ciphertext.
    pub encrypt: String,
    /// Unauthenticated CorpID/SuiteID hint.
    pub to_user_name: Option<String>,
    /// Unauthenticated AgentID hint.
    pub agent_id: Option<String>,
}

/// Why an envelope was refused (all map to WeCom's -40002 ParseXml_Error).
///
/// Messages never quote the body; where a parser error is wrapped it stays the
/// [`source`](std::error::Error::source), for whoever walks the chain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnvelopeError {
    /// A DOCTYPE or entity declaration; refused and never expanded.
    #[error("envelope contains a DOCTYPE/entity declaration; refused")]
    Doctype,
    /// The body is not UTF-8.
    #[error("envelope is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// The XML reader refused the body.
    #[error("envelope is not well-formed XML (near byte {position})")]
    Xml {
        /// Byte offset of the error in the body.
        position: u64,
        /// What the reader found.
        #[source]
        source: quick_xml::Error,
    },
    /// Well-formed XML that is not an envelope (no root, an unclosed element, an entity).
    #[error("envelope is not well-formed XML: {0}")]
    Malformed(&'static str),
    /// No `<Encrypt>` element (or an empty one).
    #[error("envelope has no Encrypt element")]
    MissingEncrypt,
}

impl EnvelopeError {
    /// The official WXBizMsgCrypt code.
    pub fn code(&self) -> i32 {
        -40002
    }
}

/// Parses the envelope with a streaming reader; unknown elements are ignored.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    let text = std::str::from_utf8(body).map_err(EnvelopeError::NotUtf8)?;
    let mut reader = Reader::from_str(text);
    let mut depth = 0usize;
    let mut current: Option<Field> = None;
    let mut encrypt = String::new();
    let mut to_user_name = None;
    let mut agent_id = None;
    let mut saw_root = false;
    loop {
        let ev = reader.read_event().map_err(|source| EnvelopeError::Xml {
            position: reader.error_position(),
            source,
        })?;
        match ev {
            Event::DocType(_) => return Err(EnvelopeError::Doctype),
            Event::Start(s) => {
                depth += 1;
                if depth == 1 {
                    saw_root = true;
                }
                current = (depth == 2)
                    .then(|| Field::from_name(s.local_name().as_ref()))
                    .flatten();
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                current = None;
            }
            Event::Empty(_) if depth == 0 => saw_root = true,
            Event::Text(t) => push_text(
                &current,
                &t[..],
                &mut encrypt,
                &mut to_user_name,
                &mut agent_id,
            ),
            Event::CData(t) => push_text(
                &current,
                &t[..],
                &mut encrypt,
                &mut to_user_name,
                &mut agent_id,
            ),
            Event::GeneralRef(_) if current.is_some() => {
                return Err(EnvelopeError::Malformed(
                    "entity reference inside envelope field",
                ));
            }
            Event::Eof if depth > 0 => {
                return Err(EnvelopeError::Malformed("unclosed element at end of body"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(EnvelopeError::Malformed("no root element"));
    }
    let encrypt = encrypt.trim().to_string();
    if encrypt.is_empty() {
        return Err(EnvelopeError::MissingEncrypt);
    }
    Ok(Envelope {
        encrypt,
        to_user_name,
        agent_id,
    })
}

#[derive(Clone, Copy)]
enum Field {
    Encrypt,
    ToUserName,
    AgentId,
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        match name {
            "Encrypt" => Some(Field::Encrypt),
            "ToUserName" => Some(Field::ToUserName),
            "AgentID" => Some(Field::AgentId),
            _ => None,
        }
    }
}

fn push_text(
    field: &Option<Field>,
    s: &str,
    encrypt: &mut String,
    to: &mut Option<String>,
    agent: &mut Option<String>,
) {
    match field {
        Some(Field::Encrypt) => encrypt.push_str(s),
        Some(Field::ToUserName) => to.get_or_insert_with(String::new).push_str(s.trim()),
        Some(Field::AgentId) => agent.get_or_insert_with(String::new).push_str(s.trim()),
        None => {}
    }
}

/// Builds an envelope as WeCom sends it (used by `simulate` and tests).
pub fn build_envelope(to_user_name: &str, encrypt: &str, agent_id: Option<&str>) -> String {
    match agent_id {
        Some(a) => format!(
            "<xml><ToUserName><![CDATA[{to_user_name}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[{a}]]></AgentID></xml>"
        ),
        None => format!(
            "<xml><ToUserName><![CDATA[{to_user_name}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_order_with_newlines_and_bare_text() {
        let body = "<xml><ToUserName><![CDATA[ww1]]></ToUserName>\n<AgentID>1000002</AgentID>\n<Encrypt>QUJD+/==</Encrypt>\n<Extra>x</Extra></xml>";
        let e = parse_envelope(body.as_bytes()).unwrap();
        assert_eq!(e.encrypt, "QUJD+/==");
        assert_eq!(e.to_user_name.as_deref(), Some("ww1"));
        assert_eq!(e.agent_id.as_deref(), Some("1000002"));
    }

    #[test]
    fn round_trips_what_simulate_builds() {
        let e = parse_envelope(build_envelope("ww1", "AAAA", None).as_bytes()).unwrap();
        assert_eq!(e.encrypt, "AAAA");
        assert_eq!(e.agent_id, None);
    }

    #[test]
    fn refuses_doctype_and_entities() {
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>"#;
        assert!(matches!(
            parse_envelope(xxe.as_bytes()),
            Err(EnvelopeError::Doctype)
        ));
        let entity = "<xml><Encrypt>&e;</Encrypt></xml>";
        assert!(matches!(
            parse_envelope(entity.as_bytes()),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_broken_or_empty() {
        for body in [
            "",
            "<xml><Encrypt>abc</xml>",
            "not xml",
            "<xml></xml>",
            "<xml><Encrypt></Encrypt></xml>",
        ] {
            assert!(
                parse_envelope(body.as_bytes()).is_err(),
                "{body:?} accepted"
            );
        }
        assert!(matches!(
            parse_envelope(&[0xff, 0xfe]),
            Err(EnvelopeError::NotUtf8(_))
        ));
    }

    #[test]
    fn reader_errors_keep_their_source_and_do_not_quote_the_body() {
        let body = "<xml><Encrypt>abc</Encrypt></secret-name></xml>";
        let err = parse_envelope(body.as_bytes()).expect_err("mismatched end tag");
        assert!(matches!(err, EnvelopeError::Xml { .. }), "{err:?}");
        assert!(!err.to_string().contains("secret-name"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        let err = parse_envelope(&[b'<', 0xff]).expect_err("not UTF-8");
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    }
}
