//! Trying mappings on samples: preparing an input file (a raw `oa/getapprovaldetail` response,
//! a normalised instance, or a contact/customer record) and running the test cases kept beside
//! a mapping in `<name>.cases/`.
//!
//! A case is `<case>.json` (the input) with either `<case>.expected.json` (the document) or
//! `<case>.refused` (the expected refusal code on its first line). Used by
//! `wecom-bridge mapping test` and by the test suite; reads files, so it is not part of the
//! pure engine.

use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use serde_json::Value;

use super::{CompiledMapping, run};
use crate::wecom::approval::ApprovalInstance;

/// Turns a sample into the mapping input: a raw `getapprovaldetail` response (or its `info`)
/// is normalised in `tz`; anything else is taken as already normalised.
///
/// # Errors
///
/// The normalisation error, or a WeCom error response, as text.
pub fn prepare_input(raw: &Value, tz: &TimeZone) -> Result<Value, String> {
    Ok(match sample_instance(raw, tz)? {
        Some(instance) => instance.to_document(),
        None => raw.clone(),
    })
}

/// The normalised approval of a sample that is a raw `getapprovaldetail` response (or its
/// `info`); `None` for any other sample (taken as already normalised by [`prepare_input`]).
///
/// # Errors
///
/// The normalisation error, or a WeCom error response, as text.
pub fn sample_instance(raw: &Value, tz: &TimeZone) -> Result<Option<ApprovalInstance>, String> {
    let info = match raw.get("info") {
        Some(info) if raw.get("errcode").is_some() || info.get("apply_data").is_some() => {
            if let Some(code) = raw
                .get("errcode")
                .and_then(Value::as_i64)
                .filter(|c| *c != 0)
            {
                return Err(format!(
                    "the sample is a WeCom error response (errcode {code})"
                ));
            }
            info
        }
        _ if raw.get("apply_data").is_some() && raw.get("sp_no").is_some() => raw,
        _ => return Ok(None),
    };
    crate::wecom::approval::normalise(info, tz)
        .map(Some)
        .map_err(|e| format!("cannot normalise the approval detail: {e}"))
}

/// Reads and prepares an input file.
///
/// # Errors
///
/// Unreadable file, invalid JSON, or a failed normalisation, as text naming the file.
pub fn read_input(path: &Path, tz: &TimeZone) -> Result<Value, String> {
    let raw = read_json(path)?;
    prepare_input(&raw, tz).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads an input file as `m` reads it in the deliver stage: an approval with only the parts
/// the mapping reads ([`CompiledMapping::approval_input`]), anything else as it is.
///
/// # Errors
///
/// As [`read_input`].
pub fn read_input_for(m: &CompiledMapping, path: &Path, tz: &TimeZone) -> Result<Value, String> {
    let raw = read_json(path)?;
    match sample_instance(&raw, tz).map_err(|e| format!("{}: {e}", path.display()))? {
        Some(instance) => Ok(m.approval_input(&instance)),
        None => Ok(raw),
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// One case's outcome.
#[derive(Debug)]
pub struct CaseResult {
    /// The input file.
    pub input: PathBuf,
    /// `None` when the case passed, else what differs.
    pub failure: Option<String>,
}

/// The `<name>.cases/` folder of a mapping file.
pub fn cases_dir(mapping_file: &Path) -> PathBuf {
    let stem = mapping_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    mapping_file.with_file_name(format!("{stem}.cases"))
}

/// The input files of a folder of cases or samples (`*.json` except `*.expected.json`), sorted.
///
/// # Errors
///
/// The folder cannot be read.
pub fn inputs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.ends_with(".json") && !n.ends_with(".expected.json")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Runs every case of `dir` against `m`, on the input as the deliver stage builds it
/// ([`read_input_for`]).
///
/// # Errors
///
/// The folder cannot be read.
pub fn run_cases(
    m: &CompiledMapping,
    dir: &Path,
    tz: &TimeZone,
) -> std::io::Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for input in inputs(dir)? {
        let base = input.with_extension("");
        let expected_doc = base.with_extension("expected.json");
        let expected_refusal = base.with_extension("refused");
        let failure = match read_input_for(m, &input, tz) {
            Err(e) => Some(e),
            Ok(value) => {
                let actual = run(m, &value);
                if expected_refusal.exists() {
                    let want = std::fs::read_to_string(&expected_refusal)?
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned();
                    match actual {
                        Err(r) if r.code == want => None,
                        Err(r) => Some(format!(
                            "expected refusal `{want}`, got refusal `{}: {}`",
                            r.code, r.message
                        )),
                        Ok(doc) => Some(format!(
                            "expected refusal `{want}`, got a document:\n{}",
                            pretty(&doc)
                        )),
                    }
                } else if expected_doc.exists() {
                    let text = std::fs::read_to_string(&expected_doc)?;
                    match serde_json::from_str::<Value>(&text) {
                        Err(e) => Some(format!("{}: not JSON: {e}", expected_doc.display())),
                        Ok(want) => match actual {
                            Ok(doc) if doc == want => None,
                            Ok(doc) => Some(diff(&want, &doc)),
                            Err(r) => Some(format!(
                                "expected a document, got refusal `{}: {}`",
                                r.code, r.message
                            )),
                        },
                    }
                } else {
                    Some(format!(
                        "no {} or {} beside the input",
                        expected_doc.display(),
                        expected_refusal.display()
                    ))
                }
            }
        };
        out.push(CaseResult { input, failure });
    }
    Ok(out)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A readable difference: one line per JSON path whose value differs.
pub fn diff(expected: &Value, actual: &Value) -> String {
    let mut lines = Vec::new();
    walk(expected, actual, "$", &mut lines);
    format!("document differs:\n{}", lines.join("\n"))
}

fn walk(e: &Value, a: &Value, at: &str, out: &mut Vec<String>) {
    match (e, a) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => walk(v, w, &format!("{at}.{k}"), out),
                    None => out.push(format!("  {at}.{k}: expected {v}, missing")),
                }
            }
            for (k, w) in y {
                if !x.contains_key(k) {
                    out.push(format!("  {at}.{k}: not expected, got {w}"));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                match (x.get(i), y.get(i)) {
                    (Some(v), Some(w)) => walk(v, w, &format!("{at}[{i}]"), out),
                    (Some(v), None) => out.push(format!("  {at}[{i}]: expected {v}, missing")),
                    (None, Some(w)) => out.push(format!("  {at}[{i}]: not expected, got {w}")),
                    (None, None) => {}
                }
            }
        }
        _ if e != a => out.push(format!("  {at}: expected {e}, got {a}")),
        _ => {}
    }
}
