//! Body encodings: the mapped JSON document → the bytes a target reads (JSON,
//! form-urlencoded, or XML built with quick-xml: root element, namespaces, attributes, SOAP
//! envelope).
//!
//! Pure. Owns the JSON → XML convention (object keys become child elements, arrays repeat
//! the element, keys starting with `@` become attributes, `#text` the element's text). Must
//! not decide anything about sending.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::predicate::scalar_text;

/// How the document is written in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded` (a flat document).
    Form,
    /// `application/xml` (or a SOAP content type with an envelope).
    Xml,
}

/// A SOAP envelope around the XML body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// SOAP 1.1 (`text/xml`).
    Soap11,
    /// SOAP 1.2 (`application/soap+xml`).
    Soap12,
}

impl Envelope {
    fn namespace(self) -> &'static str {
        match self {
            Envelope::Soap11 => "http://schemas.xmlsoap.org/soap/envelope/",
            Envelope::Soap12 => "http://www.w3.org/2003/05/soap-envelope",
        }
    }
}

/// The `[body]` of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySpec {
    /// Encoding.
    pub encoding: Encoding,
    /// XML: the root element (e.g. `ufinterface`).
    pub root: Option<String>,
    /// XML: the default namespace of the root.
    pub namespace: Option<String>,
    /// XML: prefixed namespaces declared on the root (`prefix`, `uri`).
    pub namespaces: Vec<(String, String)>,
    /// XML: static attributes on the root (e.g. `roottag = "voucher"`).
    pub attributes: Vec<(String, String)>,
    /// XML: a SOAP envelope around the root.
    pub envelope: Option<Envelope>,
    /// XML: write `<?xml version="1.0" encoding="UTF-8"?>` first.
    pub declaration: bool,
}

/// Why a document cannot be encoded (a mapping/connector mismatch: permanent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Form and XML bodies are built from an object.
    #[error("the document must be a JSON object for a {0} body")]
    NotAnObject(&'static str),
    /// A form body holds only scalars and lists of scalars.
    #[error(
        "form field `{0}` is an object; a form body holds only flat values (change the mapping or use encoding = \"json\")"
    )]
    NotFlat(String),
    /// A key cannot be an XML name.
    #[error("`{0}` cannot be an XML element or attribute name")]
    BadName(String),
    /// Writing failed.
    #[error("cannot write the body: {0}")]
    Write(String),
}

impl BodySpec {
    /// A plain JSON body.
    pub fn json() -> Self {
        BodySpec {
            encoding: Encoding::Json,
            root: None,
            namespace: None,
            namespaces: Vec::new(),
            attributes: Vec::new(),
            envelope: None,
            declaration: true,
        }
    }

    /// The `Content-Type` of the body.
    pub fn content_type(&self) -> &'static str {
        match (self.encoding, self.envelope) {
            (Encoding::Json, _) => "application/json",
            (Encoding::Form, _) => "application/x-www-form-urlencoded",
            (Encoding::Xml, None) => "application/xml; charset=utf-8",
            (Encoding::Xml, Some(Envelope::Soap11)) => "text/xml; charset=utf-8",
            (Encoding::Xml, Some(Envelope::Soap12)) => "application/soap+xml; charset=utf-8",
        }
    }

    /// What is wrong with this body spec (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let xml_only = self.root.is_some()
            || self.namespace.is_some()
            || !self.namespaces.is_empty()
            || !self.attributes.is_empty()
            || self.envelope.is_some();
        match self.encoding {
            Encoding::Xml => match &self.root {
                None => out.push("an XML body needs `root`, the root element's name (e.g. \"ufinterface\")".into()),
                Some(r) if !is_xml_name(r) => out.push(format!("root `{r}` is not an XML name")),
                Some(_) => {}
            },
            _ if xml_only => out.push(
                "root, namespace, namespaces, attributes and envelope apply to encoding = \"xml\" only".into(),
            ),
            _ => {}
        }
        for (name, _) in self.namespaces.iter().chain(&self.attributes) {
            if !is_xml_name(name) {
                out.push(format!("`{name}` is not an XML name"));
            }
        }
        out
    }
}

/// Encodes `doc` as the body.
pub fn encode(spec: &BodySpec, doc: &Value) -> Result<Vec<u8>, EncodeError> {
    match spec.encoding {
        Encoding::Json => serde_json::to_vec(doc).map_err(|e| EncodeError::Write(e.to_string())),
        Encoding::Form => encode_form(doc),
        Encoding::Xml => encode_xml(spec, doc),
    }
}

fn encode_form(doc: &Value) -> Result<Vec<u8>, EncodeError> {
    let obj = doc.as_object().ok_or(EncodeError::NotAnObject("form"))?;
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in obj {
        match v {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    let t = scalar_text(item).ok_or_else(|| EncodeError::NotFlat(k.clone()))?;
                    out.append_pair(k, &t);
                }
            }
            other => {
                let t = scalar_text(other).ok_or_else(|| EncodeError::NotFlat(k.clone()))?;
                out.append_pair(k, &t);
            }
        }
    }
    Ok(out.finish().into_bytes())
}

fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

type XmlWriter = Writer<Vec<u8>>;

fn write(w: &mut XmlWriter, e: Event<'_>) -> Result<(), EncodeError> {
    w.write_event(e)
        .map_err(|e| EncodeError::Write(e.to_string()))
}

fn encode_xml(spec: &BodySpec, doc: &Value) -> Result<Vec<u8>, EncodeError> {
    let obj = doc.as_object().ok_or(EncodeError::NotAnObject("XML"))?;
    // `problems()` refused a spec without a root at load time.
    let root = spec.root.as_deref().unwrap_or("document");
    let mut w = Writer::new(Vec::new());
    if spec.declaration {
        write(
            &mut w,
            Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)),
        )?;
    }
    if let Some(env) = spec.envelope {
        let mut start = BytesStart::new("soap:Envelope");
        start.push_attribute(("xmlns:soap", env.namespace()));
        write(&mut w, Event::Start(start))?;
        write(&mut w, Event::Start(BytesStart::new("soap:Body")))?;
    }
    let mut start = BytesStart::new(root);
    if let Some(ns) = &spec.namespace {
        start.push_attribute(("xmlns", ns.as_str()));
    }
    for (prefix, uri) in &spec.namespaces {
        start.push_attribute((format!("xmlns:{prefix}").as_str(), uri.as_str()));
    }
    for (k, v) in &spec.attributes {
        start.push_attribute((k.as_str(), v.as_str()));
    }
    write_object_body(&mut w, start, root, obj)?;
    if spec.envelope.is_some() {
        write(&mut w, Event::End(BytesEnd::new("soap:Body")))?;
        write(&mut w, Event::End(BytesEnd::new("soap:Envelope")))?;
    }
    Ok(w.into_inner())
}

/// Writes `<name attrs…>children</name>` for an object, taking `@` keys as attributes and
/// `#text` as text.
fn write_object_body(
    w: &mut XmlWriter,
    mut start: BytesStart<'_>,
    name: &str,
    obj: &Map<String, Value>,
) -> Result<(), EncodeError> {
    for (k, v) in obj {
        if let Some(attr) = k.strip_prefix('@') {
            if !is_xml_name(attr) {
                return Err(EncodeError::BadName(k.clone()));
            }
            let t = scalar_text(v).unwrap_or_default();
            start.push_attribute((attr, t.as_ref()));
        }
    }
    write(w, Event::Start(start))?;
    for (k, v) in obj {
        if k.starts_with('@') {
            continue;
        }
        if k == "#text" {
            if let Some(t) = scalar_text(v) {
                write(w, Event::Text(BytesText::new(&t)))?;
            }
            continue;
        }
        write_element(w, k, v)?;
    }
    write(w, Event::End(BytesEnd::new(name)))
}

fn write_element(w: &mut XmlWriter, name: &str, v: &Value) -> Result<(), EncodeError> {
    if !is_xml_name(name) {
        return Err(EncodeError::BadName(name.to_owned()));
    }
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| write_element(w, name, i)),
        Value::Object(obj) => write_object_body(w, BytesStart::new(name), name, obj),
        Value::Null => write(w, Event::Empty(BytesStart::new(name))),
        scalar => {
            let t = scalar_text(scalar).unwrap_or_default();
            write(w, Event::Start(BytesStart::new(name)))?;
            write(w, Event::Text(BytesText::new(&t)))?;
            write(w, Event::End(BytesEnd::new(name)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn xml(spec: &BodySpec, doc: Value) -> String {
        String::from_utf8(encode(spec, &doc).unwrap()).unwrap()
    }

    fn xml_spec() -> BodySpec {
        BodySpec {
            encoding: Encoding::Xml,
            root: Some("ufinterface".into()),
            attributes: vec![
                ("roottag".into(), "voucher".into()),
                ("proc".into(), "add".into()),
            ],
            declaration: false,
            ..BodySpec::json()
        }
    }

    #[test]
    fn u8_eai_voucher_with_root_attributes_repeats_and_escaping() {
        let doc = json!({"voucher": {"voucher_head": {"fiscal_year": 2026, "reserve2": "SP<1>&", "revokeflag": null},
            "voucher_body": {"entry": [{"entry_id": 1, "natural_debit_currency": "1200.00",
                "auxiliary_accounting": {"item": {"@name": "dept_id", "#text": "01"}}}, {"entry_id": 2}]}}});
        // Elements follow the document's key order; serde_json (without `preserve_order`)
        // keeps keys sorted, so `voucher_body` comes before `voucher_head` here.
        assert_eq!(
            xml(&xml_spec(), doc),
            "<ufinterface roottag=\"voucher\" proc=\"add\"><voucher><voucher_body><entry>\
<auxiliary_accounting><item name=\"dept_id\">01</item></auxiliary_accounting><entry_id>1</entry_id>\
<natural_debit_currency>1200.00</natural_debit_currency></entry><entry><entry_id>2</entry_id></entry>\
</voucher_body><voucher_head><fiscal_year>2026</fiscal_year><reserve2>SP&lt;1&gt;&amp;</reserve2>\
<revokeflag/></voucher_head></voucher></ufinterface>"
        );
    }

    #[test]
    fn soap_envelope_namespaces_and_declaration() {
        let spec = BodySpec {
            encoding: Encoding::Xml,
            root: Some("v:SaveVoucher".into()),
            namespaces: vec![("v".into(), "urn:vouchers".into())],
            envelope: Some(Envelope::Soap11),
            ..BodySpec::json()
        };
        assert_eq!(
            xml(&spec, json!({"v:No": "A&B"})),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\
<soap:Body><v:SaveVoucher xmlns:v=\"urn:vouchers\"><v:No>A&amp;B</v:No></v:SaveVoucher></soap:Body></soap:Envelope>"
        );
        assert_eq!(spec.content_type(), "text/xml; charset=utf-8");
        let written = xml(&spec, json!({"v:No": "1"}));
        let p = super::super::xml_path::XmlPath::parse("/Envelope/Body/SaveVoucher/No").unwrap();
        assert_eq!(
            p.find(&written).as_deref(),
            Some("1"),
            "the encoder's output reads back"
        );
    }

    #[test]
    fn bad_names_and_non_objects_are_refused() {
        assert_eq!(
            encode(&xml_spec(), &json!({"1abc": 1})),
            Err(EncodeError::BadName("1abc".into()))
        );
        assert_eq!(
            encode(&xml_spec(), &json!({"a b": 1})),
            Err(EncodeError::BadName("a b".into()))
        );
        assert_eq!(
            encode(&xml_spec(), &json!([1])),
            Err(EncodeError::NotAnObject("XML"))
        );
        assert!(
            !BodySpec {
                root: None,
                ..xml_spec()
            }
            .problems()
            .is_empty()
        );
        assert!(
            !BodySpec {
                root: Some("x".into()),
                ..BodySpec::json()
            }
            .problems()
            .is_empty()
        );
        assert!(xml_spec().problems().is_empty());
    }

    #[test]
    fn form_bodies_are_flat() {
        let spec = BodySpec {
            encoding: Encoding::Form,
            ..BodySpec::json()
        };
        let body = encode(&spec, &json!({"grant_type": "client_credentials", "n": 2, "tag": ["a b", "c&d"], "skip": null})).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "grant_type=client_credentials&n=2&tag=a+b&tag=c%26d"
        );
        assert_eq!(
            encode(&spec, &json!({"lines": {"a": 1}})),
            Err(EncodeError::NotFlat("lines".into()))
        );
    }

    #[test]
    fn json_is_the_document() {
        let doc = json!({"amount": "1280.50", "中文": "费用"});
        assert_eq!(
            encode(&BodySpec::json(), &doc).unwrap(),
            serde_json::to_vec(&doc).unwrap()
        );
    }

    proptest::proptest! {
        /// Whatever text the document holds, the XML written reads back to the same text
        /// (escaping is right), element by element.
        #[test]
        fn prop_xml_text_reads_back(values in proptest::collection::btree_map("[a-z][a-z0-9_]{0,8}", "[^\\x00-\\x1f\\x7f]{0,24}", 1..6)) {
            let doc = Value::Object(values.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
            let written = xml(&xml_spec(), doc);
            for (k, v) in &values {
                let p = super::super::xml_path::XmlPath::parse(&format!("/ufinterface/{k}")).unwrap();
                let found = p.find(&written);
                proptest::prop_assert_eq!(found.as_deref(), Some(v.as_str()), "{}", written);
            }
        }
    }
}
