//! Which parts of an approval document a compiled mapping can read, so that the job's input is
//! built with only those ([`CompiledMapping::input_value`]) instead of the whole document with
//! its nine copies of every table cell (`docs/mapping-input.md`; BENCHMARKS.md, "Mapping").
//!
//! Every input path is parsed at load. What a path selects lies below the member names it
//! starts with (`$.form_by_title['费用明细'].rows_by_title[*]` → `form_by_title`, `费用明细`,
//! `rows_by_title`), so building those subtrees whole gives every path the nodes it gets from
//! the whole document. `@` paths read the current `for_each` item, which comes from an input
//! path or a binding, both already counted; when it comes from a path ending in `[*]` (every
//! row of a table) and the item reads it only through `@` paths, each row is built with only
//! the cells those read. A mapping that reads `input` as a value (in an
//! expression), or has no `[document]` (the input is the document), reads everything.

use serde_json::Value;

use super::CompiledMapping;
use super::input::MapInput;
use super::spec::{Gen, Leaf, Node, PathLeaf, Piece};
use crate::wecom::approval::{ApprovalInstance, DocumentParts};

/// The parts of the input `m`'s paths can reach.
pub(super) fn input_parts(m: &CompiledMapping) -> DocumentParts {
    if m.lets_read_input || m.cel_vars.contains("input") || m.document.is_none() {
        return DocumentParts::All;
    }
    let mut parts = DocumentParts::none();
    leaf_parts(&m.key, &mut parts);
    for (_, n) in &m.lets {
        node_parts(n, &mut parts);
    }
    if let Some(n) = &m.document {
        node_parts(n, &mut parts);
    }
    for a in &m.asserts {
        leaf_parts(&a.message, &mut parts);
    }
    parts
}

/// Adds what the input paths of `n` read to `parts`.
fn node_parts(n: &Node, parts: &mut DocumentParts) {
    match n {
        Node::Leaf(l) => leaf_parts(l, parts),
        Node::Object(fields) => fields.iter().for_each(|(_, n)| node_parts(n, parts)),
        Node::Array(items) => items.iter().for_each(|n| node_parts(n, parts)),
        Node::Gen(g) => match (&g.source, item_parts(g)) {
            (Leaf::Path(p), Some(each)) if p.each && !p.relative => {
                let names = p.prefix.iter().map(String::as_str);
                parts.add_parts(names, DocumentParts::Each(Box::new(each)));
                node_parts(&g.item, parts);
            }
            (source, _) => {
                leaf_parts(source, parts);
                node_parts(&g.item, parts);
            }
        },
    }
}

/// What the item skeleton of `g` reads of each element through `@` paths; `None` when it may
/// read more (an expression reads the element as a value, or a `for_each` inside).
fn item_parts(g: &Gen) -> Option<DocumentParts> {
    fn walk(n: &Node, out: &mut DocumentParts) -> Option<()> {
        match n {
            Node::Leaf(l) => leaf_paths(l, &mut |p| {
                if p.relative {
                    out.add(p.prefix.iter().map(String::as_str));
                }
            }),
            Node::Object(fields) => fields.iter().try_for_each(|(_, n)| walk(n, out))?,
            Node::Array(items) => items.iter().try_for_each(|n| walk(n, out))?,
            Node::Gen(_) => return None,
        }
        Some(())
    }
    if g.var_used {
        return None;
    }
    let mut out = DocumentParts::none();
    walk(&g.item, &mut out)?;
    Some(out)
}

/// Adds what the input paths of `l` read to `parts`.
fn leaf_parts(l: &Leaf, parts: &mut DocumentParts) {
    leaf_paths(l, &mut |p| {
        if !p.relative {
            parts.add(p.prefix.iter().map(String::as_str));
        }
    });
}

fn leaf_paths(l: &Leaf, f: &mut impl FnMut(&PathLeaf)) {
    match l {
        Leaf::Path(p) => f(p),
        Leaf::Template(pieces) => pieces.iter().for_each(|p| {
            if let Piece::Path(p) = p {
                f(p);
            }
        }),
        Leaf::Const(_) | Leaf::Expr(_) => {}
    }
}

impl CompiledMapping {
    /// The input document this mapping reads from `input`: for an approval, only the parts its
    /// paths can reach ([`CompiledMapping::approval_input`]); any other input whole
    /// ([`MapInput::to_value`]). The mapping gives the same result on it as on the whole
    /// document.
    pub fn input_value(&self, input: &MapInput) -> Value {
        match input {
            MapInput::Approval(a) => self.approval_input(a),
            other => other.to_value(),
        }
    }

    /// The parts of `a`'s document ([`ApprovalInstance::to_document`]) this mapping can read.
    pub fn approval_input(&self, a: &ApprovalInstance) -> Value {
        a.document_parts(&self.input_parts)
    }
}

#[cfg(test)]
mod tests;
