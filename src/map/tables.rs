//! Code tables: CSV or TOML files under the mappings folder that translate a form value (an
//! expense category, a department id) into the target's code (an account, a cost centre).
//!
//! Loaded, checked (every row, duplicate keys) and indexed once at load; looked up by
//! `lookup(table, key[, column])` at run time with the miss behaviour the mapping declared.
//! Reads files only at load; never at run time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cel::{ExecutionError, Value};

use super::funcs::refusal;
use crate::catalog::Diagnostic;

/// What a lookup does when the key is not in the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Miss {
    /// Refuse the document with this code.
    Refuse(String),
    /// Use this value.
    Default(String),
    /// Return the key itself.
    Pass,
}

/// One loaded code table.
#[derive(Debug)]
pub struct Table {
    /// Column names (the key column first).
    pub columns: Vec<String>,
    /// Column returned when `lookup` names none.
    pub value_column: usize,
    /// Rows by key: the cells, in `columns` order.
    pub rows: HashMap<String, Vec<Arc<String>>>,
    /// Miss behaviour.
    pub miss: Miss,
}

/// All tables of one mapping, by name.
#[derive(Debug, Default)]
pub struct Tables(pub HashMap<String, Table>);

/// A table declaration as written in the mapping file.
#[derive(Debug)]
pub struct TableDecl {
    /// Table name used in `lookup`.
    pub name: String,
    /// The file, relative to the mappings folder.
    pub file: String,
    /// Key column (CSV) — TOML tables are keyed by their keys.
    pub key: Option<String>,
    /// Value column returned by a two-argument `lookup`.
    pub value: Option<String>,
    /// Miss behaviour.
    pub miss: Miss,
}

fn d(file: &Path, line: usize, col: usize, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line,
        col,
        message,
    }
}

/// Loads and indexes one table. `at` is the declaration's position in the mapping file, used
/// when the file itself cannot be read.
pub fn load(
    decl: &TableDecl,
    base: &Path,
    at: (&Path, usize, usize),
) -> Result<Table, Vec<Diagnostic>> {
    let path: PathBuf = base.join(&decl.file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        vec![d(at.0, at.1, at.2, format!("table `{}`: cannot read {}: {e}; hint: paths are relative to the mappings folder ({})", decl.name, path.display(), base.display()))]
    })?;
    let (columns, raw_rows) = if decl.file.ends_with(".csv") {
        read_csv(&path, &text)?
    } else if decl.file.ends_with(".toml") {
        read_toml(&path, &text)?
    } else {
        return Err(vec![d(
            at.0,
            at.1,
            at.2,
            format!(
                "table `{}`: `{}` is neither .csv nor .toml",
                decl.name, decl.file
            ),
        )]);
    };
    let column = |name: &str| {
        columns.iter().position(|c| c == name).ok_or_else(|| {
            vec![d(
                at.0,
                at.1,
                at.2,
                format!(
                    "table `{}`: no column `{name}` in {} (columns: {})",
                    decl.name,
                    path.display(),
                    columns.join(", ")
                ),
            )]
        })
    };
    let key_col = decl.key.as_deref().map(column).transpose()?.unwrap_or(0);
    let value_column = match decl.value.as_deref() {
        Some(v) => column(v)?,
        None => usize::from(columns.len() > 1 && key_col == 0),
    };
    let mut rows = HashMap::with_capacity(raw_rows.len());
    let mut errors = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (line, cells) in raw_rows {
        let Some(k) = cells.get(key_col).cloned() else {
            errors.push(d(
                &path,
                line,
                1,
                format!(
                    "row has {} cells; the key column is number {}",
                    cells.len(),
                    key_col + 1
                ),
            ));
            continue;
        };
        if let Some(prev) = first_line.get(&k) {
            errors.push(d(
                &path,
                line,
                1,
                format!("duplicate key `{k}` (first on line {prev}); each key may appear once"),
            ));
            continue;
        }
        first_line.insert(k.clone(), line);
        rows.insert(k, cells.into_iter().map(Arc::new).collect());
    }
    if errors.is_empty() {
        Ok(Table {
            columns,
            value_column,
            rows,
            miss: decl.miss.clone(),
        })
    } else {
        Err(errors)
    }
}

type Rows = Vec<(usize, Vec<String>)>;

/// One TOML table entry: line, key, (column, cell) pairs.
type TomlEntry = (usize, String, Vec<(String, String)>);

fn read_csv(path: &Path, text: &str) -> Result<(Vec<String>, Rows), Vec<Diagnostic>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = r
        .headers()
        .map_err(|e| vec![d(path, 1, 1, format!("cannot read the header row: {e}"))])?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for rec in r.records() {
        match rec {
            Ok(rec) => {
                let line = rec
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                if rec.len() != columns.len() {
                    errors.push(d(
                        path,
                        line,
                        1,
                        format!(
                            "row has {} cells, the header has {}",
                            rec.len(),
                            columns.len()
                        ),
                    ));
                    continue;
                }
                rows.push((line, rec.iter().map(str::to_owned).collect()));
            }
            Err(e) => {
                let line = e
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                errors.push(d(path, line, 1, format!("unreadable row: {e}")));
            }
        }
    }
    if errors.is_empty() {
        Ok((columns, rows))
    } else {
        Err(errors)
    }
}

/// TOML tables: `key = "value"` or `key = { column = "...", ... }`, one entry per key.
fn read_toml(path: &Path, text: &str) -> Result<(Vec<String>, Rows), Vec<Diagnostic>> {
    let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((0, 0), |s| super::spec::position(text, s.start));
        vec![d(path, line, col, e.message().trim().to_owned())]
    })?;
    let mut columns = vec!["key".to_owned()];
    let mut entries: Vec<TomlEntry> = Vec::new();
    let mut errors = Vec::new();
    for (k, item) in doc.as_table().iter() {
        let line = item
            .span()
            .map_or(0, |s| super::spec::position(text, s.start).0);
        let mut cells = Vec::new();
        if let Some(v) = item.as_str() {
            cells.push(("value".to_owned(), v.to_owned()));
        } else if let Some(t) = item.as_table_like() {
            for (c, v) in t.iter() {
                match v.as_str() {
                    Some(v) => cells.push((c.to_owned(), v.to_owned())),
                    None => errors.push(d(
                        path,
                        line,
                        1,
                        format!("`{k}.{c}`: table cells are strings"),
                    )),
                }
            }
        } else {
            errors.push(d(
                path,
                line,
                1,
                format!("`{k}`: an entry is a string or a table of strings"),
            ));
        }
        for (c, _) in &cells {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
        entries.push((line, k.to_owned(), cells));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let rows = entries
        .into_iter()
        .map(|(line, k, cells)| {
            let mut row = vec![k];
            for c in &columns[1..] {
                row.push(
                    cells
                        .iter()
                        .find(|(n, _)| n == c)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                );
            }
            (line, row)
        })
        .collect();
    Ok((columns, rows))
}

impl Tables {
    /// Looks `key` up in `table`, returning `column` (or the table's value column).
    pub fn lookup(
        &self,
        table: &str,
        key: &str,
        column: Option<&str>,
    ) -> Result<Value, ExecutionError> {
        const F: &str = "lookup";
        let Some(t) = self.0.get(table) else {
            return Err(refusal(
                F,
                "unknown_table",
                format!("no table `{table}` is declared"),
            ));
        };
        let col = match column {
            Some(c) => t.columns.iter().position(|x| x == c).ok_or_else(|| {
                refusal(
                    F,
                    "unknown_column",
                    format!("table `{table}` has no column `{c}`"),
                )
            })?,
            None => t.value_column,
        };
        match t.rows.get(key) {
            Some(row) => Ok(row
                .get(col)
                .map_or(Value::Null, |v| Value::String(Arc::clone(v)))),
            None => match &t.miss {
                Miss::Refuse(code) => Err(refusal(
                    F,
                    code,
                    format!("`{key}` is not in table `{table}`; add it to the table file"),
                )),
                Miss::Default(v) => Ok(Value::String(Arc::new(v.clone()))),
                Miss::Pass => Ok(Value::String(Arc::new(key.to_owned()))),
            },
        }
    }
}
