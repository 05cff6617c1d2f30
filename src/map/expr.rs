//! CEL expressions in mappings: compiled and checked once at load (syntax, unknown functions,
//! arity, unknown variables, unknown tables), evaluated many times.
//!
//! An expression that is only a variable or a field of one (`line.account`) never goes through
//! the CEL interpreter: it is read directly, which keeps the common leaves cheap. JSON values
//! enter CEL through [`from_json`] (numbers that are not integers become decimal strings, so
//! no binary float is ever created from input) and leave through [`to_json`] (a CEL double
//! is refused: documents carry money as exact strings).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr, LiteralValue};
use cel::objects::{Key, KeyRef, Map as CelMap};
use cel::{ExecutionError, Program, Value};

use super::funcs::{self, CEL_STANDARD, FUNCTIONS};
use crate::catalog::Diagnostic;

/// Where an expression's text starts in the mapping file.
#[derive(Debug, Clone, Copy)]
pub struct SrcPos<'a> {
    /// The mapping file.
    pub file: &'a Path,
    /// 1-based line of the expression's first character.
    pub line: usize,
    /// 1-based column of the expression's first character.
    pub col: usize,
}

impl SrcPos<'_> {
    /// The file position of (1-based) `line`, `col` inside the expression.
    pub fn within(&self, line: usize, col: usize) -> (usize, usize) {
        if line <= 1 {
            (self.line, self.col + col.saturating_sub(1))
        } else {
            (self.line + line - 1, col)
        }
    }

    /// A diagnostic at (1-based) `line`, `col` inside the expression.
    pub fn diag(&self, line: usize, col: usize, message: String) -> Diagnostic {
        let (line, col) = self.within(line, col);
        Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            message,
        }
    }

    /// `file:line:col` of the expression.
    pub fn label(&self) -> String {
        format!("{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// A compiled expression.
#[derive(Debug)]
pub struct Expr {
    /// The source text, for messages.
    pub src: String,
    /// `file:line:col`, for refusals.
    pub at: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Variables, fields, literals and calls of our functions over those: evaluated directly.
    Direct(Direct),
    /// Anything else: the CEL interpreter.
    Cel(Program),
}

/// The part of CEL evaluated without the interpreter (same results, no conversions).
#[derive(Debug)]
enum Direct {
    /// `name` or `name.field.field`.
    Var(Vec<String>),
    /// A string, int, bool or null literal.
    Lit(Value),
    /// One of our functions over direct arguments.
    Call(&'static str, Vec<Direct>),
}

fn direct(e: &IdedExpr) -> Option<Direct> {
    match &e.expr {
        Ast::Ident(name) => Some(Direct::Var(vec![name.clone()])),
        Ast::Select(s) if !s.test => match direct(&s.operand)? {
            Direct::Var(mut parts) => {
                parts.push(s.field.clone());
                Some(Direct::Var(parts))
            }
            _ => None,
        },
        Ast::Literal(LiteralValue::String(t)) => {
            Some(Direct::Lit(Value::String(Arc::new(t.inner().to_owned()))))
        }
        Ast::Literal(LiteralValue::Int(i)) => Some(Direct::Lit(Value::Int(*i.inner()))),
        Ast::Literal(LiteralValue::Boolean(b)) => Some(Direct::Lit(Value::Bool(*b.inner()))),
        Ast::Literal(LiteralValue::Null) => Some(Direct::Lit(Value::Null)),
        Ast::Call(c) if c.target.is_none() => {
            let spec = funcs::spec(&c.func_name)?;
            let args = c.args.iter().map(direct).collect::<Option<Vec<_>>>()?;
            Some(Direct::Call(spec.name, args))
        }
        _ => None,
    }
}

impl Direct {
    fn vars(&self, out: &mut Vec<String>) {
        match self {
            Direct::Var(parts) => out.push(parts[0].clone()),
            Direct::Lit(_) => {}
            Direct::Call(_, args) => args.iter().for_each(|a| a.vars(out)),
        }
    }

    fn eval(&self, vars: &Vars, sh: &funcs::Shared) -> Result<Value, ExecutionError> {
        match self {
            Direct::Var(parts) => {
                let Some((_, v)) = vars.iter().rev().find(|(n, _)| **n == *parts[0]) else {
                    return Err(ExecutionError::undeclared_reference(&parts[0]));
                };
                let mut cur = v;
                for p in &parts[1..] {
                    cur = match cur {
                        Value::Map(m) => m
                            .get(&KeyRef::String(p.as_str()))
                            .ok_or_else(|| ExecutionError::no_such_key(p))?,
                        _ => return Err(ExecutionError::no_such_key(p)),
                    };
                }
                Ok(cur.clone())
            }
            Direct::Lit(v) => Ok(v.clone()),
            Direct::Call(name, args) => {
                let args = args
                    .iter()
                    .map(|a| a.eval(vars, sh))
                    .collect::<Result<Vec<_>, _>>()?;
                funcs::call(sh, name, &args)
            }
        }
    }
}

/// What names an expression may use.
pub struct Names<'a> {
    /// Variables in scope (bindings, loop variables, `input`).
    pub vars: &'a [String],
    /// Declared code tables.
    pub tables: &'a HashSet<String>,
}

/// The closest of `candidates` to `name` by edit distance, if any is close.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let dist = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    };
    candidates
        .map(|c| (dist(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.chars().count() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Compiles and checks `src`. Every problem is pushed to `diags`; `None` if there was one.
pub fn compile(
    src: &str,
    pos: SrcPos<'_>,
    names: &Names<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Expr> {
    let before = diags.len();
    let program = match Program::compile(src) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors.errors {
                let line = usize::try_from(e.pos.0).unwrap_or(1).max(1);
                let col = usize::try_from(e.pos.1).unwrap_or(1).max(1);
                diags.push(pos.diag(line, col, format!("expression syntax: {}; hint: expressions are CEL, e.g. dec_add(a, b) or x == 'y' ? 1 : 2", e.msg)));
            }
            return None;
        }
    };
    Checker {
        p: &program,
        src,
        pos,
        names,
        bound: Vec::new(),
        diags: &mut *diags,
    }
    .check(program.expression());
    if diags.len() > before {
        return None;
    }
    let kind = match direct(program.expression()) {
        Some(d) => Kind::Direct(d),
        None => Kind::Cel(program),
    };
    Some(Expr {
        src: src.to_owned(),
        at: pos.label(),
        kind,
    })
}

fn offset_to_line_col(src: &str, offset: usize) -> (usize, usize) {
    let before: String = src.chars().take(offset).collect();
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Checks the names and calls of one compiled expression, collecting what is wrong.
struct Checker<'a> {
    p: &'a Program,
    src: &'a str,
    pos: SrcPos<'a>,
    names: &'a Names<'a>,
    /// Comprehension variables in scope.
    bound: Vec<String>,
    diags: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn check(&mut self, e: &IdedExpr) {
        let (p, src, pos, names) = (self.p, self.src, self.pos, self.names);
        let offset = |id: u64| {
            p.source_info()
                .offset_for(id)
                .map_or(0, |(s, _)| s as usize)
        };
        let here = |id: u64| offset_to_line_col(src, offset(id));
        match &e.expr {
            Ast::Call(call) => {
                let name = call.func_name.as_str();
                let is_ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
                if is_ident {
                    let argc = call.args.len() + usize::from(call.target.is_some());
                    // CEL places a call at its `(`; point at the function's name instead.
                    let paren = offset(e.id);
                    let n = name.chars().count();
                    let named = paren >= n && src.chars().skip(paren - n).take(n).eq(name.chars());
                    let (l, c) = offset_to_line_col(src, if named { paren - n } else { paren });
                    if let Some(spec) = funcs::spec(name) {
                        if argc < spec.min || argc > spec.max {
                            self.diags.push(pos.diag(
                                l,
                                c,
                                format!(
                                    "`{name}` takes {} argument(s), {argc} given; usage: {}",
                                    arity(spec.min, spec.max),
                                    spec.sig
                                ),
                            ));
                        }
                        if name == "lookup"
                            && let Some(IdedExpr {
                                expr: Ast::Literal(LiteralValue::String(t)),
                                id,
                            }) = call.args.first()
                        {
                            {
                                let t = t.inner().to_string();
                                let (l, c) = here(*id);
                                if !names.tables.contains(&t) {
                                    let hint = closest(&t, names.tables.iter().map(String::as_str))
                                        .map(|c| format!(" did you mean `{c}`?"))
                                        .unwrap_or_default();
                                    self.diags.push(pos.diag(l, c, format!("unknown table `{t}`; declare it under [tables.{t}] with a file.{hint}")));
                                }
                            }
                        }
                    } else if !CEL_STANDARD.contains(&name) {
                        let all = FUNCTIONS
                            .iter()
                            .map(|s| s.name)
                            .chain(CEL_STANDARD.iter().copied());
                        let hint = closest(name, all)
                            .map(|c| format!("did you mean `{c}`? "))
                            .unwrap_or_default();
                        self.diags.push(pos.diag(l, c, format!("unknown function `{name}`; {hint}see docs/mappings.md for the functions a mapping may call")));
                    }
                }
                if let Some(t) = &call.target {
                    self.check(t);
                }
                for a in &call.args {
                    self.check(a);
                }
            }
            Ast::Comprehension(c) => {
                self.check(&c.iter_range);
                let n = self.bound.len();
                self.bound.push(c.iter_var.clone());
                self.bound.extend(c.iter_var2.clone());
                self.bound.push(c.accu_var.clone());
                for x in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    self.check(x);
                }
                self.bound.truncate(n);
            }
            Ast::Ident(name) => {
                if !names.vars.iter().any(|v| v == name) && !self.bound.iter().any(|v| v == name) {
                    let (l, c) = here(e.id);
                    let hint = closest(name, names.vars.iter().map(String::as_str))
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default();
                    self.diags.push(pos.diag(
                        l,
                        c,
                        format!(
                            "unknown name `{name}`; {hint}names in scope: {}",
                            names.vars.join(", ")
                        ),
                    ));
                }
            }
            Ast::List(l) => l.elements.iter().for_each(|x| self.check(x)),
            Ast::Map(m) => m.entries.iter().for_each(|x| self.entry(&x.expr)),
            Ast::Struct(s) => s.entries.iter().for_each(|x| self.entry(&x.expr)),
            Ast::Select(s) => self.check(&s.operand),
            Ast::Literal(_) | Ast::Unspecified => {}
        }
    }

    fn entry(&mut self, e: &EntryExpr) {
        match e {
            EntryExpr::MapEntry(m) => {
                self.check(&m.key);
                self.check(&m.value);
            }
            EntryExpr::StructField(f) => self.check(&f.value),
        }
    }
}

fn arity(min: usize, max: usize) -> String {
    match (min, max) {
        (a, b) if a == b => a.to_string(),
        (a, usize::MAX) => format!("{a} or more"),
        (a, b) => format!("{a} to {b}"),
    }
}

/// Variables visible to an expression at run time: names and values, innermost last.
pub type Vars = Vec<(Arc<str>, Value)>;

impl Expr {
    /// The variables this expression reads through the interpreter (empty for direct ones).
    pub fn cel_vars(&self) -> Vec<String> {
        match &self.kind {
            Kind::Direct(_) => Vec::new(),
            Kind::Cel(p) => p
                .references()
                .variables()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The variables a directly evaluated expression reads (empty for interpreted ones).
    pub fn direct_vars(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Kind::Direct(d) = &self.kind {
            d.vars(&mut out);
        }
        out
    }

    /// Evaluates the expression.
    ///
    /// # Errors
    ///
    /// The interpreter's error, or a function's refusal (see [`funcs::decode`]).
    pub fn eval(
        &self,
        vars: &Vars,
        ctx: &cel::Context<'_, 'static>,
        sh: &funcs::Shared,
    ) -> Result<Value, ExecutionError> {
        match &self.kind {
            Kind::Direct(d) => d.eval(vars, sh),
            Kind::Cel(p) => p.execute(ctx),
        }
    }
}

/// Converts JSON into a CEL value. Integers stay integers; any other number becomes its exact
/// decimal text (a string), so no binary float enters from input.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::String(Arc::new(n.to_string()))),
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(from_json).collect())),
        serde_json::Value::Object(o) => {
            let m: HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), from_json(v)))
                .collect();
            Value::Map(CelMap { map: Arc::new(m) })
        }
    }
}

/// Converts a CEL result into JSON. Doubles, bytes and functions are refused with the type
/// named; map keys become strings.
pub fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::UInt(u) => serde_json::Value::from(*u),
        Value::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let k = match k {
                    Key::String(s) => s.as_str().to_owned(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(k, to_json(v)?);
            }
            serde_json::Value::Object(out)
        }
        Value::Float(_) => return Err("a double (binary float) would be written; documents carry numbers as exact strings: use dec(), money() or fixed()".into()),
        other => return Err(format!("a {} cannot be written to a document", funcs::type_name(other))),
    })
}
