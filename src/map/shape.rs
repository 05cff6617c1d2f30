//! The shape of a mapping's input, so paths are checked at load, and the JSON Schema
//! (`docs/mapping-input.schema.json`) generated from it.
//!
//! For approvals the shape is that of `ApprovalInstance::to_document()`
//! (`src/wecom/approval.rs`); a test checks the normalised fixtures against it field by field,
//! so the two cannot drift apart. Contact and customer records are not checked yet (`Any`).

use serde_json::{Map, Value, json};

/// The shape of a JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Anything; paths into it are not checked.
    Any,
    /// A scalar of this JSON type (`string`, `integer`, `boolean`, or a `|` list, may be null).
    Scalar(&'static str),
    /// A list of this shape.
    Array(Box<Shape>),
    /// An object with exactly these fields.
    Object(Vec<(&'static str, Shape)>),
    /// An object with any keys (titles, ids) whose values have this shape.
    Map(Box<Shape>),
    /// A form value (`{"type": "money", "amount": "..."}` and its siblings).
    FormValue,
    /// A form control (`id`, `title`, `control`, `hidden`, `value`).
    Control,
}

fn obj(fields: Vec<(&'static str, Shape)>) -> Shape {
    Shape::Object(fields)
}
fn arr(s: Shape) -> Shape {
    Shape::Array(Box::new(s))
}
const STR: Shape = Shape::Scalar("string");
const INT: Shape = Shape::Scalar("integer");
const BOOL: Shape = Shape::Scalar("boolean");

/// The normalised approval instance.
pub fn approval() -> Shape {
    let approver = obj(vec![
        ("user_id", STR),
        ("status", INT),
        ("speech", STR),
        ("time", STR),
        ("media_ids", arr(STR)),
    ]);
    obj(vec![
        ("sp_no", STR),
        ("sp_name", STR),
        ("template_id", STR),
        ("status", INT),
        ("status_name", STR),
        (
            "applicant",
            obj(vec![("user_id", STR), ("department", STR), ("batch", BOOL)]),
        ),
        ("apply_time", STR),
        ("apply_timestamp", INT),
        (
            "approval_nodes",
            arr(obj(vec![
                ("node_type", INT),
                ("status", INT),
                ("approve_rel", INT),
                ("approvers", arr(approver)),
            ])),
        ),
        (
            "comments",
            arr(obj(vec![
                ("user_id", STR),
                ("time", STR),
                ("content", STR),
                ("comment_id", STR),
                ("media_ids", arr(STR)),
            ])),
        ),
        ("notifyers", arr(STR)),
        ("form", obj(vec![("controls", arr(Shape::Control))])),
        ("form_by_id", Shape::Map(Box::new(Shape::FormValue))),
        ("form_by_title", Shape::Map(Box::new(Shape::FormValue))),
    ])
}

fn control_fields() -> Vec<(&'static str, Shape)> {
    vec![
        ("id", STR),
        ("title", STR),
        ("control", STR),
        ("hidden", BOOL),
        ("value", Shape::FormValue),
    ]
}

/// Every field any form value type may have (the union; a field of another type is `null`).
fn form_value_fields() -> Vec<(&'static str, Shape)> {
    let day_item = obj(vec![("date", STR), ("at", STR), ("duration_secs", INT)]);
    let related = obj(vec![
        ("sp_no", STR),
        ("template_name", STR),
        ("status", INT),
        ("name", STR),
        ("create_time", STR),
    ]);
    vec![
        ("type", STR),
        ("text", STR),
        ("value", STR),
        ("amount", STR),
        ("kind", Shape::Scalar("integer|string")),
        ("at", STR),
        ("date", STR),
        ("timestamp", INT),
        ("begin", STR),
        ("end", STR),
        ("begin_timestamp", INT),
        ("end_timestamp", INT),
        ("duration_secs", INT),
        ("multi", BOOL),
        ("options", arr(obj(vec![("key", STR), ("text", STR)]))),
        ("users", arr(obj(vec![("user_id", STR), ("name", STR)]))),
        ("departments", arr(obj(vec![("id", STR), ("name", STR)]))),
        ("file_ids", arr(STR)),
        ("rows", arr(arr(Shape::Control))),
        ("rows_by_id", arr(Shape::Map(Box::new(Shape::FormValue)))),
        ("rows_by_title", arr(Shape::Map(Box::new(Shape::FormValue)))),
        ("type_key", STR),
        ("type_name", STR),
        ("range_kind", STR),
        ("day_items", arr(day_item)),
        ("slice_duration_secs", INT),
        ("state", STR),
        ("time", STR),
        ("day", STR),
        ("latitude", STR),
        ("longitude", STR),
        ("title", STR),
        ("address", STR),
        ("items", arr(related)),
        ("raw", Shape::Any),
        ("control", STR),
        ("account_type", INT),
        ("account_name", STR),
        ("account_number", STR),
        ("bank_name", STR),
        ("bank_code", STR),
        ("branch_name", STR),
        ("branch_id", STR),
        ("province", STR),
        ("city", STR),
        ("remark", STR),
    ]
}

impl Shape {
    fn expand(&self) -> Shape {
        match self {
            Shape::FormValue => Shape::Object(form_value_fields()),
            Shape::Control => Shape::Object(control_fields()),
            other => other.clone(),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Shape::Any => "anything",
            Shape::Scalar(_) => "a scalar",
            Shape::Array(_) => "a list",
            Shape::Object(_) | Shape::FormValue | Shape::Control => "an object",
            Shape::Map(_) => "a map",
        }
    }
}

/// A problem found in a path: the character offset in the path and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct PathProblem {
    /// 0-based character offset of the offending segment in the path text.
    pub at: usize,
    /// What is wrong, with a hint.
    pub message: String,
}

/// Walks `path` (RFC 9535 text, already parsed successfully) over `shape`. Returns the shape of
/// what it selects (for a wildcard, of one selected element) or the first segment that cannot
/// exist. Constructs this checker does not follow (`..`, filters, escapes) end the check with
/// `Any`, so it never rejects a path that could match.
pub fn check(path: &str, shape: &Shape) -> Result<Shape, PathProblem> {
    let chars: Vec<char> = path.chars().collect();
    let mut i = 1; // after `$` or `@`
    let mut cur = shape.expand();
    while i < chars.len() {
        if matches!(cur, Shape::Any) {
            return Ok(Shape::Any);
        }
        let start = i;
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => return Ok(Shape::Any),
            '.' if chars.get(i + 1) == Some(&'*') => {
                cur = wildcard(&cur);
                i += 2;
            }
            '.' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                cur = field(&cur, &name, start)?;
                i = j;
            }
            '[' => {
                let Some(close) = chars[i..].iter().position(|c| *c == ']').map(|p| p + i) else {
                    return Ok(Shape::Any);
                };
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                let quoted = (inner.starts_with('\'') && inner.ends_with('\''))
                    || (inner.starts_with('"') && inner.ends_with('"'));
                if quoted
                    && inner.len() >= 2
                    && !inner.contains('\\')
                    && !inner[1..inner.len() - 1].contains(['\'', '"', ','])
                {
                    cur = field(&cur, &inner[1..inner.len() - 1], start)?;
                } else if inner == "*" || inner.starts_with('?') || inner.contains(':') {
                    cur = wildcard(&cur);
                } else if inner.parse::<i64>().is_ok() {
                    cur = match cur {
                        Shape::Array(s) => s.expand(),
                        other => {
                            return Err(PathProblem {
                                at: start,
                                message: format!(
                                    "`[{inner}]` indexes a list, but this is {}",
                                    other.describe()
                                ),
                            });
                        }
                    };
                } else {
                    return Ok(Shape::Any);
                }
                i = close + 1;
            }
            _ => return Ok(Shape::Any),
        }
    }
    Ok(cur)
}

fn wildcard(s: &Shape) -> Shape {
    match s {
        Shape::Array(e) | Shape::Map(e) => e.expand(),
        _ => Shape::Any,
    }
}

fn field(s: &Shape, name: &str, at: usize) -> Result<Shape, PathProblem> {
    match s {
        Shape::Any => Ok(Shape::Any),
        Shape::Map(v) => Ok(v.expand()),
        Shape::Object(fields) => match fields.iter().find(|(n, _)| *n == name) {
            Some((_, f)) => Ok(f.expand()),
            None => {
                let known: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                let hint = super::expr::closest(name, known.iter().copied())
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                Err(PathProblem {
                    at,
                    message: format!(
                        "no field `{name}` here; {hint}known fields: {}",
                        known.join(", ")
                    ),
                })
            }
        },
        Shape::Array(_) => Err(PathProblem {
            at,
            message: format!(
                "`{name}` is looked up in a list; select elements first with [*] or [0]"
            ),
        }),
        other => Err(PathProblem {
            at,
            message: format!(
                "`{name}` is looked up in {}, which has no fields",
                other.describe()
            ),
        }),
    }
}

/// The JSON Schema (draft 2020-12) of the approval input.
pub fn approval_schema() -> Value {
    let mut defs = Map::new();
    defs.insert(
        "form_value".into(),
        schema(&Shape::Object(form_value_fields()), false),
    );
    defs.insert(
        "control".into(),
        schema(&Shape::Object(control_fields()), true),
    );
    let mut root = schema(&approval(), true);
    if let Value::Object(m) = &mut root {
        m.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        m.insert(
            "title".into(),
            json!("wecom-bridge mapping input: a normalised approval instance"),
        );
        m.insert("description".into(), json!("Generated from src/map/shape.rs (which a test keeps in step with ApprovalInstance::to_document). Form values have a `type` tag; fields of other types are absent."));
        m.insert("$defs".into(), Value::Object(defs));
    }
    root
}

fn schema(s: &Shape, required: bool) -> Value {
    match s {
        Shape::Any => json!({}),
        Shape::Scalar(t) => {
            let mut types: Vec<&str> = t.split('|').collect();
            types.push("null");
            json!({ "type": types })
        }
        Shape::Array(e) => json!({ "type": "array", "items": schema(e, true) }),
        Shape::Map(v) => json!({ "type": "object", "additionalProperties": schema(v, true) }),
        Shape::FormValue => json!({ "$ref": "#/$defs/form_value" }),
        Shape::Control => json!({ "$ref": "#/$defs/control" }),
        Shape::Object(fields) => {
            let props: Map<String, Value> = fields
                .iter()
                .map(|(n, f)| ((*n).to_owned(), schema(f, true)))
                .collect();
            let mut o =
                json!({ "type": "object", "properties": props, "additionalProperties": false });
            if required {
                o["required"] = json!(fields.iter().map(|(n, _)| *n).collect::<Vec<_>>());
            }
            o
        }
    }
}

/// Every path (`a.b[*].c`) in `value` that `shape` does not allow; empty if it conforms.
pub fn violations(value: &Value, shape: &Shape, at: &str, out: &mut Vec<String>) {
    match (shape.expand(), value) {
        (Shape::Any, _) | (_, Value::Null) => {}
        (Shape::Scalar(_), v) if !v.is_object() && !v.is_array() => {}
        (Shape::Array(e), Value::Array(items)) => items
            .iter()
            .for_each(|x| violations(x, &e, &format!("{at}[*]"), out)),
        (Shape::Map(e), Value::Object(m)) => m
            .values()
            .for_each(|x| violations(x, &e, &format!("{at}.*"), out)),
        (Shape::Object(fields), Value::Object(m)) => {
            for (k, v) in m {
                match fields.iter().find(|(n, _)| n == k) {
                    Some((_, f)) => violations(v, f, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}")),
                }
            }
        }
        _ => out.push(at.to_owned()),
    }
}
