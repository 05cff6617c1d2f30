//! Reading a mapping file into compiled nodes: every leaf classified (path, expression,
//! template, constant), every path parsed and checked against the input shape, every
//! expression compiled and checked, with `file:line:col` for each problem.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde_json_path::JsonPath;
use toml_edit::{Item, Value as TV};

use super::expr::{self, Expr, Names, SrcPos};
use super::shape::{self, Shape};
use crate::catalog::Diagnostic;

/// 1-based (line, column) of a byte offset.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|o| text.is_char_boundary(*o))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

/// A path into the input (`$…`) or into the current `for_each` item (`@…`).
#[derive(Debug)]
pub struct PathLeaf {
    /// The parsed path (`@` rewritten to `$`, queried on the item).
    pub path: JsonPath,
    /// Relative to the current item.
    pub relative: bool,
    /// Selects at most one node (no wildcard, filter, slice, union or `..`): the value is the
    /// node or `null`; otherwise the value is the list of nodes.
    pub singular: bool,
    /// The same path as plain steps when it is only member names and non-negative indexes
    /// (`$.form_by_title['金额'].amount`, `@.options[0].text`): read by walking the value,
    /// without building the node list a general query needs. `None` for any other path.
    pub steps: Option<Vec<Step>>,
    /// The member names the path starts with (see [`leading_steps`]; up to the first index):
    /// everything it can select lies below them.
    pub prefix: Vec<String>,
    /// The path is its member names then `[*]` or `.*`: it selects every member or element of
    /// one value (a `for_each` over table rows).
    pub each: bool,
}

/// One step of a plain path (see [`PathLeaf::steps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A member name: selects that member of an object, nothing on anything else.
    Name(String),
    /// A non-negative index: selects that element of an array, nothing on anything else.
    Index(usize),
}

impl PathLeaf {
    /// A path leaf for `path`, parsed from `text` (with `@` already rewritten to `$`).
    pub fn new(path: JsonPath, text: &str, relative: bool, singular: bool) -> PathLeaf {
        let (names, rest) = leading_steps(text);
        PathLeaf {
            path,
            relative,
            singular,
            steps: if singular { plain_steps(text) } else { None },
            prefix: names
                .iter()
                .map_while(|s| match s {
                    Step::Name(n) => Some(n.clone()),
                    Step::Index(_) => None,
                })
                .collect(),
            each: (rest == "[*]" || rest == ".*")
                && names.iter().all(|s| matches!(s, Step::Name(_))),
        }
    }

    /// The first node the path selects in `v` (the only one for a singular path).
    pub fn first<'v>(&self, v: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        match &self.steps {
            Some(steps) => steps.iter().try_fold(v, |cur, step| match step {
                Step::Name(n) => cur.as_object()?.get(n),
                Step::Index(i) => cur.as_array()?.get(*i),
            }),
            None => self.path.query(v).into_iter().next(),
        }
    }
}

/// `$` followed only by `.name`, `['name']` / `["name"]` (no escapes) and `[digits]`, as
/// steps; `None` for anything else (which then goes through the general query). The text has
/// already been accepted by [`JsonPath::parse`], so this only has to be conservative.
pub fn plain_steps(text: &str) -> Option<Vec<Step>> {
    let (steps, rest) = leading_steps(text);
    rest.is_empty().then_some(steps)
}

/// The plain steps (as in [`plain_steps`]) a path starts with, and the text after them:
/// `$.form_by_title['明细'].rows_by_title[*]` starts with `form_by_title`, `明细`,
/// `rows_by_title`, then `[*]`. Whatever the path selects lies below them.
pub fn leading_steps(text: &str) -> (Vec<Step>, &str) {
    let mut steps = Vec::new();
    let Some(mut rest) = text.strip_prefix('$') else {
        return (steps, text);
    };
    while let Some((step, r)) = plain_step(rest) {
        steps.push(step);
        rest = r;
    }
    (steps, rest)
}

/// The plain step `text` starts with and the text after it.
fn plain_step(text: &str) -> Option<(Step, &str)> {
    if let Some(r) = text.strip_prefix('.') {
        let end = r.find(['.', '[']).unwrap_or(r.len());
        let name = &r[..end];
        let mut chars = name.chars();
        let first = chars.next()?;
        let name_char = |c: char| c == '_' || c.is_ascii_alphanumeric() || !c.is_ascii();
        if first.is_ascii_digit() || !name_char(first) || !chars.all(name_char) {
            return None;
        }
        return Some((Step::Name(name.to_owned()), &r[end..]));
    }
    let r = text.strip_prefix('[')?;
    let (step, len) = match r.chars().next()? {
        q @ ('\'' | '"') => {
            let body = &r[1..];
            let close = body.find(q)?;
            let name = &body[..close];
            if name.contains('\\') {
                return None;
            }
            (Step::Name(name.to_owned()), 1 + close + 1)
        }
        c if c.is_ascii_digit() => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            let digits = &r[..end];
            if digits.len() > 1 && digits.starts_with('0') {
                return None;
            }
            (Step::Index(digits.parse().ok()?), end)
        }
        _ => return None,
    };
    Some((step, r[len..].strip_prefix(']')?))
}

/// One piece of a `${…}` template.
#[derive(Debug)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// An expression, rendered as text (`null` → empty).
    Expr(Expr),
    /// A path (`${$.sp_no}`), rendered as text (`null` → empty).
    Path(PathLeaf),
}

/// A leaf of the document skeleton.
#[derive(Debug)]
pub enum Leaf {
    /// A constant.
    Const(serde_json::Value),
    /// A path.
    Path(PathLeaf),
    /// A CEL expression (`=…`).
    Expr(Expr),
    /// A string template (`…${expr}…`).
    Template(Vec<Piece>),
}

/// A node of the document skeleton.
#[derive(Debug)]
pub enum Node {
    /// A leaf.
    Leaf(Leaf),
    /// An object: fields in file order.
    Object(Vec<(String, Node)>),
    /// A list; generator elements are spliced in.
    Array(Vec<Node>),
    /// `for_each`: one item per element of the source.
    Gen(Box<Gen>),
}

/// A `for_each` generator.
#[derive(Debug)]
pub struct Gen {
    /// What to iterate over (a path or an expression giving a list).
    pub source: Leaf,
    /// The loop variable's name (`as`, default `it`).
    pub var: Arc<str>,
    /// Whether any expression inside reads the loop variable (else it is not converted).
    pub var_used: bool,
    /// Keep only items for which this is true.
    pub when: Option<Expr>,
    /// The item skeleton.
    pub item: Node,
    /// Where the generator is, for messages.
    pub at: String,
}

/// Compiles the pieces of one mapping file, collecting diagnostics.
pub struct Compiler<'a> {
    /// The mapping file.
    pub file: &'a Path,
    /// Its text.
    pub text: &'a str,
    /// Every problem found so far.
    pub diags: Vec<Diagnostic>,
    /// Declared table names.
    pub tables: HashSet<String>,
    /// The input's shape.
    pub shape: Shape,
    /// Names in scope, innermost last.
    pub scope: Vec<String>,
    /// Shapes of the current `for_each` items, innermost last (for `@` paths).
    pub item_shapes: Vec<Shape>,
    /// Variables read by interpreted expressions (bound into CEL at run time).
    pub cel_vars: HashSet<String>,
    /// Variables read directly (`name.field`), without the interpreter.
    pub var_roots: HashSet<String>,
}

impl<'a> Compiler<'a> {
    /// A diagnostic at a byte span of the file.
    pub fn at(&mut self, span: Option<Range<usize>>, message: String) {
        let (line, col) = span.map_or((0, 0), |s| position(self.text, s.start));
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            message,
        });
    }

    /// Where the content of a string value starting at byte `start` begins, skipping quotes.
    fn content_pos(&self, span: Option<Range<usize>>, skip_chars: usize) -> SrcPos<'a> {
        let start = span.map_or(0, |s| s.start);
        let rest = &self.text[start.min(self.text.len())..];
        let mut quote = if rest.starts_with("\"\"\"") || rest.starts_with("'''") {
            3
        } else {
            1
        };
        if quote == 3 && rest[3..].starts_with('\n') {
            quote += 1;
        }
        let (line, col) = position(self.text, start + quote);
        SrcPos {
            file: self.file,
            line,
            col: col + skip_chars,
        }
    }

    /// Compiles an expression written at `span` (after `skip` characters of prefix).
    pub fn expr(&mut self, src: &str, span: Option<Range<usize>>, skip: usize) -> Option<Expr> {
        let pos = self.content_pos(span, skip);
        let names = Names {
            vars: &self.scope,
            tables: &self.tables,
        };
        let e = expr::compile(src, pos, &names, &mut self.diags)?;
        self.cel_vars.extend(e.cel_vars());
        self.var_roots.extend(e.direct_vars());
        Some(e)
    }

    /// Compiles a leaf string.
    pub fn leaf_str(&mut self, s: &str, span: Option<Range<usize>>) -> Option<Leaf> {
        if let Some(src) = s.strip_prefix('=') {
            return self.expr(src, span, 1).map(Leaf::Expr);
        }
        let is_path =
            |p: char| s.starts_with(p) && (s.len() == 1 || s[1..].starts_with(['.', '[']));
        if is_path('$') || is_path('@') {
            return self.path(s, span).map(Leaf::Path);
        }
        if s.contains("${") {
            return self.template(s, span).map(Leaf::Template);
        }
        Some(Leaf::Const(serde_json::Value::String(s.to_owned())))
    }

    fn path(&mut self, s: &str, span: Option<Range<usize>>) -> Option<PathLeaf> {
        let pos = self.content_pos(span, 0);
        self.path_at(s, pos)
    }

    fn path_at(&mut self, s: &str, pos: SrcPos<'a>) -> Option<PathLeaf> {
        let relative = s.starts_with('@');
        let text = if relative {
            format!("${}", &s[1..])
        } else {
            s.to_owned()
        };
        let path = match JsonPath::parse(&text) {
            Ok(p) => p,
            Err(e) => {
                let (l, c) = pos.within(1, e.position() + 1);
                self.diags.push(Diagnostic { file: self.file.to_path_buf(), line: l, col: c, message: format!("path syntax: {}; hint: paths are RFC 9535 JSONPath, e.g. $.form_by_title['金额'].amount", e.message()) });
                return None;
            }
        };
        let shape = if relative {
            self.item_shapes.last().cloned().unwrap_or(Shape::Any)
        } else {
            self.shape.clone()
        };
        if relative && self.item_shapes.is_empty() {
            let (l, c) = pos.within(1, 1);
            self.diags.push(Diagnostic { file: self.file.to_path_buf(), line: l, col: c, message: "`@` paths are relative to a for_each item and are only allowed inside one; use `$` for the input".into() });
            return None;
        }
        if let Err(p) = shape::check(&text, &shape) {
            let (l, c) = pos.within(1, p.at + 1);
            self.diags.push(Diagnostic {
                file: self.file.to_path_buf(),
                line: l,
                col: c,
                message: format!("path `{s}` cannot match the input: {}", p.message),
            });
            return None;
        }
        let singular = !(text.contains('*')
            || text.contains("..")
            || text.contains('?')
            || text.contains(':')
            || text.contains(','));
        Some(PathLeaf::new(path, &text, relative, singular))
    }

    /// The shape of what a path leaf selects (one element for a wildcard path).
    pub fn path_shape(&self, s: &str) -> Shape {
        if let Some(rest) = s.strip_prefix('@') {
            let base = self.item_shapes.last().cloned().unwrap_or(Shape::Any);
            shape::check(&format!("${rest}"), &base).unwrap_or(Shape::Any)
        } else {
            shape::check(s, &self.shape).unwrap_or(Shape::Any)
        }
    }

    fn template(&mut self, s: &str, span: Option<Range<usize>>) -> Option<Vec<Piece>> {
        let mut pieces = Vec::new();
        let mut rest = s;
        let mut consumed = 0; // characters before `rest`
        let mut ok = true;
        while let Some(open) = rest.find("${") {
            if open > 0 {
                pieces.push(Piece::Lit(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find('}') else {
                let pos = self.content_pos(span, consumed + rest[..open].chars().count());
                self.diags
                    .push(pos.diag(1, 1, "template: `${` is not closed by `}`".into()));
                return None;
            };
            let skip = consumed + rest[..open].chars().count() + 2;
            let inner = after[..close].trim();
            if inner.starts_with("$.")
                || inner.starts_with("$[")
                || inner.starts_with("@.")
                || inner.starts_with("@[")
            {
                let pos = self.content_pos(span.clone(), skip);
                match self.path_at(inner, pos) {
                    Some(p) => pieces.push(Piece::Path(p)),
                    None => ok = false,
                }
            } else {
                match self.expr(&after[..close], span.clone(), skip) {
                    Some(e) => pieces.push(Piece::Expr(e)),
                    None => ok = false,
                }
            }
            consumed = skip + after[..close].chars().count() + 1;
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Lit(rest.to_owned()));
        }
        ok.then_some(pieces)
    }

    /// Compiles a skeleton item (a value, a table, an array, a generator).
    pub fn node(&mut self, item: &Item) -> Option<Node> {
        match item {
            Item::None => None,
            Item::Value(v) => self.value(v),
            Item::Table(t) => self.table(t, t.span()),
            Item::ArrayOfTables(a) => {
                let mut out = Vec::new();
                let mut ok = true;
                for t in a.iter() {
                    match self.table(t, t.span()) {
                        Some(n) => out.push(n),
                        None => ok = false,
                    }
                }
                ok.then_some(Node::Array(out))
            }
        }
    }

    fn value(&mut self, v: &TV) -> Option<Node> {
        match v {
            TV::String(s) => self.leaf_str(s.value(), v.span()).map(Node::Leaf),
            TV::Integer(i) => Some(Node::Leaf(Leaf::Const(serde_json::Value::from(*i.value())))),
            TV::Boolean(b) => Some(Node::Leaf(Leaf::Const(serde_json::Value::Bool(*b.value())))),
            TV::Float(_) => {
                self.at(v.span(), "floats are not allowed in a mapping (they are not exact); write amounts as strings, e.g. \"0.10\"".into());
                None
            }
            TV::Datetime(d) => Some(Node::Leaf(Leaf::Const(serde_json::Value::String(
                d.value().to_string(),
            )))),
            TV::Array(a) => {
                let mut out = Vec::new();
                let mut ok = true;
                for x in a.iter() {
                    match self.value(x) {
                        Some(n) => out.push(n),
                        None => ok = false,
                    }
                }
                ok.then_some(Node::Array(out))
            }
            TV::InlineTable(t) => self.table(t, v.span()),
        }
    }

    fn table(&mut self, t: &dyn toml_edit::TableLike, span: Option<Range<usize>>) -> Option<Node> {
        if let Some(c) = t.get("const")
            && t.len() == 1
        {
            {
                return match c.as_value() {
                    Some(TV::String(s)) => Some(Node::Leaf(Leaf::Const(
                        serde_json::Value::String(s.value().to_owned()),
                    ))),
                    _ => {
                        self.at(c.span().or(span), "`const` takes a string".into());
                        None
                    }
                };
            }
        }
        if t.contains_key("for_each") {
            return self.generator(t, span).map(|g| Node::Gen(Box::new(g)));
        }
        let mut fields = Vec::new();
        let mut ok = true;
        for (k, item) in t.iter() {
            match self.node(item) {
                Some(n) => fields.push((k.to_owned(), n)),
                None => ok = false,
            }
        }
        ok.then_some(Node::Object(fields))
    }

    fn generator(
        &mut self,
        t: &dyn toml_edit::TableLike,
        span: Option<Range<usize>>,
    ) -> Option<Gen> {
        for (k, item) in t.iter() {
            if !["for_each", "as", "when", "item"].contains(&k) {
                self.at(item.span().or(span), format!("unknown key `{k}` in a for_each table; it takes for_each, as, when and item"));
                return None;
            }
        }
        let src_item = t.get("for_each")?;
        let Some(src) = src_item.as_str() else {
            self.at(
                src_item.span(),
                "`for_each` takes a path or an expression giving a list".into(),
            );
            return None;
        };
        let source = self.leaf_str(src, src_item.span())?;
        if matches!(source, Leaf::Const(_) | Leaf::Template(_)) {
            self.at(
                src_item.span(),
                "`for_each` takes a path ($…, @…) or an expression (=…) giving a list".into(),
            );
            return None;
        }
        let var: Arc<str> = match t.get("as") {
            None => Arc::from("it"),
            Some(a) => match a.as_str() {
                Some(n)
                    if n.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    Arc::from(n)
                }
                _ => {
                    self.at(
                        a.span(),
                        "`as` takes a variable name (letters, digits, _)".into(),
                    );
                    return None;
                }
            },
        };
        let elem = match &source {
            Leaf::Path(p) => {
                let sh = self.path_shape(src);
                if p.singular {
                    if let Shape::Array(e) = sh {
                        *e
                    } else {
                        Shape::Any
                    }
                } else {
                    sh
                }
            }
            _ => Shape::Any,
        };
        self.scope.push(var.to_string());
        self.item_shapes.push(elem);
        let mut used = false;
        let when = match t.get("when") {
            Some(w) => match w.as_str() {
                Some(s) => {
                    let e = self.expr(
                        s.strip_prefix('=').unwrap_or(s),
                        w.span(),
                        usize::from(s.starts_with('=')),
                    );
                    used |= e.as_ref().is_some_and(|e| e.src.contains(&*var));
                    e
                }
                None => {
                    self.at(w.span(), "`when` takes an expression".into());
                    None
                }
            },
            None => None,
        };
        let item = match t.get("item") {
            Some(i) => self.node(i),
            None => {
                self.at(
                    span.clone(),
                    "a for_each table needs an `item` (the skeleton of one element)".into(),
                );
                None
            }
        };
        self.scope.pop();
        self.item_shapes.pop();
        // Conservative: bind the variable when any expression inside names it.
        let var_used = used || item.as_ref().is_some_and(|n| reads(n, &var));
        Some(Gen {
            source,
            var,
            var_used,
            when,
            item: item?,
            at: format!(
                "{}:{}:{}",
                self.file.display(),
                span.as_ref().map_or(0, |s| position(self.text, s.start).0),
                span.as_ref().map_or(0, |s| position(self.text, s.start).1)
            ),
        })
    }
}

/// Whether a node's expressions mention `var` (a conservative textual check).
fn reads(n: &Node, var: &str) -> bool {
    let mentions = |e: &Expr| {
        e.src
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == var)
    };
    let leaf = |l: &Leaf| match l {
        Leaf::Expr(e) => mentions(e),
        Leaf::Template(ps) => ps
            .iter()
            .any(|p| matches!(p, Piece::Expr(e) if mentions(e))),
        _ => false,
    };
    match n {
        Node::Leaf(l) => leaf(l),
        Node::Object(f) => f.iter().any(|(_, n)| reads(n, var)),
        Node::Array(a) => a.iter().any(|n| reads(n, var)),
        Node::Gen(g) => {
            leaf(&g.source) || g.when.as_ref().is_some_and(mentions) || reads(&g.item, var)
        }
    }
}

/// Every variable name a node's expressions read (interpreted or direct).
pub fn refs(n: &Node, out: &mut HashSet<String>) {
    let expr = |e: &Expr, out: &mut HashSet<String>| {
        out.extend(e.cel_vars());
        out.extend(e.direct_vars());
    };
    match n {
        Node::Leaf(l) => leaf_refs(l, out),
        Node::Object(f) => f.iter().for_each(|(_, n)| refs(n, out)),
        Node::Array(a) => a.iter().for_each(|n| refs(n, out)),
        Node::Gen(g) => {
            leaf_refs(&g.source, out);
            if let Some(w) = &g.when {
                expr(w, out);
            }
            refs(&g.item, out);
        }
    }
}

fn leaf_refs(l: &Leaf, out: &mut HashSet<String>) {
    let expr = |e: &Expr, out: &mut HashSet<String>| {
        out.extend(e.cel_vars());
        out.extend(e.direct_vars());
    };
    match l {
        Leaf::Expr(e) => expr(e, out),
        Leaf::Template(ps) => ps.iter().for_each(|p| {
            if let Piece::Expr(e) = p {
                expr(e, out);
            }
        }),
        Leaf::Const(_) | Leaf::Path(_) => {}
    }
}
