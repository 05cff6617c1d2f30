//! [`ApprovalInstance::to_document`]: the JSON document mappings read, with the form keyed by
//! control id and by title; [`ApprovalInstance::document_parts`]: only the parts a mapping reads.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::types::{ApprovalInstance, FormControl, FormValue};

impl ApprovalInstance {
    /// The document mappings read.
    ///
    /// It is this instance serialised to JSON (decimals as exact strings, never floats) with
    /// three additions:
    ///
    /// * `form_by_id`: `{ control id → value }` for the top-level controls;
    /// * `form_by_title`: `{ title → value }` for the top-level controls; when titles repeat,
    ///   the first control wins (all of them stay in `form.controls`); empty titles and ids are
    ///   not keyed;
    /// * every `table` value additionally carries `rows_by_id` and `rows_by_title`: one such
    ///   map per row, built with the same rules.
    ///
    /// A value is the [`FormValue`] object with its `type` tag, e.g.
    /// `{"type": "money", "amount": "1280.50"}`.
    pub fn to_document(&self) -> Value {
        self.document_parts(&DocumentParts::All)
    }

    /// The parts of [`to_document`](Self::to_document) that `parts` names, built alone: a
    /// reader whose paths all start inside `parts` reads exactly what it would read in the
    /// whole document (and `null` elsewhere). A mapping of a 10-row table that reads three
    /// controls by title skips the other controls and the nine copies of every table cell
    /// (`form.controls`, `form_by_id`, `form_by_title` × `rows`, `rows_by_id`, `rows_by_title`).
    pub fn document_parts(&self, parts: &DocumentParts) -> Value {
        // Destructured so that a new field cannot be forgotten here.
        let ApprovalInstance {
            sp_no,
            sp_name,
            template_id,
            status,
            status_name,
            applicant,
            apply_time,
            apply_timestamp,
            approval_nodes,
            comments,
            notifyers,
            form,
        } = self;
        let mut doc = Map::new();
        let mut put = |name: &str, value: &dyn Fn() -> Value| {
            if parts.member(name).is_some() {
                doc.insert(name.to_owned(), value());
            }
        };
        put("sp_no", &|| json_of(sp_no));
        put("sp_name", &|| json_of(sp_name));
        put("template_id", &|| json_of(template_id));
        put("status", &|| json_of(status));
        put("status_name", &|| json_of(status_name));
        put("applicant", &|| json_of(applicant));
        put("apply_time", &|| json_of(apply_time));
        put("apply_timestamp", &|| json_of(apply_timestamp));
        put("approval_nodes", &|| json_of(approval_nodes));
        put("comments", &|| json_of(comments));
        put("notifyers", &|| json_of(notifyers));
        let form_part = parts.member("form");
        let want = Wanted {
            list: form_part.and_then(|p| p.member("controls")).is_some(),
            by_id: parts.member("form_by_id"),
            by_title: parts.member("form_by_title"),
        };
        let (controls, by_id, by_title) = controls_document(&form.controls, &want);
        if form_part.is_some() {
            let mut form_doc = Map::new();
            if want.list {
                form_doc.insert("controls".to_owned(), Value::Array(controls));
            }
            doc.insert("form".to_owned(), Value::Object(form_doc));
        }
        if want.by_id.is_some() {
            doc.insert("form_by_id".to_owned(), Value::Object(by_id));
        }
        if want.by_title.is_some() {
            doc.insert("form_by_title".to_owned(), Value::Object(by_title));
        }
        Value::Object(doc)
    }
}

/// Which parts of an approval document to build (see [`ApprovalInstance::document_parts`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DocumentParts {
    /// The whole value at this point.
    #[default]
    All,
    /// Only these members of the object at this point, each with the parts of it needed;
    /// empty: nothing.
    Members(BTreeMap<String, DocumentParts>),
    /// Every member or element of the value at this point, each with these parts (a
    /// `for_each` over table rows that reads two cells of each).
    Each(Box<DocumentParts>),
}

/// [`DocumentParts::All`] as a place to borrow from.
static ALL: DocumentParts = DocumentParts::All;

impl DocumentParts {
    /// Nothing at all (add to it with [`DocumentParts::add`]).
    pub fn none() -> DocumentParts {
        DocumentParts::Members(BTreeMap::new())
    }

    /// Adds the whole value found below the member names `names` (`[]`: everything).
    pub fn add<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.add_parts(names, DocumentParts::All);
    }

    /// Adds `parts` of the value found below the member names `names`.
    pub fn add_parts<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, parts: Self) {
        let mut at = self;
        for name in names {
            match at {
                DocumentParts::All => return,
                DocumentParts::Members(m) => {
                    at = m.entry(name.to_owned()).or_insert_with(DocumentParts::none);
                }
                DocumentParts::Each(_) => {
                    // a member next to every member: keep it simple, take them all
                    *at = DocumentParts::All;
                    return;
                }
            }
        }
        at.merge(parts);
    }

    /// Makes this the union of itself and `other`.
    fn merge(&mut self, other: Self) {
        match (&mut *self, other) {
            (DocumentParts::All, _) => {}
            (DocumentParts::Members(a), DocumentParts::Members(b)) => {
                for (k, v) in b {
                    a.entry(k).or_insert_with(DocumentParts::none).merge(v);
                }
            }
            (DocumentParts::Each(a), DocumentParts::Each(b)) => a.merge(*b),
            (DocumentParts::Members(a), other) if a.is_empty() => *self = other,
            (_, DocumentParts::Members(b)) if b.is_empty() => {}
            _ => *self = DocumentParts::All,
        }
    }

    /// The parts wanted of member `name`, `None` when it is not wanted at all.
    pub fn member(&self, name: &str) -> Option<&DocumentParts> {
        match self {
            DocumentParts::All => Some(&ALL),
            DocumentParts::Members(m) => m.get(name),
            DocumentParts::Each(p) => Some(p),
        }
    }

    /// The parts wanted of each element of a list (all of each unless [`DocumentParts::Each`]
    /// says which).
    fn elements(&self) -> &DocumentParts {
        match self {
            DocumentParts::Each(p) => p,
            DocumentParts::All | DocumentParts::Members(_) => &ALL,
        }
    }
}

/// Which of the three forms of a list of controls to build: the list itself (`form.controls`,
/// a table's `rows[i]`), and which members of the maps by id and by title (`None`: no map).
struct Wanted<'p> {
    list: bool,
    by_id: Option<&'p DocumentParts>,
    by_title: Option<&'p DocumentParts>,
}

/// Serialises one of this module's types. They only have string keys and infallible
/// `Serialize` impls, so the `Null` fallback is unreachable; it exists to avoid a panic path.
fn json_of<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `(controls as a list, values by id, values by title)`, each as `want` says (empty when not
/// wanted); each value is built once, with the parts its places need.
fn controls_document(
    controls: &[FormControl],
    want: &Wanted<'_>,
) -> (Vec<Value>, Map<String, Value>, Map<String, Value>) {
    let mut list = Vec::with_capacity(if want.list { controls.len() } else { 0 });
    let mut by_id = Map::new();
    let mut by_title = Map::new();
    for control in controls {
        let id_part = keyed(&control.id, want.by_id, &by_id);
        let title_part = keyed(&control.title, want.by_title, &by_title);
        let part = match (want.list, id_part, title_part) {
            (false, None, None) => continue,
            (false, Some(p), None) | (false, None, Some(p)) => p,
            _ => &ALL,
        };
        let mut value = Some(value_document(&control.value, part));
        let mut uses = [id_part.is_some(), title_part.is_some(), want.list]
            .into_iter()
            .filter(|u| *u)
            .count();
        // cloned for all but its last place
        let mut take = || {
            uses -= 1;
            let v = if uses == 0 {
                value.take()
            } else {
                value.clone()
            };
            v.unwrap_or(Value::Null)
        };
        if id_part.is_some() {
            by_id.insert(control.id.clone(), take());
        }
        if title_part.is_some() {
            by_title.insert(control.title.clone(), take());
        }
        if want.list {
            let value = take();
            let mut out = Map::new();
            out.insert("id".to_owned(), Value::String(control.id.clone()));
            out.insert("title".to_owned(), Value::String(control.title.clone()));
            out.insert("control".to_owned(), Value::String(control.control.clone()));
            out.insert("hidden".to_owned(), Value::Bool(control.hidden));
            out.insert("value".to_owned(), value);
            list.push(Value::Object(out));
        }
    }
    (list, by_id, by_title)
}

/// The parts wanted of the value keyed `key` in `map` (being built from `parts`): `None` when
/// the map is not wanted, the key is empty or already taken (the first control wins), or the
/// key is not wanted.
fn keyed<'p>(
    key: &str,
    parts: Option<&'p DocumentParts>,
    map: &Map<String, Value>,
) -> Option<&'p DocumentParts> {
    parts
        .filter(|_| !key.is_empty() && !map.contains_key(key))
        .and_then(|p| p.member(key))
}

/// A control's value; of a table, only the members `parts` names, and of the rows by id or
/// title the cells [`DocumentParts::Each`] names (else each row whole).
fn value_document(value: &FormValue, parts: &DocumentParts) -> Value {
    let FormValue::Table { rows } = value else {
        return json_of(value);
    };
    let want = Wanted {
        list: parts.member("rows").is_some(),
        by_id: parts.member("rows_by_id").map(DocumentParts::elements),
        by_title: parts.member("rows_by_title").map(DocumentParts::elements),
    };
    let mut plain = Vec::with_capacity(rows.len());
    let mut rows_by_id = Vec::with_capacity(rows.len());
    let mut rows_by_title = Vec::with_capacity(rows.len());
    for row in rows {
        let (cells, by_id, by_title) = controls_document(row, &want);
        plain.push(Value::Array(cells));
        rows_by_id.push(Value::Object(by_id));
        rows_by_title.push(Value::Object(by_title));
    }
    let mut out = Map::new();
    if parts.member("type").is_some() {
        out.insert("type".to_owned(), Value::String("table".to_owned()));
    }
    if want.list {
        out.insert("rows".to_owned(), Value::Array(plain));
    }
    if want.by_id.is_some() {
        out.insert("rows_by_id".to_owned(), Value::Array(rows_by_id));
    }
    if want.by_title.is_some() {
        out.insert("rows_by_title".to_owned(), Value::Array(rows_by_title));
    }
    Value::Object(out)
}
