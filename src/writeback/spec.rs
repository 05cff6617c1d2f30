//! `[writeback]` of a mapping: which WeCom notification to send when a job of the mapping is
//! delivered (to the applicant) or dead-lettered (to operators), validated purely at load with
//! `file:line:col` for every problem, like the rest of the mapping file.
//!
//! ```toml
//! [writeback.delivered]            # to the applicant, once the target booked the document
//! title = "报销单已入账"
//! description = "<div class=\"highlight\">凭证号 ${captured.voucher_no}</div>"
//! url = "https://erp.example.com/vouchers/${captured.voucher_id}"   # optional
//! btntxt = "详情"                   # optional
//!
//! [writeback.dead]                 # to operators, when the job is parked
//! to_users = ["FinanceOps"]        # and/or to_parties, to_tags
//! title = "报销单推送失败"
//! description = "${sp_no}: ${reason}"
//! ```
//!
//! Templates take `${name}` placeholders only (no expressions: a notification must never
//! fail to render): `sp_no`, `applicant`, `mapping`, `connector`, `action`, `reason` (dead
//! only), `captured.<capture>` (a value the connector captured from the target's answer;
//! checked against the connector's `[capture]` when the catalog loads) and
//! `document.<field>` (a top-level field of the mapped document).

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::{Value, json};
use toml_edit::{Item, TableLike};

use crate::map::spec::Compiler;

/// WeCom's limit on a text card's title, in characters.
pub const MAX_TITLE_CHARS: usize = 128;
/// WeCom's limit on a text card's description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 512;
/// WeCom's limit on a text card's button text, in characters.
pub const MAX_BTNTXT_CHARS: usize = 4;
/// WeCom's limit on a text card's URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// WeCom drops an identical message within this many seconds (`duplicate_check_interval`):
/// a second guard, after the ledger, against notifying twice.
pub const DUPLICATE_CHECK_SECS: u64 = 4 * 3600;

/// The writeback settings of one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritebackSpec {
    /// Notify the applicant when a job is delivered.
    pub delivered: Option<Card>,
    /// Notify operators when a job is dead-lettered.
    pub dead: Option<OperatorCard>,
    /// `captured.<name>` placeholders with their `line:col`, checked against the connector.
    pub captured_refs: Vec<(String, (usize, usize))>,
}

/// A text card's templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Title (≤ 128 characters after rendering; longer is cut).
    pub title: Template,
    /// Description (≤ 512 characters; WeCom's `<div class="gray|normal|highlight">` allowed).
    pub description: Template,
    /// Where the card links to. Without one, a plain text message is sent instead (WeCom's
    /// text card needs a link).
    pub url: Option<Template>,
    /// Button text (≤ 4 characters).
    pub btntxt: Option<String>,
}

/// The operators' card: recipients and the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCard {
    /// Member user ids.
    pub to_users: Vec<String>,
    /// Department ids.
    pub to_parties: Vec<String>,
    /// Tag ids.
    pub to_tags: Vec<String>,
    /// The card.
    pub card: Card,
}

/// A template: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Var),
}

/// A placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    SpNo,
    Applicant,
    Mapping,
    Connector,
    Action,
    Reason,
    Captured(String),
    Document(String),
}

/// What placeholders are filled from when a notification is rendered.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The business key (SpNo).
    pub sp_no: &'a str,
    /// The applicant's user id (empty when unknown).
    pub applicant: &'a str,
    /// Mapping name.
    pub mapping: &'a str,
    /// Connector name.
    pub connector: &'a str,
    /// `approved`, `revoked`, `changed`.
    pub action: &'a str,
    /// Why the job was parked (dead only).
    pub reason: &'a str,
    /// Values captured from the target's answers.
    pub captured: &'a BTreeMap<String, String>,
    /// The mapped document, when it was built.
    pub document: Option<&'a Value>,
}

impl Template {
    /// Renders with `facts`; a missing value renders as nothing.
    pub fn render(&self, facts: &Facts<'_>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => out.push_str(&value_of(v, facts)),
            }
        }
        out
    }

    fn literal_chars(&self) -> usize {
        self.0
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.chars().count(),
                Part::Var(_) => 0,
            })
            .sum()
    }
}

fn value_of(v: &Var, f: &Facts<'_>) -> String {
    match v {
        Var::SpNo => f.sp_no.to_owned(),
        Var::Applicant => f.applicant.to_owned(),
        Var::Mapping => f.mapping.to_owned(),
        Var::Connector => f.connector.to_owned(),
        Var::Action => f.action.to_owned(),
        Var::Reason => f.reason.to_owned(),
        Var::Captured(name) => f.captured.get(name).cloned().unwrap_or_default(),
        Var::Document(field) => match f.document.and_then(|d| d.get(field)) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        },
    }
}

/// Cuts `s` to at most `max` characters.
fn cut(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s,
    }
}

/// A card description as plain text: a closing tag (`</div>`) ends a line, other tags are
/// dropped. Used for the text message sent instead of a card without a link, and for display.
pub fn plain_text(s: &str) -> String {
    let mut out = String::new();
    let mut tag: Option<String> = None;
    for ch in s.chars() {
        match (&mut tag, ch) {
            (None, '<') => tag = Some(String::new()),
            (Some(t), '>') => {
                if t.starts_with('/') && !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                tag = None;
            }
            (Some(t), c) => t.push(c),
            (None, c) => out.push(c),
        }
    }
    out.trim().to_owned()
}

impl Card {
    /// The `message/send` body for these recipients, without `agentid` (the sending app's,
    /// added when it is sent). Texts are cut to WeCom's limits.
    pub fn message(&self, to: Recipients<'_>, facts: &Facts<'_>) -> Value {
        let title = cut(self.title.render(facts), MAX_TITLE_CHARS);
        let description = cut(self.description.render(facts), MAX_DESCRIPTION_CHARS);
        let mut msg = json!({
            "touser": to.users.join("|"),
            "toparty": to.parties.join("|"),
            "totag": to.tags.join("|"),
            "enable_duplicate_check": 1,
            "duplicate_check_interval": DUPLICATE_CHECK_SECS,
        });
        match self.url.as_ref().map(|u| u.render(facts)) {
            Some(url) if !url.is_empty() && url.len() <= MAX_URL_BYTES => {
                let mut card = json!({"title": title, "description": description, "url": url});
                if let Some(b) = &self.btntxt {
                    card["btntxt"] = json!(b);
                }
                msg["msgtype"] = json!("textcard");
                msg["textcard"] = card;
            }
            _ => {
                msg["msgtype"] = json!("text");
                msg["text"] = json!({"content": format!("{title}\n{}", plain_text(&description))});
            }
        }
        msg
    }
}

/// Who a message goes to.
#[derive(Debug, Clone, Copy)]
pub struct Recipients<'a> {
    /// Member user ids.
    pub users: &'a [String],
    /// Department ids.
    pub parties: &'a [String],
    /// Tag ids.
    pub tags: &'a [String],
}

/// Where a template may be used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Delivered,
    Dead,
}

/// Compiles `[writeback]`. `approval` says whether the mapping reads approvals (only those
/// have an applicant); `document_fields` are the top-level fields of `[document]`.
pub fn compile(
    c: &mut Compiler<'_>,
    item: &Item,
    approval: bool,
    document_fields: &[String],
) -> Option<WritebackSpec> {
    let Some(table) = item.as_table_like() else {
        c.at(
            item.span(),
            "`writeback` is a table with [writeback.delivered] and/or [writeback.dead]".into(),
        );
        return None;
    };
    let mut spec = WritebackSpec {
        delivered: None,
        dead: None,
        captured_refs: Vec::new(),
    };
    let errors = c.diags.len();
    for (k, it) in table.iter() {
        match k {
            "delivered" if !approval => c.at(
                it.span(),
                "[writeback.delivered] notifies the applicant, and only approval mappings have one; \
                 use [writeback.dead] for operators"
                    .into(),
            ),
            "delivered" => {
                let mut r = Reader::new(c, it, &mut spec.captured_refs, document_fields);
                spec.delivered = r
                    .checked_table(it, "writeback.delivered", &[])
                    .and_then(|t| r.card(t));
            }
            "dead" => {
                let mut r = Reader::new(c, it, &mut spec.captured_refs, document_fields);
                spec.dead = r.operator(it);
            }
            other => c.at(
                it.span(),
                format!("unknown key `{other}` in [writeback]; it takes `delivered` and `dead`"),
            ),
        }
    }
    if table.is_empty() {
        c.at(
            item.span(),
            "[writeback] is empty; add [writeback.delivered] and/or [writeback.dead], or remove it"
                .into(),
        );
    }
    (c.diags.len() == errors).then_some(spec)
}

/// Reads one `[writeback.*]` table.
struct Reader<'c, 'a, 'r> {
    c: &'c mut Compiler<'a>,
    span: Option<Range<usize>>,
    refs: &'r mut Vec<(String, (usize, usize))>,
    document_fields: &'r [String],
}

const CARD_KEYS: &[&str] = &["title", "description", "url", "btntxt"];
const OPERATOR_KEYS: &[&str] = &["to_users", "to_parties", "to_tags"];

impl<'c, 'a, 'r> Reader<'c, 'a, 'r> {
    fn new(
        c: &'c mut Compiler<'a>,
        item: &Item,
        refs: &'r mut Vec<(String, (usize, usize))>,
        document_fields: &'r [String],
    ) -> Self {
        Reader {
            c,
            span: item.span(),
            refs,
            document_fields,
        }
    }

    fn operator(&mut self, item: &Item) -> Option<OperatorCard> {
        let t = self.checked_table(item, "writeback.dead", OPERATOR_KEYS)?;
        let to_users = self.ids(t, "to_users");
        let to_parties = self.ids(t, "to_parties");
        let to_tags = self.ids(t, "to_tags");
        if to_users.is_empty() && to_parties.is_empty() && to_tags.is_empty() {
            self.c.at(
                self.span.clone(),
                "[writeback.dead] needs recipients: to_users, to_parties and/or to_tags \
                 (e.g. to_users = [\"FinanceOps\"])"
                    .into(),
            );
        }
        let card = self.card_for(t, Use::Dead)?;
        Some(OperatorCard {
            to_users,
            to_parties,
            to_tags,
            card,
        })
    }

    fn checked_table<'t>(
        &mut self,
        item: &'t Item,
        name: &str,
        extra: &[&str],
    ) -> Option<&'t dyn TableLike> {
        let Some(t) = item.as_table_like() else {
            self.c.at(item.span(), format!("[{name}] is a table"));
            return None;
        };
        for (k, it) in t.iter() {
            if !CARD_KEYS.contains(&k) && !extra.contains(&k) {
                let mut keys: Vec<&str> = CARD_KEYS.to_vec();
                keys.extend(extra);
                self.c.at(
                    it.span(),
                    format!(
                        "unknown key `{k}` in [{name}]; it takes {}",
                        keys.join(", ")
                    ),
                );
            }
        }
        Some(t)
    }

    fn ids(&mut self, t: &dyn TableLike, key: &str) -> Vec<String> {
        let Some(it) = t.get(key) else {
            return Vec::new();
        };
        let list = it.as_array().map(|a| {
            a.iter()
                .map(|v| match v {
                    toml_edit::Value::String(s) if !s.value().trim().is_empty() => {
                        Some(s.value().trim().to_owned())
                    }
                    toml_edit::Value::Integer(i) => Some(i.value().to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
        });
        match list {
            Some(Some(ids)) if ids.iter().all(|id| !id.contains('|')) => ids,
            _ => {
                self.c.at(
                    it.span(),
                    format!("`{key}` is a list of ids, e.g. [\"FinanceOps\", \"LiSi\"] (no `|`)"),
                );
                Vec::new()
            }
        }
    }

    fn card(&mut self, t: &dyn TableLike) -> Option<Card> {
        self.card_for(t, Use::Delivered)
    }

    fn card_for(&mut self, t: &dyn TableLike, use_: Use) -> Option<Card> {
        let title = self.template(t, "title", use_, true, MAX_TITLE_CHARS);
        let description = self.template(t, "description", use_, true, MAX_DESCRIPTION_CHARS);
        let url = self.template(t, "url", use_, false, MAX_URL_BYTES);
        if let (Some(u), Some(it)) = (&url, t.get("url"))
            && !matches!(u.0.first(), Some(Part::Lit(s)) if s.starts_with("https://") || s.starts_with("http://"))
        {
            self.c.at(
                it.span(),
                "`url` must start with https:// or http:// (WeCom needs the scheme)".into(),
            );
        }
        let btntxt = t.get("btntxt").and_then(|it| match it.as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= MAX_BTNTXT_CHARS => Some(s.to_owned()),
            _ => {
                self.c.at(
                    it.span(),
                    format!("`btntxt` is a text of 1 to {MAX_BTNTXT_CHARS} characters (WeCom's limit), e.g. \"详情\""),
                );
                None
            }
        });
        Some(Card {
            title: title?,
            description: description?,
            url,
            btntxt,
        })
    }

    fn template(
        &mut self,
        t: &dyn TableLike,
        key: &str,
        use_: Use,
        required: bool,
        max: usize,
    ) -> Option<Template> {
        let Some(it) = t.get(key) else {
            if required {
                self.c.at(
                    self.span.clone(),
                    format!("`{key}` is missing (a text; ${{…}} placeholders allowed)"),
                );
            }
            return None;
        };
        let Some(s) = it.as_str() else {
            self.c.at(it.span(), format!("`{key}` is a text"));
            return None;
        };
        let pos = crate::map::spec::position(self.c.text, it.span().map_or(0, |s| s.start));
        let parsed = match parse_template(s) {
            Ok(p) => p,
            Err(e) => {
                self.c.at(it.span(), format!("`{key}`: {e}"));
                return None;
            }
        };
        let mut ok = true;
        for p in &parsed.0 {
            let Part::Var(v) = p else { continue };
            match v {
                Var::Reason if use_ == Use::Delivered => {
                    self.c.at(
                        it.span(),
                        format!("`{key}`: ${{reason}} is only known in [writeback.dead]"),
                    );
                    ok = false;
                }
                Var::Captured(name) => self.refs.push((name.clone(), pos)),
                Var::Document(field) if !self.document_fields.iter().any(|f| f == field) => {
                    self.c.at(
                        it.span(),
                        format!(
                            "`{key}`: ${{document.{field}}} is not a field of [document] (fields: {})",
                            self.document_fields.join(", ")
                        ),
                    );
                    ok = false;
                }
                _ => {}
            }
        }
        if parsed.literal_chars() > max {
            self.c.at(
                it.span(),
                format!("`{key}` is longer than WeCom's limit of {max} characters"),
            );
            ok = false;
        }
        ok.then_some(parsed)
    }
}

/// Parses `…${name}…`.
fn parse_template(s: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("${") {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_owned()));
        }
        let after = &rest[open + 2..];
        let close = after
            .find('}')
            .ok_or_else(|| "`${` is not closed by `}`".to_owned())?;
        let name = after[..close].trim();
        let var = match name {
            "sp_no" => Var::SpNo,
            "applicant" => Var::Applicant,
            "mapping" => Var::Mapping,
            "connector" => Var::Connector,
            "action" => Var::Action,
            "reason" => Var::Reason,
            _ => match name.split_once('.') {
                Some(("captured", n)) if is_name(n) => Var::Captured(n.to_owned()),
                Some(("document", n)) if is_name(n) => Var::Document(n.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown placeholder `${{{name}}}`; use sp_no, applicant, mapping, connector, \
                         action, reason, captured.<name> or document.<field>"
                    ));
                }
            },
        };
        parts.push(Part::Var(var));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_owned()));
    }
    Ok(Template(parts))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Every `${captured.<name>}` of `wb` that `connector` does not capture, as diagnostics.
pub fn check_captures(
    wb: &WritebackSpec,
    connector: &crate::deliver::ConnectorSpec,
    file: &std::path::Path,
) -> Vec<crate::catalog::Diagnostic> {
    let mut known: Vec<&str> = connector.capture.iter().map(|(n, _)| n.as_str()).collect();
    if connector.vendor.is_some() {
        // Vendor connectors capture the target's id and number of every saved document.
        known.extend(crate::deliver::vendor::client::CAPTURED);
    }
    wb.captured_refs
        .iter()
        .filter(|(name, _)| !known.contains(&name.as_str()))
        .map(|(name, (line, col))| crate::catalog::Diagnostic {
            file: file.to_path_buf(),
            line: *line,
            col: *col,
            message: format!(
                "${{captured.{name}}}: connector `{}` captures no `{name}` (its [capture]: {})",
                connector.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        })
        .collect()
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
