//! [`ApprovalInstance::to_document`]: the JSON document mappings read, with the form keyed by
//! control id and by title.

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
        let (controls, by_id, by_title) = controls_document(&form.controls);
        let mut form_doc = Map::new();
        form_doc.insert("controls".to_owned(), Value::Array(controls));

        let mut doc = Map::new();
        doc.insert("sp_no".to_owned(), json_of(sp_no));
        doc.insert("sp_name".to_owned(), json_of(sp_name));
        doc.insert("template_id".to_owned(), json_of(template_id));
        doc.insert("status".to_owned(), json_of(status));
        doc.insert("status_name".to_owned(), json_of(status_name));
        doc.insert("applicant".to_owned(), json_of(applicant));
        doc.insert("apply_time".to_owned(), json_of(apply_time));
        doc.insert("apply_timestamp".to_owned(), json_of(apply_timestamp));
        doc.insert("approval_nodes".to_owned(), json_of(approval_nodes));
        doc.insert("comments".to_owned(), json_of(comments));
        doc.insert("notifyers".to_owned(), json_of(notifyers));
        doc.insert("form".to_owned(), Value::Object(form_doc));
        doc.insert("form_by_id".to_owned(), Value::Object(by_id));
        doc.insert("form_by_title".to_owned(), Value::Object(by_title));
        Value::Object(doc)
    }
}

/// Serialises one of this module's types. They only have string keys and infallible
/// `Serialize` impls, so the `Null` fallback is unreachable; it exists to avoid a panic path.
fn json_of<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `(controls as a list, values by id, values by title)`; each value is built once.
fn controls_document(
    controls: &[FormControl],
) -> (Vec<Value>, Map<String, Value>, Map<String, Value>) {
    let mut list = Vec::with_capacity(controls.len());
    let mut by_id = Map::new();
    let mut by_title = Map::new();
    for control in controls {
        let value = value_document(&control.value);
        if !control.id.is_empty() && !by_id.contains_key(&control.id) {
            by_id.insert(control.id.clone(), value.clone());
        }
        if !control.title.is_empty() && !by_title.contains_key(&control.title) {
            by_title.insert(control.title.clone(), value.clone());
        }
        let mut out = Map::new();
        out.insert("id".to_owned(), Value::String(control.id.clone()));
        out.insert("title".to_owned(), Value::String(control.title.clone()));
        out.insert("control".to_owned(), Value::String(control.control.clone()));
        out.insert("hidden".to_owned(), Value::Bool(control.hidden));
        out.insert("value".to_owned(), value);
        list.push(Value::Object(out));
    }
    (list, by_id, by_title)
}

fn value_document(value: &FormValue) -> Value {
    let FormValue::Table { rows } = value else {
        return json_of(value);
    };
    let mut plain = Vec::with_capacity(rows.len());
    let mut rows_by_id = Vec::with_capacity(rows.len());
    let mut rows_by_title = Vec::with_capacity(rows.len());
    for row in rows {
        let (cells, by_id, by_title) = controls_document(row);
        plain.push(Value::Array(cells));
        rows_by_id.push(Value::Object(by_id));
        rows_by_title.push(Value::Object(by_title));
    }
    let mut out = Map::new();
    out.insert("type".to_owned(), Value::String("table".to_owned()));
    out.insert("rows".to_owned(), Value::Array(plain));
    out.insert("rows_by_id".to_owned(), Value::Array(rows_by_id));
    out.insert("rows_by_title".to_owned(), Value::Array(rows_by_title));
    Value::Object(out)
}
