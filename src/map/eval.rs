//! Running a compiled mapping on one input: bindings, document, asserts. Pure and bounded.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map as CelMap};
use cel::{ExecutionError, Value as Cel};
use serde_json::Value;

use super::expr::{Expr, Vars, from_json, to_json};
use super::funcs;
use super::spec::{Gen, Leaf, Node, PathLeaf, Piece};
use super::{CompiledMapping, MAX_INPUT_DEPTH, MAX_INPUT_NODES, Refusal};

/// The current `for_each` element.
enum Item<'i> {
    Json(&'i Value),
    Owned(Value),
    Cel(Cel),
}

/// The state of one run.
pub(super) struct Run<'m, 'i> {
    m: &'m CompiledMapping,
    ctx: Ctx<'m>,
    st: State<'i>,
}

/// A CEL scope: the run's own, or a `for_each` element's inside it.
type Ctx<'c> = cel::Context<'c, 'static>;

/// What evaluating a node reads and changes besides the CEL scope: the input, the bindings
/// made so far and the enclosing `for_each` elements.
struct State<'i> {
    input: &'i Value,
    vars: Vars,
    items: Vec<Item<'i>>,
    sh: Arc<funcs::Shared>,
}

/// The document field (or `let.<name>`, `key`, `assert[i]`, …) being computed. Rendered as
/// text only when a refusal names it: formatting it for every node of every document cost
/// about 6 % of a run (callgrind, BENCHMARKS.md).
#[derive(Clone, Copy)]
pub(super) enum Field<'a> {
    /// A top-level name: `document`, `key`, `match.condition`, `input`, `item`.
    Name(&'a str),
    /// `let.<name>`.
    Let(&'a str),
    /// `assert[i]`.
    Assert(usize),
    /// `parent.key`.
    Key(&'a Field<'a>, &'a str),
    /// `parent[i]`.
    Index(&'a Field<'a>, usize),
}

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Name(n) => f.write_str(n),
            Field::Let(n) => write!(f, "let.{n}"),
            Field::Assert(i) => write!(f, "assert[{i}]"),
            Field::Key(parent, k) => write!(f, "{parent}.{k}"),
            Field::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn refusal(code: &str, field: &Field<'_>, message: String) -> Refusal {
    let field = field.to_string();
    Refusal {
        code: code.to_owned(),
        message: format!("{field}: {message}"),
        field: Some(field),
    }
}

fn from_exec(e: &ExecutionError, field: &Field<'_>, at: &str) -> Refusal {
    if let Some((code, msg)) = funcs::decode(e) {
        return refusal(&code, field, format!("{msg} (mapping {at})"));
    }
    let (code, text) = match e {
        ExecutionError::NoSuchKey(k) => (
            "missing_field",
            format!("no field `{k}`; use get(map, key) for optional fields"),
        ),
        ExecutionError::DivisionByZero(_) => ("division_by_zero", "division by zero".to_owned()),
        ExecutionError::NoSuchOverload(o) => ("expression_failed", o.to_string()),
        ExecutionError::UnexpectedType { got, want } => (
            "expression_failed",
            format!("got a {got}, expected a {want}"),
        ),
        other => {
            // Interpreter messages can quote values; keep them short.
            let t: String = other.to_string().chars().take(160).collect();
            ("expression_failed", t)
        }
    };
    refusal(code, field, format!("{text} (mapping {at})"))
}

fn bounds(v: &Value) -> Result<(), Refusal> {
    let mut stack = vec![(v, 1usize)];
    let mut nodes = 0usize;
    while let Some((v, depth)) = stack.pop() {
        nodes += 1;
        if depth > MAX_INPUT_DEPTH {
            return Err(refusal(
                "input_too_deep",
                &Field::Name("input"),
                format!("nested deeper than {MAX_INPUT_DEPTH} levels"),
            ));
        }
        if nodes > MAX_INPUT_NODES {
            return Err(refusal(
                "input_too_large",
                &Field::Name("input"),
                format!("more than {MAX_INPUT_NODES} values"),
            ));
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, depth + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

impl<'m, 'i> Run<'m, 'i> {
    pub(super) fn new(m: &'m CompiledMapping, input: &'i Value) -> Result<Self, Refusal> {
        let mut ctx = m.root.new_inner_scope();
        let mut vars = Vars::new();
        if m.cel_vars.contains("input") || m.lets_read_input {
            // Only converting the whole input into CEL values (recursive, allocating) needs
            // the size and depth bounds; paths read it in place, without recursion of our own,
            // and serde_json already refused anything nested deeper than 128 when parsing.
            bounds(input)?;
            let v = from_json(input);
            if m.cel_vars.contains("input") {
                ctx.add_variable_from_value("input", v.clone());
            }
            vars.push((Arc::from("input"), v));
        }
        Ok(Run {
            m,
            ctx,
            st: State {
                input,
                vars,
                items: Vec::new(),
                sh: Arc::clone(&m.shared),
            },
        })
    }

    /// Evaluates the `[let]` bindings in file order.
    pub(super) fn lets(&mut self) -> Result<(), Refusal> {
        for (name, node) in &self.m.lets {
            let field = Field::Let(name);
            let v = self.st.node_cel(&self.ctx, node, &field)?;
            if self.m.cel_vars.contains(&**name) {
                self.ctx.add_variable_from_value(&**name, v.clone());
            }
            self.st.vars.push((Arc::clone(name), v));
        }
        Ok(())
    }

    pub(super) fn key(&mut self) -> Result<String, Refusal> {
        let v = self
            .st
            .leaf_json(&self.ctx, &self.m.key, &Field::Name("key"))?;
        match v {
            Value::String(s) if !s.is_empty() => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(refusal(
                "missing_key",
                &Field::Name("key"),
                "the business key came out empty; check the `key` template and the fields it reads"
                    .into(),
            )),
        }
    }

    pub(super) fn condition(&mut self, cond: &Expr) -> Result<bool, Refusal> {
        match cond.eval(&self.st.vars, &self.ctx, &self.st.sh) {
            Ok(Cel::Bool(b)) => Ok(b),
            Ok(other) => Err(refusal(
                "condition_not_bool",
                &Field::Name("match.condition"),
                format!(
                    "the condition gave a {}, not a bool (mapping {})",
                    funcs::type_name(&other),
                    cond.at
                ),
            )),
            Err(e) => Err(from_exec(&e, &Field::Name("match.condition"), &cond.at)),
        }
    }

    /// Builds the document and checks the asserts.
    pub(super) fn finish(mut self) -> Result<Value, Refusal> {
        let doc = match &self.m.document {
            Some(n) => self.st.node_json(&self.ctx, n, &Field::Name("document"))?,
            None => self.st.input.clone(),
        };
        if !self.m.asserts.is_empty() {
            if self.m.asserts_read_doc {
                let d = from_json(&doc);
                if self.m.cel_vars.contains("doc") {
                    self.ctx.add_variable_from_value("doc", d.clone());
                }
                self.st.vars.push((Arc::from("doc"), d));
            }
            for (i, a) in self.m.asserts.iter().enumerate() {
                let field = Field::Assert(i);
                match a.check.eval(&self.st.vars, &self.ctx, &self.st.sh) {
                    Ok(Cel::Bool(true)) => {}
                    Ok(Cel::Bool(false)) => {
                        let msg = self.st.leaf_json(&self.ctx, &a.message, &field)?;
                        let msg = match msg {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        return Err(Refusal {
                            code: a.code.clone(),
                            message: format!("{msg} (assert at {})", a.check.at),
                            field: Some(field.to_string()),
                        });
                    }
                    Ok(other) => {
                        return Err(refusal(
                            "assert_not_bool",
                            &field,
                            format!(
                                "the check gave a {}, not a bool (mapping {})",
                                funcs::type_name(&other),
                                a.check.at
                            ),
                        ));
                    }
                    Err(e) => return Err(from_exec(&e, &field, &a.check.at)),
                }
            }
        }
        Ok(doc)
    }
}

impl<'i> State<'i> {
    /// Calls `f` with the node(s) path `p` selects: for a singular path the node or `None`,
    /// for another path `Some` list of the nodes (as a JSON array).
    fn with_query<T>(
        &self,
        p: &PathLeaf,
        f: impl FnOnce(Option<&Value>) -> T,
    ) -> Result<T, Refusal> {
        let base: &Value = if p.relative {
            match self.items.last() {
                Some(Item::Json(v)) => v,
                Some(Item::Owned(v)) => v,
                Some(Item::Cel(v)) => {
                    let v = to_json(v)
                        .map_err(|e| refusal("expression_failed", &Field::Name("item"), e))?;
                    return Ok(select(&v, p, f));
                }
                None => return Ok(f(None)),
            }
        } else {
            self.input
        };
        Ok(select(base, p, f))
    }

    fn query(&self, p: &PathLeaf) -> Result<Value, Refusal> {
        self.with_query(p, |v| v.cloned().unwrap_or(Value::Null))
    }

    fn eval_expr(&self, ctx: &Ctx<'_>, e: &Expr, field: &Field<'_>) -> Result<Cel, Refusal> {
        e.eval(&self.vars, ctx, &self.sh)
            .map_err(|x| from_exec(&x, field, &e.at))
    }

    /// The value of expression `e` as JSON.
    fn expr_json(&self, ctx: &Ctx<'_>, e: &Expr, field: &Field<'_>) -> Result<Value, Refusal> {
        json_of(&self.eval_expr(ctx, e, field)?, e, field)
    }

    fn leaf_json(&self, ctx: &Ctx<'_>, l: &Leaf, field: &Field<'_>) -> Result<Value, Refusal> {
        match l {
            Leaf::Const(v) => Ok(v.clone()),
            Leaf::Path(p) => self.query(p),
            Leaf::Expr(e) => self.expr_json(ctx, e, field),
            Leaf::Template(pieces) => {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Lit(s) => out.push_str(s),
                        Piece::Path(p) => scalar_into(&self.query(p)?, field, &mut out)?,
                        Piece::Expr(e) => {
                            scalar_into(&self.expr_json(ctx, e, field)?, field, &mut out)?
                        }
                    }
                }
                Ok(Value::String(out))
            }
        }
    }

    /// The value of node `n` as a CEL value (a `[let]` binding): an expression's value as it
    /// is, anything else as [`State::cel_value`] builds it.
    fn node_cel(&mut self, ctx: &Ctx<'_>, n: &Node, field: &Field<'_>) -> Result<Cel, Refusal> {
        match n {
            Node::Leaf(Leaf::Expr(e)) => self.eval_expr(ctx, e, field),
            other => self.cel_value(ctx, other, field),
        }
    }

    /// The CEL value of what [`State::node_json`] would build, built directly: no JSON value
    /// in between for objects, lists and `for_each` (converting it afterwards cost as much as
    /// building it). Expression values inside go through JSON only when they are not already
    /// a JSON scalar, so the result is exactly `from_json(node_json(..))`.
    fn cel_value(&mut self, ctx: &Ctx<'_>, n: &Node, field: &Field<'_>) -> Result<Cel, Refusal> {
        match n {
            Node::Leaf(Leaf::Expr(e)) => match self.eval_expr(ctx, e, field)? {
                v @ (Cel::String(_) | Cel::Int(_) | Cel::Bool(_) | Cel::Null) => Ok(v),
                other => json_of(&other, e, field).map(|j| from_json(&j)),
            },
            Node::Leaf(Leaf::Path(p)) => self.with_query(p, |v| v.map_or(Cel::Null, from_json)),
            Node::Leaf(Leaf::Const(v)) => Ok(from_json(v)),
            Node::Leaf(l @ Leaf::Template(_)) => Ok(from_json(&self.leaf_json(ctx, l, field)?)),
            Node::Object(fields) => {
                let mut out = HashMap::with_capacity(fields.len());
                for (k, n) in fields {
                    let v = self.cel_value(ctx, n, &Field::Key(field, k))?;
                    out.insert(Key::String(Arc::new(k.clone())), v);
                }
                Ok(Cel::Map(CelMap { map: Arc::new(out) }))
            }
            Node::Array(items) => {
                let out = self.list(ctx, items, field, State::cel_value)?;
                Ok(Cel::List(Arc::new(out)))
            }
            Node::Gen(g) => {
                let mut out = Vec::new();
                self.generate(ctx, g, field, &mut out, State::cel_value)?;
                Ok(Cel::List(Arc::new(out)))
            }
        }
    }

    fn node_json(&mut self, ctx: &Ctx<'_>, n: &Node, field: &Field<'_>) -> Result<Value, Refusal> {
        match n {
            Node::Leaf(l) => self.leaf_json(ctx, l, field),
            Node::Object(fields) => {
                let mut out = serde_json::Map::new();
                for (k, n) in fields {
                    let v = self.node_json(ctx, n, &Field::Key(field, k))?;
                    out.insert(k.clone(), v);
                }
                Ok(Value::Object(out))
            }
            Node::Array(items) => {
                let out = self.list(ctx, items, field, State::node_json)?;
                Ok(Value::Array(out))
            }
            Node::Gen(g) => {
                let mut out = Vec::new();
                self.generate(ctx, g, field, &mut out, State::node_json)?;
                Ok(Value::Array(out))
            }
        }
    }

    /// The elements of list node `items`, each evaluated by `node`; a `for_each` among them
    /// adds one element per element of its source.
    fn list<T>(
        &mut self,
        ctx: &Ctx<'_>,
        items: &[Node],
        field: &Field<'_>,
        node: NodeFn<'i, T>,
    ) -> Result<Vec<T>, Refusal> {
        let mut out = Vec::with_capacity(items.len());
        for (i, n) in items.iter().enumerate() {
            let f = Field::Index(field, i);
            match n {
                Node::Gen(g) => self.generate(ctx, g, &f, &mut out, node)?,
                other => out.push(node(self, ctx, other, &f)?),
            }
        }
        Ok(out)
    }

    /// Runs a `for_each`: one `item` per element of the source, evaluated by `node`.
    fn generate<T>(
        &mut self,
        ctx: &Ctx<'_>,
        g: &Gen,
        field: &Field<'_>,
        out: &mut Vec<T>,
        node: NodeFn<'i, T>,
    ) -> Result<(), Refusal> {
        let not_a_list = || {
            let message = format!("for_each must select a list (mapping {})", g.at);
            refusal("not_a_list", field, message)
        };
        let source: Vec<Item<'i>> = match &g.source {
            Leaf::Path(p) if !p.relative => {
                if p.singular {
                    match p.first(self.input) {
                        Some(Value::Array(a)) => a.iter().map(Item::Json).collect(),
                        None | Some(Value::Null) => Vec::new(),
                        Some(_) => return Err(not_a_list()),
                    }
                } else {
                    p.path
                        .query(self.input)
                        .into_iter()
                        .map(Item::Json)
                        .collect()
                }
            }
            Leaf::Path(p) => match self.query(p)? {
                Value::Array(a) => a.into_iter().map(Item::Owned).collect(),
                Value::Null => Vec::new(),
                _ => return Err(not_a_list()),
            },
            Leaf::Expr(e) => match self.eval_expr(ctx, e, field)? {
                Cel::List(l) => l.iter().cloned().map(Item::Cel).collect(),
                Cel::Null => Vec::new(),
                other => {
                    return Err(refusal(
                        "not_a_list",
                        field,
                        format!(
                            "for_each gave a {}, not a list (mapping {})",
                            funcs::type_name(&other),
                            g.at
                        ),
                    ));
                }
            },
            Leaf::Const(_) | Leaf::Template(_) => Vec::new(),
        };
        let bind_cel = self.vars.len();
        for (i, item) in source.into_iter().enumerate() {
            let f = Field::Index(field, i);
            let mut child = ctx.new_inner_scope();
            if g.var_used {
                let v = match &item {
                    Item::Json(j) => from_json(j),
                    Item::Owned(j) => from_json(j),
                    Item::Cel(c) => c.clone(),
                };
                child.add_variable_from_value(&*g.var, v.clone());
                self.vars.push((Arc::clone(&g.var), v));
            }
            self.items.push(item);
            let keep = match &g.when {
                Some(w) => match w.eval(&self.vars, &child, &self.sh) {
                    Ok(Cel::Bool(b)) => Ok(b),
                    Ok(other) => Err(refusal(
                        "condition_not_bool",
                        &f,
                        format!(
                            "`when` gave a {}, not a bool (mapping {})",
                            funcs::type_name(&other),
                            w.at
                        ),
                    )),
                    Err(e) => Err(from_exec(&e, &f, &w.at)),
                },
                None => Ok(true),
            };
            let r = match keep {
                Ok(true) => node(self, &child, &g.item, &f).map(|v| out.push(v)),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            };
            self.items.pop();
            self.vars.truncate(bind_cel);
            r?;
        }
        Ok(())
    }
}

/// How one node is evaluated into a `T`: [`State::node_json`] or [`State::node_cel`].
type NodeFn<'i, T> = fn(&mut State<'i>, &Ctx<'_>, &Node, &Field<'_>) -> Result<T, Refusal>;

/// [`State::with_query`] on a resolved base.
fn select<T>(base: &Value, p: &PathLeaf, f: impl FnOnce(Option<&Value>) -> T) -> T {
    if p.singular {
        f(p.first(base))
    } else {
        let list = Value::Array(p.path.query(base).into_iter().cloned().collect());
        f(Some(&list))
    }
}

/// The JSON of expression `e`'s value `v`; a value JSON cannot hold is refused naming `e`.
fn json_of(v: &Cel, e: &Expr, field: &Field<'_>) -> Result<Value, Refusal> {
    to_json(v).map_err(|m| refusal("bad_value", field, format!("{m} (mapping {})", e.at)))
}

fn scalar_into(v: &Value, field: &Field<'_>, out: &mut String) -> Result<(), Refusal> {
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        _ => {
            return Err(refusal(
                "bad_value",
                field,
                "a template piece gave a list or an object; select a single value".into(),
            ));
        }
    }
    Ok(())
}
