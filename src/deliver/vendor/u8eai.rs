//! Yonyou U8 EAI (on-premise XML), client side (PROTOCOLS.md §2.3).
//!
//! Owns: the `<ufinterface>` envelope with its root attributes (built with quick-xml from a
//! JSON document), decoding answers in UTF-8 or GBK (declared or sniffed), and the
//! classification `succeed="0"` success / `succeed="101"` duplicate.
//!
//! Must NOT: send requests. The JSON → XML rule is generic: object keys become elements,
//! keys starting with `@` become attributes, `#text` becomes text, arrays repeat the element.
//! Sibling order: serde_json (built without `preserve_order`) sorts object keys, so an
//! object may carry `"#order": ["voucher_head", "voucher_body"]` naming the children to
//! write first, in that order; the rest follow by name. Whether EAI cares about element
//! order is [unconfirmed]; the public clients write the template's order, so do we.
//!
//! Unconfirmed: the transport (some sites call the `U8SrvTrans` COM object instead of HTTP);
//! the full list of `succeed` codes beyond `0` and `101`.

use std::borrow::Cow;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde_json::Value;

use super::{Outcome, unknown_answer};

/// Errors building an envelope.
#[derive(Debug, thiserror::Error)]
pub enum U8Error {
    /// The document is not a JSON object of elements.
    #[error("U8 EAI document must be a JSON object of elements, got {0}")]
    NotAnObject(&'static str),
    /// Writing XML failed (only on an invalid name).
    #[error("U8 EAI envelope could not be written: {0}")]
    Write(#[from] std::io::Error),
}

/// Root attributes of `<ufinterface>`.
#[derive(Debug, Clone)]
pub struct Root {
    /// `roottag`, e.g. `voucher`.
    pub roottag: String,
    /// `billtype`, e.g. `gl`.
    pub billtype: String,
    /// `sender` (EAI code).
    pub sender: String,
    /// `receiver` (EAI code).
    pub receiver: String,
    /// `proc`, e.g. `add`.
    pub proc_: String,
    /// `codeexchanged`, usually `N`.
    pub codeexchanged: String,
}

/// Builds the UTF-8 `<ufinterface>` document: `body` holds the children, e.g.
/// `{"voucher": {"voucher_head": {…}, "voucher_body": {"entry": [..]}}}`.
///
/// # Errors
/// [`U8Error::NotAnObject`] when `body` is not an object.
pub fn envelope(root: &Root, body: &Value) -> Result<Vec<u8>, U8Error> {
    let Value::Object(children) = body else {
        return Err(U8Error::NotAnObject(kind(body)));
    };
    let mut w = quick_xml::Writer::new(Vec::new());
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let start = BytesStart::new("ufinterface").with_attributes([
        ("roottag", root.roottag.as_str()),
        ("billtype", root.billtype.as_str()),
        ("sender", root.sender.as_str()),
        ("receiver", root.receiver.as_str()),
        ("proc", root.proc_.as_str()),
        ("codeexchanged", root.codeexchanged.as_str()),
    ]);
    w.write_event(Event::Start(start))?;
    for (name, value) in ordered(children) {
        write_value(&mut w, name, value)?;
    }
    w.write_event(Event::End(BytesEnd::new("ufinterface")))?;
    Ok(w.into_inner())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The element children of an object: first those named in `#order`, then the rest by
/// name; attributes (`@…`), `#text` and `#order` are not children.
fn ordered(map: &serde_json::Map<String, Value>) -> Vec<(&str, &Value)> {
    let first: Vec<&str> = map
        .get("#order")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out: Vec<(&str, &Value)> = first
        .iter()
        .filter_map(|name| map.get_key_value(*name).map(|(k, v)| (k.as_str(), v)))
        .collect();
    for (k, v) in map {
        if !k.starts_with('@') && !k.starts_with('#') && !first.contains(&k.as_str()) {
            out.push((k.as_str(), v));
        }
    }
    out
}

fn scalar(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

fn write_value(
    w: &mut quick_xml::Writer<Vec<u8>>,
    name: &str,
    value: &Value,
) -> std::io::Result<()> {
    match value {
        Value::Array(items) => {
            for item in items {
                write_value(w, name, item)?;
            }
        }
        Value::Object(map) => {
            let mut start = BytesStart::new(name);
            for (k, v) in map {
                if let Some(attr) = k.strip_prefix('@') {
                    start.push_attribute((attr, scalar(v).as_ref()));
                }
            }
            w.write_event(Event::Start(start))?;
            if let Some(text) = map.get("#text") {
                w.write_event(Event::Text(BytesText::new(&scalar(text))))?;
            }
            for (k, v) in ordered(map) {
                write_value(w, k, v)?;
            }
            w.write_event(Event::End(BytesEnd::new(name)))?;
        }
        other => {
            w.write_event(Event::Start(BytesStart::new(name)))?;
            w.write_event(Event::Text(BytesText::new(&scalar(other))))?;
            w.write_event(Event::End(BytesEnd::new(name)))?;
        }
    }
    Ok(())
}

/// Decodes an answer: the declared encoding (GBK/GB2312/GB18030 or UTF-8) wins; without a
/// declaration valid UTF-8 is UTF-8 and anything else is read as GBK.
#[must_use]
pub fn decode(body: &[u8]) -> String {
    let head = String::from_utf8_lossy(&body[..body.len().min(100)]).to_ascii_lowercase();
    let declared = head
        .split("encoding=")
        .nth(1)
        .and_then(|rest| {
            rest.trim_start_matches(['"', '\''])
                .split(['"', '\''])
                .next()
        })
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()));
    let encoding = match declared {
        Some(enc) => enc,
        None if std::str::from_utf8(body).is_ok() => encoding_rs::UTF_8,
        None => encoding_rs::GBK,
    };
    encoding.decode_with_bom_removal(body).0.into_owned()
}

/// One `<item>` of a reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyItem {
    /// `succeed`.
    pub succeed: String,
    /// `dsc`.
    pub dsc: String,
    /// `key`.
    pub key: Option<String>,
    /// `u8voucher_id`, `voucher_id` or `u8key`, first present.
    pub u8_id: Option<String>,
}

/// The `<item>` elements of a reply (empty when it is not XML).
#[must_use]
pub fn reply_items(text: &str) -> Vec<ReplyItem> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut items = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.name().as_ref() == "item" => {
                let mut item = ReplyItem::default();
                let mut has_succeed = false;
                for attr in e.attributes().flatten() {
                    let Ok(value) = attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    else {
                        continue;
                    };
                    let value = value.into_owned();
                    match attr.key.as_ref() {
                        "succeed" => {
                            item.succeed = value;
                            has_succeed = true;
                        }
                        "dsc" => item.dsc = value,
                        "key" => item.key = Some(value),
                        "u8voucher_id" | "voucher_id" | "u8key"
                            if item.u8_id.is_none() && !value.is_empty() =>
                        {
                            item.u8_id = Some(value);
                        }
                        _ => {}
                    }
                }
                if has_succeed {
                    items.push(item);
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    items
}

/// Classifies an EAI answer: every item `succeed="0"` → success; any `101` → duplicate;
/// other codes permanent with `dsc`; no items → not understood.
#[must_use]
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    if status != 200 {
        return unknown_answer(status, body, "U8 EAI");
    }
    let text = decode(body);
    let items = reply_items(&text);
    if items.is_empty() {
        return unknown_answer(
            status,
            text.as_bytes(),
            "U8 EAI answer has no <item succeed=…>",
        );
    }
    if let Some(dup) = items.iter().find(|i| i.succeed == "101") {
        return Outcome::Duplicate {
            reason: format!("U8 succeed=101: {}", dup.dsc),
        };
    }
    if let Some(bad) = items.iter().find(|i| i.succeed != "0") {
        return Outcome::Permanent {
            reason: format!("U8 succeed={}: {}", bad.succeed, bad.dsc),
        };
    }
    let first = &items[0];
    Outcome::success(
        first.u8_id.clone(),
        first.key.clone().or_else(|| first.u8_id.clone()),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn root() -> Root {
        Root {
            roottag: "voucher".into(),
            billtype: "gl".into(),
            sender: "999".into(),
            receiver: "u8".into(),
            proc_: "add".into(),
            codeexchanged: "N".into(),
        }
    }

    #[test]
    fn envelope_has_root_attributes_and_nested_items() {
        let body = json!({"voucher": {"#order": ["voucher_head", "voucher_body"],
            "voucher_head": {"#order": ["voucher_type"], "voucher_type": "记", "fiscal_year": 2026, "reserve2": "SP<1>"},
            "voucher_body": {"entry": [{"entry_id": 1, "auxiliary_accounting": {"item": [{"@name": "dept_id", "#text": "01"}]}}, {"entry_id": 2}]}}});
        let xml = String::from_utf8(envelope(&root(), &body).unwrap()).unwrap();
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><ufinterface roottag="voucher" billtype="gl" sender="999" receiver="u8" proc="add" codeexchanged="N">"#), "{xml}");
        assert!(xml.contains("<voucher><voucher_head><voucher_type>记</voucher_type><fiscal_year>2026</fiscal_year><reserve2>SP&lt;1&gt;</reserve2></voucher_head><voucher_body>"), "{xml}");
        assert!(xml.contains(r#"<entry><auxiliary_accounting><item name="dept_id">01</item></auxiliary_accounting><entry_id>1</entry_id></entry><entry><entry_id>2</entry_id></entry>"#), "{xml}");
        assert!(envelope(&root(), &json!([1])).is_err());
    }

    #[test]
    fn decodes_gbk_declared_and_sniffed() {
        let text = r#"<?xml version="1.0" encoding="GBK"?><ufinterface roottag="return"><item key="p16102" succeed="101" dsc="客户编码已经存在，不可重复！"/></ufinterface>"#;
        let gbk = encoding_rs::GBK.encode(text).0.into_owned();
        assert_eq!(decode(&gbk), text);
        let undeclared = encoding_rs::GBK
            .encode("<ufinterface><item succeed=\"0\" dsc=\"凭证已成功保存\"/></ufinterface>")
            .0;
        assert!(decode(&undeclared).contains("凭证已成功保存"));
        assert!(
            matches!(classify(200, &gbk), Outcome::Duplicate { reason } if reason.contains("客户编码已经存在，不可重复！"))
        );
    }

    #[test]
    fn classify_answers() {
        let ok = r#"<ufinterface roottag="return"><item accounting_period="5" voucher_type="收" voucher_id="3" entry_id="" succeed="0" dsc="凭证已成功保存" u8accounting_period="5" u8voucher_id="3"/></ufinterface>"#;
        assert_eq!(
            classify(200, ok.as_bytes()),
            Outcome::success(Some("3".into()), Some("3".into()))
        );
        let bad = r#"<ufinterface roottag="return"><item succeed="1" dsc="科目编码不存在"/></ufinterface>"#;
        assert!(
            matches!(classify(200, bad.as_bytes()), Outcome::Permanent { reason } if reason.contains("科目编码不存在"))
        );
        assert!(matches!(
            classify(200, b"<html>error</html>"),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(500, b"<html>error</html>"),
            Outcome::Retryable { .. }
        ));
    }
}
