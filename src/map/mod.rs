//! Map: turns a normalised input (an approval instance, a contact or customer record) into the
//! target's document, as a mapping file (`mappings/*.toml`, `[document]` and friends) says.
//!
//! This module owns the mapping language (see `docs/mappings.md`): compiling a mapping once
//! at load with every problem reported as `file:line:col` ([`compile`]), and running it as a
//! pure function ([`run`]): no I/O, no clock, no environment, deterministic, bounded. Money is
//! exact decimal end to end. A run either yields the whole document or a [`Refusal`] with a
//! named code; never a partial document.
//!
//! It must NOT deliver, retry, or decide routes (beyond evaluating a `[match]` condition when
//! asked), and it must not read files after [`compile`] (code tables are loaded there).

pub mod cases;
mod eval;
pub mod expr;
pub mod funcs;
pub mod input;
mod parts;
pub mod shape;
pub mod spec;
pub mod tables;
mod time;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::tz::TimeZone;
use serde_json::Value;
use toml_edit::Item;

use crate::catalog::{Diagnostic, EventFamily};
use expr::Expr;
use spec::{Compiler, Leaf, Node};
use tables::{Miss, TableDecl, Tables};

/// Inputs nested deeper than this are refused (`input_too_deep`).
pub const MAX_INPUT_DEPTH: usize = 64;
/// Inputs with more JSON values than this are refused (`input_too_large`).
pub const MAX_INPUT_NODES: usize = 200_000;

/// Why a valid mapping produced no document for this input. Permanent: the same input and
/// mapping always refuse the same way, so the job is parked with this reason, not retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// A stable, named code (`total_mismatch`, `unknown_category`, `missing_field`, …).
    pub code: String,
    /// What is wrong, naming the field/control and the mapping position; never a secret.
    pub message: String,
    /// The document field (or `let.<name>`, `key`, `assert[i]`) being computed.
    pub field: Option<String>,
}

/// What [`compile`] needs to know about a mapping file.
#[derive(Debug, Clone, Copy)]
pub struct MappingSource<'a> {
    /// The mapping's name (for default keys and messages).
    pub name: &'a str,
    /// The file (for diagnostics).
    pub file: &'a Path,
    /// Its text.
    pub text: &'a str,
    /// Which input it reads (decides the input shape paths are checked against).
    pub event: EventFamily,
    /// Folder that table files are relative to (the mappings folder).
    pub base_dir: &'a Path,
    /// The corp's time zone: the default for date functions.
    pub zone: &'a TimeZone,
}

/// One `[[assert]]`.
#[derive(Debug)]
struct Assert {
    check: Expr,
    code: String,
    message: Leaf,
}

/// A mapping, compiled once and run many times. Cheap to share (`Arc`), `Send + Sync`.
pub struct CompiledMapping {
    name: String,
    file: PathBuf,
    root: cel::Context<'static, 'static>,
    shared: Arc<funcs::Shared>,
    key: Leaf,
    condition: Option<Expr>,
    lets: Vec<(Arc<str>, Node)>,
    document: Option<Node>,
    asserts: Vec<Assert>,
    cel_vars: HashSet<String>,
    /// Some direct read (`input.x`) needs the whole input as a value.
    lets_read_input: bool,
    /// Some assert reads the built document (`doc`).
    asserts_read_doc: bool,
    /// Where `[match]` is, for catalog-level diagnostics.
    match_pos: (usize, usize),
    /// `[writeback]`: the notifications to send when a job is delivered or parked.
    writeback: Option<Arc<crate::writeback::spec::WritebackSpec>>,
    /// The parts of an approval document the mapping can read (`parts.rs`).
    input_parts: crate::wecom::approval::DocumentParts,
}

impl std::fmt::Debug for CompiledMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledMapping")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("lets", &self.lets.len())
            .field("asserts", &self.asserts.len())
            .field("condition", &self.condition.as_ref().map(|c| &c.src))
            .finish_non_exhaustive()
    }
}

impl PartialEq for CompiledMapping {
    /// Two compiled mappings are equal when they come from the same file under the same name.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.file == other.file
    }
}

fn input_shape(event: EventFamily) -> shape::Shape {
    match event {
        EventFamily::Approval => shape::approval(),
        EventFamily::Contact | EventFamily::ExternalContact => shape::Shape::Any,
    }
}

/// Keys a mapping file may have at its top level.
const TOP_KEYS: &[&str] = &[
    "name",
    "connector",
    "match",
    "key",
    "tables",
    "let",
    "document",
    "assert",
    "cases",
    "writeback",
];

/// Compiles a mapping file: parses, checks and indexes everything (paths, expressions, code
/// tables) so that [`run`] does no parsing and no I/O.
///
/// # Errors
///
/// Every problem at once, each with `file:line:col` and a hint.
pub fn compile(src: &MappingSource<'_>) -> Result<CompiledMapping, Vec<Diagnostic>> {
    let doc = toml_edit::ImDocument::parse(src.text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((0, 0), |s| spec::position(src.text, s.start));
        vec![Diagnostic {
            file: src.file.to_path_buf(),
            line,
            col,
            message: e.message().trim().to_owned(),
        }]
    })?;
    let top = doc.as_table();
    let mut c = Compiler {
        file: src.file,
        text: src.text,
        diags: Vec::new(),
        tables: HashSet::new(),
        shape: input_shape(src.event),
        scope: vec!["input".to_owned()],
        item_shapes: Vec::new(),
        cel_vars: HashSet::new(),
        var_roots: HashSet::new(),
    };
    for (k, item) in top.iter() {
        if !TOP_KEYS.contains(&k) {
            c.at(
                item.span(),
                format!("unknown key `{k}`; a mapping has {}", TOP_KEYS.join(", ")),
            );
        }
    }

    let tables = compile_tables(&mut c, top.get("tables"), src.base_dir);

    let lets = compile_lets(&mut c, top.get("let"));

    let key = match top.get("key") {
        Some(k) => match k.as_str() {
            Some(s) => c.leaf_str(s, k.span()),
            None => {
                c.at(k.span(), "`key` is a string: a template such as \"expense:${sp_no}\", a path or an expression".into());
                None
            }
        },
        None => Some(default_key(src)),
    };

    let condition = top
        .get("match")
        .and_then(|m| m.get("condition"))
        .and_then(|cond| match cond.as_str() {
            Some(s) => {
                let skip = usize::from(s.starts_with('='));
                c.expr(&s[skip..], cond.span(), skip)
            }
            None => {
                c.at(
                    cond.span(),
                    "`condition` is a CEL expression in a string".into(),
                );
                None
            }
        });

    let document = top.get("document").and_then(|d| {
        if d.as_table_like().is_none() {
            c.at(
                d.span(),
                "`document` is a table: the skeleton of the target's document".into(),
            );
            return None;
        }
        c.node(d)
    });

    let writeback = top.get("writeback").and_then(|w| {
        let fields: Vec<String> = top
            .get("document")
            .and_then(Item::as_table_like)
            .map(|t| t.iter().map(|(k, _)| k.to_owned()).collect())
            .unwrap_or_default();
        crate::writeback::spec::compile(&mut c, w, src.event == EventFamily::Approval, &fields)
    });

    c.scope.push("doc".to_owned());
    let asserts = compile_asserts(&mut c, top.get("assert"));

    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    let shared = Arc::new(funcs::Shared {
        tables,
        zone: src.zone.clone(),
    });
    let mut root = cel::Context::default();
    funcs::register(&mut root, &shared).map_err(|e| {
        vec![Diagnostic {
            file: src.file.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("internal: {e}"),
        }]
    })?;
    let mut m = CompiledMapping {
        name: src.name.to_owned(),
        file: src.file.to_path_buf(),
        root,
        shared,
        key: key.unwrap_or(Leaf::Const(Value::Null)),
        condition,
        lets,
        document,
        asserts,
        writeback: writeback.map(Arc::new),
        match_pos: top
            .get("match")
            .and_then(Item::span)
            .map_or((0, 0), |s| spec::position(src.text, s.start)),
        lets_read_input: c.var_roots.contains("input"),
        asserts_read_doc: c.var_roots.contains("doc") || c.cel_vars.contains("doc"),
        cel_vars: c.cel_vars,
        input_parts: crate::wecom::approval::DocumentParts::All,
    };
    m.input_parts = parts::input_parts(&m);
    Ok(m)
}

fn default_key(src: &MappingSource<'_>) -> Leaf {
    let field = match src.event {
        EventFamily::Approval => "sp_no",
        EventFamily::Contact => "user_id",
        EventFamily::ExternalContact => "external_user_id",
    };
    let text = format!("$.{field}");
    match serde_json_path::JsonPath::parse(&text) {
        Ok(path) => Leaf::Template(vec![
            spec::Piece::Lit(format!("{}:", src.name)),
            spec::Piece::Path(spec::PathLeaf::new(path, &text, false, true)),
        ]),
        Err(_) => Leaf::Const(Value::Null),
    }
}

/// A compiled binding waiting for the bindings it reads: name, node, reads, position.
type PendingLet = (
    Arc<str>,
    Node,
    HashSet<String>,
    Option<std::ops::Range<usize>>,
);

/// Compiles `[let]`: every binding sees every other; they run in dependency order, and a
/// cycle is an error.
fn compile_lets(c: &mut Compiler<'_>, item: Option<&Item>) -> Vec<(Arc<str>, Node)> {
    let Some(l) = item else { return Vec::new() };
    let Some(t) = l.as_table_like() else {
        c.at(l.span(), "`let` is a table of named values".into());
        return Vec::new();
    };
    let names: Vec<String> = t.iter().map(|(k, _)| k.to_owned()).collect();
    c.scope.extend(names.iter().cloned());
    let mut pending: Vec<PendingLet> = Vec::new();
    for (name, item) in t.iter() {
        if let Some(n) = c.node(item) {
            let mut refs = HashSet::new();
            spec::refs(&n, &mut refs);
            refs.retain(|r| names.contains(r) && r != name);
            pending.push((Arc::from(name), n, refs, item.span()));
        }
    }
    let mut done: Vec<(Arc<str>, Node)> = Vec::new();
    let mut defined: HashSet<String> = HashSet::new();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|(_, _, refs, _)| refs.iter().all(|r| defined.contains(r)));
        match ready {
            Some(i) => {
                let (name, node, _, _) = pending.remove(i);
                defined.insert(name.to_string());
                done.push((name, node));
            }
            None => {
                let cycle: Vec<String> = pending.iter().map(|(n, ..)| n.to_string()).collect();
                let span = pending[0].3.clone();
                c.at(span, format!("the bindings {} depend on each other in a cycle (or on a binding with an error)", cycle.join(", ")));
                break;
            }
        }
    }
    done
}

fn compile_tables(c: &mut Compiler<'_>, item: Option<&Item>, base: &Path) -> Tables {
    let mut out = Tables::default();
    let Some(item) = item else { return out };
    let Some(t) = item.as_table_like() else {
        c.at(
            item.span(),
            "`tables` is a table of code tables: [tables.<name>] file = \"tables/x.csv\"".into(),
        );
        return out;
    };
    for (name, decl) in t.iter() {
        c.tables.insert(name.to_owned());
        let span = decl.span();
        let get = |k: &str| decl.get(k).and_then(Item::as_str).map(str::to_owned);
        let Some(file) = get("file") else {
            c.at(
                span,
                format!("table `{name}` needs `file = \"tables/<file>.csv\"` (or .toml)"),
            );
            continue;
        };
        let miss = match get("on_miss").as_deref() {
            None | Some("refuse") => {
                Miss::Refuse(get("code").unwrap_or_else(|| format!("unknown_{name}")))
            }
            Some("default") => match get("default") {
                Some(d) => Miss::Default(d),
                None => {
                    c.at(
                        span,
                        format!("table `{name}`: on_miss = \"default\" needs `default = \"…\"`"),
                    );
                    continue;
                }
            },
            Some("pass") => Miss::Pass,
            Some(other) => {
                c.at(
                    decl.get("on_miss").and_then(Item::span),
                    format!(
                        "table `{name}`: on_miss `{other}` is not one of refuse, default, pass"
                    ),
                );
                continue;
            }
        };
        let decl_s = TableDecl {
            name: name.to_owned(),
            file,
            key: get("key"),
            value: get("value"),
            miss,
        };
        let (line, col) = span.map_or((0, 0), |s| spec::position(c.text, s.start));
        match tables::load(&decl_s, base, (c.file, line, col)) {
            Ok(t) => {
                out.0.insert(name.to_owned(), t);
            }
            Err(d) => c.diags.extend(d),
        }
    }
    out
}

fn compile_asserts(c: &mut Compiler<'_>, item: Option<&Item>) -> Vec<Assert> {
    let mut out = Vec::new();
    let Some(item) = item else { return out };
    let Some(list) = item.as_array_of_tables() else {
        c.at(
            item.span(),
            "asserts are written [[assert]] with check, code and message".into(),
        );
        return out;
    };
    for t in list.iter() {
        let span = t.span();
        let check = match t.get("check") {
            Some(ch) => match ch.as_str() {
                Some(s) => {
                    let skip = usize::from(s.starts_with('='));
                    c.expr(&s[skip..], ch.span(), skip)
                }
                None => None,
            },
            None => {
                c.at(
                    span.clone(),
                    "an [[assert]] needs `check`, a CEL expression that must be true".into(),
                );
                None
            }
        };
        let code = t.get("code").and_then(Item::as_str).map(str::to_owned);
        if code.is_none() {
            c.at(
                span.clone(),
                "an [[assert]] needs `code`, the refusal code (e.g. total_mismatch)".into(),
            );
        }
        let message = match t.get("message") {
            Some(m) => m.as_str().and_then(|s| c.leaf_str(s, m.span())),
            None => Some(Leaf::Const(Value::String("assertion failed".into()))),
        };
        if let (Some(check), Some(code), Some(message)) = (check, code, message) {
            out.push(Assert {
                check,
                code,
                message,
            });
        }
    }
    out
}

/// Two approval mappings that feed the same connector for the same template and action,
/// neither with a condition, would send every such form twice: reported at load.
pub fn overlaps(mappings: &[crate::catalog::Mapping]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, b) in mappings.iter().enumerate() {
        for a in &mappings[..i] {
            if a.connector != b.connector
                || a.rule.event != EventFamily::Approval
                || b.rule.event != EventFamily::Approval
            {
                continue;
            }
            if a.compiled.condition.is_some() || b.compiled.condition.is_some() {
                continue;
            }
            let Some(action) = a.rule.actions.iter().find(|x| b.rule.actions.contains(x)) else {
                continue;
            };
            let template = a
                .rule
                .template_ids
                .iter()
                .find(|t| b.rule.template_ids.contains(t))
                .or_else(|| {
                    a.rule
                        .template_names
                        .iter()
                        .find(|t| b.rule.template_names.contains(t))
                });
            if let Some(t) = template {
                let (line, col) = b.compiled.match_pos;
                out.push(Diagnostic {
                    file: b.file.clone(),
                    line,
                    col,
                    message: format!(
                        "mapping `{}` and mapping `{}` ({}) both send template `{t}` on `{}` to connector `{}`; every such form would be sent twice. Merge them, or give one a [match] condition",
                        b.name, a.name, a.file.display(), action.as_str(), b.connector
                    ),
                });
            }
        }
    }
    out
}

impl CompiledMapping {
    /// `[writeback]`, when the mapping has one.
    pub fn writeback(&self) -> Option<&crate::writeback::spec::WritebackSpec> {
        self.writeback.as_deref()
    }

    /// The mapping's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The business (idempotency) key for this input, e.g. `expense:202506040001`: the target
    /// refuses a second document with the same key.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] (`missing_key` when the key comes out empty).
    pub fn business_key(&self, input: &Value) -> Result<String, Refusal> {
        let mut run = eval::Run::new(self, input)?;
        run.lets()?;
        run.key()
    }

    /// Whether the mapping has a `[match] condition` to decide per form.
    pub fn has_condition(&self) -> bool {
        self.condition.is_some()
    }

    /// Whether the `[match]` condition holds for this input (`true` without a condition).
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when the condition cannot be evaluated or is not a bool.
    pub fn condition(&self, input: &Value) -> Result<bool, Refusal> {
        let Some(cond) = &self.condition else {
            return Ok(true);
        };
        let mut run = eval::Run::new(self, input)?;
        run.lets()?;
        run.condition(cond)
    }

    /// Runs the mapping and also returns the business key (one evaluation of the bindings).
    ///
    /// # Errors
    ///
    /// As [`run`].
    pub fn run_with_key(&self, input: &Value) -> Result<(String, Value), Refusal> {
        let mut run = eval::Run::new(self, input)?;
        run.lets()?;
        let key = run.key()?;
        Ok((key, run.finish()?))
    }
}

/// Runs a compiled mapping on one input: the whole document, or a refusal. Pure.
///
/// # Errors
///
/// A [`Refusal`] naming the code, the field and the mapping position.
pub fn run(m: &CompiledMapping, input: &Value) -> Result<Value, Refusal> {
    let mut run = eval::Run::new(m, input)?;
    run.lets()?;
    run.finish()
}
