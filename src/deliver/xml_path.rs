//! A small XML path language for reading a target's XML answer: `/a/b/c` (from the root),
//! `//c` (anywhere), a trailing `@name` for an attribute, otherwise the element's text.
//!
//! It covers what the targets in PROTOCOLS.md §6.1 need (`//item/@succeed`,
//! `//sendresult/resultcode`) and nothing more; it is not XPath. Names are compared by local
//! name, so `soap:Envelope` matches `Envelope`. Owns parsing and evaluating such paths; must not
//! do anything else with XML (building requests is `encode`).

use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

/// A parsed XML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlPath {
    anywhere: bool,
    steps: Vec<String>,
    attribute: Option<String>,
}

impl XmlPath {
    /// Parses `/a/b`, `//b`, `/a/b/@attr`, `//b/@attr`.
    pub fn parse(text: &str) -> Result<XmlPath, String> {
        let (anywhere, rest) = if let Some(r) = text.strip_prefix("//") {
            (true, r)
        } else if let Some(r) = text.strip_prefix('/') {
            (false, r)
        } else {
            return Err(format!(
                "XML path `{text}` must start with `/` (from the root) or `//` (anywhere)"
            ));
        };
        let mut steps: Vec<String> = rest.split('/').map(str::to_owned).collect();
        let attribute = match steps.last() {
            Some(last) if last.starts_with('@') => {
                let a = last[1..].to_owned();
                steps.pop();
                Some(a)
            }
            _ => None,
        };
        if steps.is_empty() || steps.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "XML path `{text}` has an empty step; write e.g. `//item/@succeed`"
            ));
        }
        if attribute.as_deref() == Some("") {
            return Err(format!("XML path `{text}` names no attribute after `@`"));
        }
        if let Some(bad) = steps
            .iter()
            .find(|s| s.contains(['@', '[', ']', '*', '(', ' ']))
        {
            return Err(format!(
                "XML path step `{bad}` is not supported: use element names, `//` only at the start and `@attr` only at the end"
            ));
        }
        Ok(XmlPath {
            anywhere,
            steps,
            attribute,
        })
    }

    fn matches(&self, stack: &[String]) -> bool {
        if self.anywhere {
            stack.len() >= self.steps.len()
                && stack[stack.len() - self.steps.len()..] == self.steps[..]
        } else {
            stack == self.steps.as_slice()
        }
    }

    /// The value at this path in `xml`: the attribute or the text of the first matching
    /// element. `None` when nothing matches or the XML is not well-formed.
    pub fn find(&self, xml: &str) -> Option<String> {
        let mut reader = Reader::from_str(xml);
        let mut stack: Vec<String> = Vec::new();
        // Depth of the element whose text we collect, and the text so far.
        let mut collecting: Option<(usize, String)> = None;
        loop {
            let event = reader.read_event().ok()?;
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    stack.push(e.local_name().as_ref().to_owned());
                    if collecting.is_none() && self.matches(&stack) {
                        match &self.attribute {
                            Some(name) => {
                                for a in e.attributes().flatten() {
                                    if a.key.local_name().as_ref() == name.as_str() {
                                        let v = a.normalized_value(XmlVersion::Implicit1_0).ok()?;
                                        return Some(v.into_owned());
                                    }
                                }
                            }
                            None if empty => return Some(String::new()),
                            None => collecting = Some((stack.len(), String::new())),
                        }
                    }
                    if empty {
                        stack.pop();
                    }
                }
                Event::Text(t) => {
                    if let Some((_, buf)) = collecting.as_mut() {
                        buf.push_str(&t.xml10_content());
                    }
                }
                Event::GeneralRef(r) => {
                    if let Some((_, buf)) = collecting.as_mut() {
                        match r.resolve_char_ref().ok()? {
                            Some(c) => buf.push(c),
                            None => buf.push_str(predefined_entity(&r)?),
                        }
                    }
                }
                Event::CData(c) => {
                    if let Some((_, buf)) = collecting.as_mut() {
                        buf.push_str(&c);
                    }
                }
                Event::End(_) => {
                    if let Some((depth, buf)) = collecting.take() {
                        if depth == stack.len() {
                            return Some(buf);
                        }
                        collecting = Some((depth, buf));
                    }
                    stack.pop();
                }
                Event::Eof => return None,
                _ => {}
            }
        }
    }
}

/// The five entities XML predefines (others need a DTD, which answers do not carry).
fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

/// Whether `text` is well-formed XML with one root element (an HTML error page usually is
/// not; the caller also checks the content type).
pub fn is_well_formed(text: &str) -> bool {
    let mut reader = Reader::from_str(text);
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        match reader.read_event() {
            Err(_) => return false,
            Ok(Event::Start(_)) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
            }
            Ok(Event::Empty(_)) => {
                if depth == 0 {
                    roots += 1;
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Eof) => return depth == 0 && roots == 1,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U8: &str = r#"<?xml version="1.0" encoding="utf-8"?><ufinterface roottag="return"><item accounting_period="5" succeed="0" dsc="凭证已成功保存" u8voucher_id="3"/></ufinterface>"#;
    const NC: &str = "<ufinterface successful=\"Y\"><sendresult><billpk/><resultcode>1</resultcode><resultdescription>单据 &lt;1&gt; &#25104;功</resultdescription></sendresult></ufinterface>";

    #[test]
    fn attributes_and_text_anywhere_and_from_the_root() {
        let p = |s: &str| XmlPath::parse(s).unwrap();
        assert_eq!(p("//item/@succeed").find(U8).as_deref(), Some("0"));
        assert_eq!(
            p("/ufinterface/item/@dsc").find(U8).as_deref(),
            Some("凭证已成功保存")
        );
        assert_eq!(
            p("/ufinterface/@roottag").find(U8).as_deref(),
            Some("return")
        );
        assert_eq!(p("/item/@succeed").find(U8), None);
        assert_eq!(p("//sendresult/resultcode").find(NC).as_deref(), Some("1"));
        assert_eq!(
            p("//resultdescription").find(NC).as_deref(),
            Some("单据 <1> 成功")
        );
        assert_eq!(p("//billpk").find(NC).as_deref(), Some(""));
        assert_eq!(p("//missing").find(NC), None);
    }

    #[test]
    fn namespaced_names_match_by_local_name() {
        let soap = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><r:Result xmlns:r="urn:x"><r:Code>OK</r:Code></r:Result></soap:Body></soap:Envelope>"#;
        let p = XmlPath::parse("/Envelope/Body/Result/Code").unwrap();
        assert_eq!(p.find(soap).as_deref(), Some("OK"));
    }

    #[test]
    fn bad_paths_are_refused_with_a_reason() {
        for bad in ["item", "/", "//a//b", "/a/@", "/a[1]", "/a/*"] {
            assert!(XmlPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn well_formedness() {
        assert!(is_well_formed(U8));
        assert!(!is_well_formed("<html><body>Bad Gateway</body>"));
        assert!(!is_well_formed("<a></a><b></b>"));
        assert!(!is_well_formed("not xml"));
    }
}
