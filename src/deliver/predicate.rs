//! Predicates over a target's answer: status tests, JSON-pointer tests, XML path tests and
//! header tests, with type coercion (`"200"` equals `200`, `"true"` equals `true`), combinable
//! with `all` / `any`.
//!
//! Owns the predicate syntax of connector files (parsed purely, with positions) and its
//! evaluation. Must not decide what an answer means (that is `classify`) nor do I/O.

use std::borrow::Cow;
use std::ops::Range;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::xml_path::XmlPath;

/// A condition on an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// Every part holds.
    All(Vec<Predicate>),
    /// At least one part holds.
    Any(Vec<Predicate>),
    /// The HTTP status is one of these ranges.
    Status(Vec<StatusRange>),
    /// A value read from the answer passes a test.
    Value {
        /// Where the value is read.
        at: Locator,
        /// What it must satisfy.
        test: Test,
    },
}

/// An inclusive range of HTTP status codes (`200` is `200..=200`, `"4xx"` is `400..=499`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status.
    pub low: u16,
    /// Highest status.
    pub high: u16,
}

/// Where a tested value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Locator {
    /// A JSON pointer (RFC 6901) into a JSON answer.
    Pointer(String),
    /// An XML path into an XML answer.
    Xml(XmlPath),
    /// A response header (name compared without case).
    Header(String),
}

/// A test on one value. Every test but `exists` fails when the value is missing.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Equal after coercion.
    Eq(Value),
    /// Present and not equal after coercion.
    Ne(Value),
    /// Present (`true`) or absent (`false`).
    Exists(bool),
    /// Equal to one of these after coercion.
    In(Vec<Value>),
    /// The value's text contains this.
    Contains(String),
    /// The value's text starts with this.
    StartsWith(String),
    /// The value's text ends with this.
    EndsWith(String),
}

/// What a predicate looks at: the status, the headers (names in lower case) and the body.
#[derive(Debug, Clone, Copy)]
pub struct AnswerView<'a> {
    /// HTTP status.
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: &'a [(String, String)],
    /// The body as understood.
    pub body: &'a Body,
}

/// A response body after parsing.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// No body.
    Empty,
    /// Well-formed JSON.
    Json(Value),
    /// Well-formed XML (kept as text; paths are evaluated on it).
    Xml(String),
    /// Something we do not understand (HTML, truncated JSON, plain text).
    Unparsed {
        /// Why it was not understood.
        why: String,
    },
}

impl Body {
    /// Reads the value at `at` (headers are not in the body; see [`AnswerView::read`]).
    fn read(&self, at: &Locator) -> Option<Value> {
        match (self, at) {
            (Body::Json(v), Locator::Pointer(p)) => v.pointer(p).cloned(),
            (Body::Xml(x), Locator::Xml(p)) => p.find(x).map(Value::String),
            _ => None,
        }
    }
}

impl AnswerView<'_> {
    /// Reads the value a locator points at.
    pub fn read(&self, at: &Locator) -> Option<Value> {
        match at {
            Locator::Header(name) => self
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| Value::String(v.clone())),
            _ => self.body.read(at),
        }
    }
}

impl Predicate {
    /// Whether the answer satisfies this predicate.
    pub fn holds(&self, answer: &AnswerView<'_>) -> bool {
        match self {
            Predicate::All(parts) => parts.iter().all(|p| p.holds(answer)),
            Predicate::Any(parts) => parts.iter().any(|p| p.holds(answer)),
            Predicate::Status(ranges) => ranges
                .iter()
                .any(|r| (r.low..=r.high).contains(&answer.status)),
            Predicate::Value { at, test } => test.passes(answer.read(at).as_ref()),
        }
    }

    /// Whether this predicate reads the body (so an answer we cannot parse cannot pass it).
    pub fn reads_body(&self) -> bool {
        match self {
            Predicate::All(p) | Predicate::Any(p) => p.iter().any(Predicate::reads_body),
            Predicate::Status(_) => false,
            Predicate::Value { at, .. } => !matches!(at, Locator::Header(_)),
        }
    }
}

impl Test {
    /// Whether `value` (None = missing) passes.
    pub fn passes(&self, value: Option<&Value>) -> bool {
        let Some(v) = value else {
            return matches!(self, Test::Exists(false));
        };
        match self {
            Test::Exists(want) => *want,
            Test::Eq(e) => coerced_eq(v, e),
            Test::Ne(e) => !coerced_eq(v, e),
            Test::In(list) => list.iter().any(|e| coerced_eq(v, e)),
            Test::Contains(s) => scalar_text(v).is_some_and(|t| t.contains(s.as_str())),
            Test::StartsWith(s) => scalar_text(v).is_some_and(|t| t.starts_with(s.as_str())),
            Test::EndsWith(s) => scalar_text(v).is_some_and(|t| t.ends_with(s.as_str())),
        }
    }
}

/// The text of a scalar: strings as they are, numbers in JSON form, booleans as
/// `true`/`false`. `None` for null, arrays and objects.
pub fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Equality with coercion between strings, numbers and booleans: `"200" == 200`,
/// `"200.0" == 200`, `"true" == true` (`"TRUE"` too). Two strings compare as text
/// (`"00000" != "0"`). Arrays, objects and null compare structurally.
pub fn coerced_eq(actual: &Value, expected: &Value) -> bool {
    if actual == expected {
        return true;
    }
    let (Some(a), Some(e)) = (scalar_text(actual), scalar_text(expected)) else {
        return false;
    };
    let (a, e) = (a.trim(), e.trim());
    if a == e {
        return true;
    }
    if actual.is_boolean() || expected.is_boolean() {
        return a.eq_ignore_ascii_case(e);
    }
    if actual.is_string() && expected.is_string() {
        // Two texts compare as texts: YonBIP's "00000" is not "0".
        return false;
    }
    match (decimal(a), decimal(e)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn decimal(s: &str) -> Option<Decimal> {
    Decimal::from_str(s)
        .or_else(|_| Decimal::from_scientific(s))
        .ok()
}

/// A predicate as written in a connector file: one table whose keys are ANDed together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PredicateFile {
    all: Option<Vec<Spanned<PredicateFile>>>,
    any: Option<Vec<Spanned<PredicateFile>>>,
    status: Option<toml::Value>,
    pointer: Option<String>,
    xpath: Option<String>,
    header: Option<String>,
    eq: Option<toml::Value>,
    ne: Option<toml::Value>,
    exists: Option<bool>,
    #[serde(rename = "in")]
    one_of: Option<Vec<toml::Value>>,
    contains: Option<String>,
    starts_with: Option<String>,
    ends_with: Option<String>,
}

/// Converts a TOML value to JSON (dates become their text).
pub(crate) fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Compiles a predicate table; problems go to `errors` with the span of the table they are in.
pub(crate) fn compile(
    p: Spanned<PredicateFile>,
    errors: &mut Vec<(Range<usize>, String)>,
) -> Predicate {
    let span = p.span();
    let p = p.into_inner();
    let errors_before = errors.len();
    let mut parts = Vec::new();
    let mut err = |m: String| errors.push((span.clone(), m));
    if let Some(all) = p.all {
        if all.is_empty() {
            err("`all = []` is always true; list at least one condition".into());
        }
        parts.push(Predicate::All(
            all.into_iter().map(|x| compile(x, errors)).collect(),
        ));
    }
    if let Some(any) = p.any {
        if any.is_empty() {
            errors.push((
                span.clone(),
                "`any = []` is never true; list at least one condition".into(),
            ));
        }
        parts.push(Predicate::Any(
            any.into_iter().map(|x| compile(x, errors)).collect(),
        ));
    }
    let mut err = |m: String| errors.push((span.clone(), m));
    if let Some(s) = p.status {
        match status_ranges(&s) {
            Ok(r) => parts.push(Predicate::Status(r)),
            Err(m) => err(m),
        }
    }
    let locators: Vec<Locator> = [
        p.pointer.map(|s| {
            if !(s.is_empty() || s.starts_with('/')) {
                err(format!(
                    "JSON pointer `{s}` must start with `/` (RFC 6901), e.g. `/data/code`"
                ));
            }
            Locator::Pointer(s)
        }),
        p.xpath.and_then(|s| match XmlPath::parse(&s) {
            Ok(x) => Some(Locator::Xml(x)),
            Err(m) => {
                err(m);
                None
            }
        }),
        p.header.map(Locator::Header),
    ]
    .into_iter()
    .flatten()
    .collect();
    let tests: Vec<Test> = [
        p.eq.as_ref().map(|v| Test::Eq(toml_to_json(v))),
        p.ne.as_ref().map(|v| Test::Ne(toml_to_json(v))),
        p.exists.map(Test::Exists),
        p.one_of
            .as_ref()
            .map(|l| Test::In(l.iter().map(toml_to_json).collect())),
        p.contains.map(Test::Contains),
        p.starts_with.map(Test::StartsWith),
        p.ends_with.map(Test::EndsWith),
    ]
    .into_iter()
    .flatten()
    .collect();
    match (locators.len(), tests.is_empty()) {
        (0, false) => err("a test (eq, ne, exists, in, contains, starts_with, ends_with) needs a `pointer`, `xpath` or `header` to read".into()),
        (1, true) => err("`pointer`/`xpath`/`header` needs a test: eq, ne, exists, in, contains, starts_with or ends_with".into()),
        (n, _) if n > 1 => err("use one of `pointer`, `xpath`, `header` per condition; combine conditions with `all`".into()),
        _ => {}
    }
    if let Some(at) = locators.into_iter().next() {
        for test in tests {
            parts.push(Predicate::Value {
                at: at.clone(),
                test,
            });
        }
    }
    match parts.len() {
        0 if errors.len() > errors_before => Predicate::All(Vec::new()),
        0 => {
            errors.push((span, "empty condition: write e.g. `{ status = 200 }` or `{ pointer = \"/code\", eq = 0 }`".into()));
            Predicate::All(Vec::new())
        }
        1 => parts.remove(0),
        _ => Predicate::All(parts),
    }
}

fn status_ranges(v: &toml::Value) -> Result<Vec<StatusRange>, String> {
    let one = |v: &toml::Value| -> Result<StatusRange, String> {
        match v {
            toml::Value::Integer(i) if (100..=599).contains(i) => {
                let s = *i as u16;
                Ok(StatusRange { low: s, high: s })
            }
            toml::Value::String(s)
                if s.len() == 3 && s.ends_with("xx") && matches!(s.as_bytes()[0], b'1'..=b'5') =>
            {
                let base = u16::from(s.as_bytes()[0] - b'0') * 100;
                Ok(StatusRange {
                    low: base,
                    high: base + 99,
                })
            }
            other => Err(format!(
                "status `{other}` is not an HTTP status: write a code (200) or a class (\"2xx\")"
            )),
        }
    };
    match v {
        toml::Value::Array(a) if a.is_empty() => Err("`status = []` matches nothing".into()),
        toml::Value::Array(a) => a.iter().map(one).collect(),
        v => one(v).map(|r| vec![r]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Predicate, Vec<String>> {
        #[derive(Deserialize)]
        struct W {
            p: Spanned<PredicateFile>,
        }
        let w: W = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let p = compile(w.p, &mut errors);
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors.into_iter().map(|(_, m)| m).collect())
        }
    }

    fn json_answer(status: u16, body: Value) -> (u16, Body) {
        (status, Body::Json(body))
    }

    fn holds(p: &Predicate, (status, body): &(u16, Body)) -> bool {
        p.holds(&AnswerView {
            status: *status,
            headers: &[("retry-after".into(), "3".into())],
            body,
        })
    }

    #[test]
    fn coercion_between_strings_numbers_and_booleans() {
        assert!(coerced_eq(&json!("200"), &json!(200)));
        assert!(coerced_eq(&json!(200), &json!("200")));
        assert!(coerced_eq(&json!("200.00"), &json!(200)));
        assert!(coerced_eq(&json!("true"), &json!(true)));
        assert!(coerced_eq(&json!("True"), &json!(true)));
        assert!(coerced_eq(&json!(false), &json!("false")));
        assert!(coerced_eq(&json!("0"), &json!(0)));
        assert!(!coerced_eq(&json!("00000"), &json!("0")));
        assert!(!coerced_eq(&json!("1"), &json!(true)));
        assert!(!coerced_eq(&json!(null), &json!("null")));
        assert!(!coerced_eq(&json!("200"), &json!(201)));
        assert!(coerced_eq(&json!([1, 2]), &json!([1, 2])));
    }

    #[test]
    fn kingdee_is_success_as_boolean_or_string() {
        let p = parse("p = { pointer = \"/Result/ResponseStatus/IsSuccess\", eq = true }").unwrap();
        let real = json_answer(
            200,
            json!({"Result":{"ResponseStatus":{"IsSuccess":true,"Errors":[]}}}),
        );
        let doc_template = json_answer(
            200,
            json!({"Result":{"ResponseStatus":{"IsSuccess":"true"}}}),
        );
        let failed = json_answer(
            200,
            json!({"Result":{"ResponseStatus":{"IsSuccess":false}}}),
        );
        let missing = json_answer(200, json!({"Result":{}}));
        assert!(holds(&p, &real));
        assert!(holds(&p, &doc_template));
        assert!(!holds(&p, &failed));
        assert!(!holds(&p, &missing));
    }

    #[test]
    fn yonbip_code_as_string_or_number_with_status_and_no_failures() {
        let p = parse(
            "p = { status = \"2xx\", all = [{ pointer = \"/code\", eq = \"200\" }, { any = [{ pointer = \"/data/failCount\", exists = false }, { pointer = \"/data/failCount\", eq = 0 }] }] }",
        )
        .unwrap();
        assert!(holds(
            &p,
            &json_answer(200, json!({"code":"200","data":{}}))
        ));
        assert!(holds(
            &p,
            &json_answer(200, json!({"code":200,"data":{"failCount":0}}))
        ));
        assert!(!holds(
            &p,
            &json_answer(200, json!({"code":200,"data":{"failCount":2}}))
        ));
        assert!(!holds(
            &p,
            &json_answer(200, json!({"code":"404","message":"凭证保存不成功"}))
        ));
        assert!(!holds(&p, &json_answer(500, json!({"code":"200"}))));
    }

    #[test]
    fn ne_in_exists_and_text_tests() {
        let ne = parse("p = { pointer = \"/errcode\", ne = \"0\" }").unwrap();
        assert!(holds(&ne, &json_answer(200, json!({"errcode": 40001}))));
        assert!(!holds(&ne, &json_answer(200, json!({"errcode": 0}))));
        assert!(
            !holds(&ne, &json_answer(200, json!({}))),
            "ne fails on a missing value"
        );
        let one_of = parse("p = { pointer = \"/code\", in = [310032, \"310039\", 999] }").unwrap();
        assert!(holds(&one_of, &json_answer(200, json!({"code": "310032"}))));
        assert!(holds(&one_of, &json_answer(200, json!({"code": 310039}))));
        assert!(!holds(
            &one_of,
            &json_answer(200, json!({"code": "310037"}))
        ));
        let kingdee_dup = parse(
            "p = { pointer = \"/Result/ResponseStatus/Errors/0/Message\", starts_with = \"违反字段唯一性要求\", ends_with = \"已经被使用。\" }",
        )
        .unwrap();
        assert!(holds(
            &kingdee_dup,
            &json_answer(
                200,
                json!({"Result":{"ResponseStatus":{"Errors":[{"FieldName":"FBillNo","Message":"违反字段唯一性要求：编码唯一。[test5]在当前系统中已经被使用。"}]}}})
            )
        ));
        let header = parse("p = { header = \"Retry-After\", exists = true }").unwrap();
        assert!(holds(&header, &json_answer(200, json!({}))));
        assert!(!header.reads_body());
    }

    #[test]
    fn status_codes_and_classes() {
        let p = parse("p = { status = [\"2xx\", 409] }").unwrap();
        assert!(holds(&p, &json_answer(201, json!({}))));
        assert!(holds(&p, &json_answer(409, json!({}))));
        assert!(!holds(&p, &json_answer(404, json!({}))));
    }

    #[test]
    fn xml_path_test_on_an_xml_answer() {
        let p = parse("p = { xpath = \"//item/@succeed\", eq = 0 }").unwrap();
        let ok = (
            200,
            Body::Xml(
                r#"<ufinterface roottag="return"><item succeed="0" dsc="ok"/></ufinterface>"#
                    .into(),
            ),
        );
        let dup = (200, Body::Xml(r#"<ufinterface><item key="p1" succeed="101" dsc="客户编码已经存在，不可重复！"/></ufinterface>"#.into()));
        assert!(holds(&p, &ok));
        assert!(!holds(&p, &dup));
        assert!(!holds(&p, &json_answer(200, json!({"succeed": 0}))));
    }

    #[test]
    fn mistakes_are_reported() {
        let cases = [
            ("p = { eq = 1 }", "needs a `pointer`"),
            ("p = { pointer = \"/a\" }", "needs a test"),
            ("p = { pointer = \"a\", eq = 1 }", "must start with `/`"),
            ("p = { status = 700 }", "not an HTTP status"),
            ("p = { status = \"2xy\" }", "not an HTTP status"),
            ("p = { xpath = \"item\", eq = 1 }", "must start with"),
            ("p = {}", "empty condition"),
            ("p = { any = [] }", "never true"),
            ("p = { pointer = \"/a\", header = \"x\", eq = 1 }", "one of"),
        ];
        for (text, want) in cases {
            let errs = parse(text).unwrap_err();
            assert!(errs.iter().any(|e| e.contains(want)), "{text}: {errs:?}");
        }
        let unknown = parse("p = { pointr = \"/a\", eq = 1 }").unwrap_err();
        assert!(unknown[0].contains("unknown field `pointr`"), "{unknown:?}");
    }

    proptest::proptest! {
        /// Coercion is symmetric, and a number equals its own text.
        #[test]
        fn prop_coercion_is_symmetric(n in proptest::num::i64::ANY, m in proptest::num::i64::ANY, s in "[0-9a-z.]{0,6}") {
            let texts = [json!(n), json!(n.to_string()), json!(m), json!(s), json!(true), json!("TRUE")];
            for a in &texts {
                for b in &texts {
                    proptest::prop_assert_eq!(coerced_eq(a, b), coerced_eq(b, a), "{} vs {}", a, b);
                }
            }
            proptest::prop_assert!(coerced_eq(&json!(n), &json!(n.to_string())));
            let with_cents = format!("{n}.00");
            proptest::prop_assert!(coerced_eq(&json!(with_cents), &json!(n)));
        }
    }
}
