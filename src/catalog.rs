//! Catalog: loads `mappings/` and `connectors/` and validates them purely, collecting every
//! diagnostic with `file:line:col` before anything runs.
//!
//! This is the routing half of the mapping format: which events a mapping matches (`[match]`)
//! and which connector it feeds. The document-building half (`[document]`, `[let]`,
//! `[tables]`, `[[assert]]`, `key`, `[match] condition`) is compiled by the mapping engine
//! ([`crate::map::compile`]) at load, and its diagnostics join these. Connector
//! files are parsed and validated by [`crate::deliver::spec`]; the catalog only collects them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::map::CompiledMapping;

use serde::Deserialize;
use toml::Spanned;

/// A problem in a catalog file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 if unknown).
    pub line: usize,
    /// 1-based column (0 if unknown).
    pub col: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl Diagnostic {
    /// `diagnostics` one after another, `separator` between them (e.g. a new, indented line).
    #[must_use]
    pub fn join(diagnostics: &[Diagnostic], separator: &str) -> String {
        diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(separator)
    }
}

/// Which family of events a mapping matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFamily {
    /// `sys_approval_change` (approvals in the 审批 app).
    Approval,
    /// `change_contact` (directory changes, for HR).
    Contact,
    /// `change_external_contact` (customers, for CRM).
    ExternalContact,
}

/// What happened to an approval that a route can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The form reached "approved" (SpStatus 2) for the first time.
    Approved,
    /// The form was revoked after approval (SpStatus 6) after we forwarded it.
    Revoked,
    /// A contact or external-contact change.
    Changed,
}

impl Action {
    /// Lower-case name, as used in idempotency keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approved => "approved",
            Action::Revoked => "revoked",
            Action::Changed => "changed",
        }
    }
}

/// The `[match]` block of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRule {
    /// Event family.
    pub event: EventFamily,
    /// Approval template ids (any of).
    pub template_ids: Vec<String>,
    /// Approval template names (any of), e.g. `费用报销`.
    pub template_names: Vec<String>,
    /// Approval actions (default: approved).
    pub actions: Vec<Action>,
    /// Contact/external-contact change types (empty = all).
    pub change_types: Vec<String>,
    /// Apps (empty = all).
    pub apps: Vec<String>,
}

/// A loaded mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Unique name (defaults to the file stem).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Connector it feeds.
    pub connector: String,
    /// Which events it takes.
    pub rule: MatchRule,
    /// The `[document]` table as written.
    pub document: Option<toml::Table>,
    /// The compiled mapping (document, key, condition), ready to run.
    pub compiled: Arc<CompiledMapping>,
}

/// What an event looks like to the route table.
#[derive(Debug, Clone, Copy)]
pub enum RouteInput<'a> {
    /// An approval reached an action.
    Approval {
        /// App name.
        app: &'a str,
        /// Template id.
        template_id: &'a str,
        /// Template name.
        template_name: &'a str,
        /// Approved or revoked.
        action: Action,
    },
    /// A directory change.
    Contact {
        /// App name.
        app: &'a str,
        /// `create_user`, `update_user`, …
        change_type: &'a str,
    },
    /// A customer change.
    ExternalContact {
        /// App name.
        app: &'a str,
        /// `add_external_contact`, …
        change_type: &'a str,
    },
}

/// Mappings and connectors, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// All mappings, sorted by name.
    pub mappings: Vec<Mapping>,
    /// All connectors, sorted by name (parsed and validated by [`crate::deliver::spec`]).
    pub connectors: Vec<crate::deliver::ConnectorSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "key, let, tables, assert, writeback and cases are named only so that \
              deny_unknown_fields accepts them; `crate::map::compile` reads them"
)]
struct MappingFile {
    name: Option<Spanned<String>>,
    connector: Spanned<String>,
    #[serde(rename = "match")]
    matches: Spanned<MatchFile>,
    document: Option<toml::Table>,
    // The rest of the mapping language is read by `crate::map::compile`.
    key: Option<toml::Value>,
    #[serde(rename = "let")]
    lets: Option<toml::Value>,
    tables: Option<toml::Value>,
    assert: Option<toml::Value>,
    /// Notifications (read by `crate::map::compile` through `crate::writeback::spec`).
    writeback: Option<toml::Value>,
    /// Test cases beside the mapping (used by `mapping test`).
    #[serde(default)]
    cases: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchFile {
    event: EventFamily,
    #[serde(default)]
    template_ids: Vec<String>,
    #[serde(default)]
    template_names: Vec<String>,
    #[serde(default)]
    actions: Option<Spanned<Vec<Action>>>,
    #[serde(default)]
    change_types: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
    /// A CEL condition, compiled by the mapping engine.
    #[serde(default)]
    #[allow(dead_code)]
    condition: Option<String>,
}

// 1-based line and column of a byte offset in `text`: the mapping language's function.
pub(crate) use crate::map::spec::position;

/// A diagnostic at a span of `text` (line 0 when there is no span).
pub(crate) fn diag(
    file: &Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    message: impl Into<String>,
) -> Diagnostic {
    let (line, col) = span.map_or((0, 0), |s| position(text, s.start));
    Diagnostic {
        file: file.to_path_buf(),
        line,
        col,
        message: message.into(),
    }
}

fn toml_files(dir: &Path, out: &mut Vec<Diagnostic>) -> Vec<(PathBuf, String)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A folder that is not there is a mistake (a wrong working directory, a
            // container without its mounts), never "nothing configured": every approval
            // would be acknowledged as "no mapping".
            out.push(Diagnostic {
                file: dir.to_path_buf(),
                line: 0,
                col: 0,
                message: "folder does not exist; create it (an empty folder means none configured) or point catalog.mappings_dir / catalog.connectors_dir at it (relative paths are relative to the configuration file)".into(),
            });
            return Vec::new();
        }
        Err(e) => {
            out.push(Diagnostic {
                file: dir.to_path_buf(),
                line: 0,
                col: 0,
                message: format!("cannot read directory: {e}"),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        tracing::warn!(
            folder = %dir.display(),
            "catalog folder has no .toml files: nothing will be forwarded from it; add files or check the path"
        );
    }
    files
        .into_iter()
        .filter_map(|p| match std::fs::read_to_string(&p) {
            Ok(t) => Some((p, t)),
            Err(e) => {
                out.push(Diagnostic {
                    file: p,
                    line: 0,
                    col: 0,
                    message: format!("cannot read: {e}"),
                });
                None
            }
        })
        .collect()
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// [`load_in_zone`] with the default corp zone, `Asia/Shanghai`.
pub fn load(mappings_dir: &Path, connectors_dir: &Path) -> Result<Catalog, Vec<Diagnostic>> {
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap_or(jiff::tz::TimeZone::UTC);
    load_in_zone(mappings_dir, connectors_dir, &zone)
}

/// Loads and validates `mappings_dir/*.toml` and `connectors_dir/*.toml`, compiling every
/// mapping with `zone` (the corp's, `wecom.time_zone`) as the default for date functions.
/// Returns every problem at once. A missing folder is an error; an empty one is allowed (with
/// a warning).
pub fn load_in_zone(
    mappings_dir: &Path,
    connectors_dir: &Path,
    zone: &jiff::tz::TimeZone,
) -> Result<Catalog, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut catalog = Catalog::default();

    for (file, text) in toml_files(connectors_dir, &mut errors) {
        match crate::deliver::spec::parse(&file, &text, &stem(&file)) {
            Ok(spec) => {
                if catalog.connectors.iter().any(|c| c.name == spec.name) {
                    errors.push(diag(
                        &file,
                        &text,
                        None,
                        format!("connector name `{}` is used twice", spec.name),
                    ));
                }
                catalog.connectors.push(spec);
            }
            Err(d) => errors.extend(d),
        }
    }

    for (file, text) in toml_files(mappings_dir, &mut errors) {
        let m: MappingFile = match toml::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                errors.push(diag(&file, &text, e.span(), e.message().to_string()));
                continue;
            }
        };
        let connector = m.connector.get_ref().clone();
        if !catalog.connectors.iter().any(|c| c.name == connector) {
            let known: Vec<_> = catalog.connectors.iter().map(|c| c.name.as_str()).collect();
            errors.push(diag(
                &file,
                &text,
                Some(m.connector.span()),
                format!(
                    "connector `{connector}` is not defined in {} (known: {})",
                    connectors_dir.display(),
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        let match_span = m.matches.span();
        let mf = m.matches.into_inner();
        let actions_span = mf.actions.as_ref().map(|a| a.span());
        let actions = mf.actions.map(Spanned::into_inner);
        let actions = match mf.event {
            EventFamily::Approval => {
                if mf.template_ids.is_empty() && mf.template_names.is_empty() {
                    errors.push(diag(&file, &text, Some(match_span.clone()),
                        "an approval mapping must name its templates (template_ids or template_names), so that no other form type reaches this target by accident"));
                }
                let a = actions.unwrap_or_else(|| vec![Action::Approved]);
                if a.is_empty() || a.contains(&Action::Changed) {
                    errors.push(diag(
                        &file,
                        &text,
                        actions_span,
                        "approval actions are `approved` and/or `revoked`",
                    ));
                }
                a
            }
            EventFamily::Contact | EventFamily::ExternalContact => {
                if actions
                    .as_ref()
                    .is_some_and(|a| a.iter().any(|x| *x != Action::Changed))
                {
                    errors.push(diag(
                        &file,
                        &text,
                        actions_span,
                        "contact mappings take no approval actions; use change_types",
                    ));
                }
                vec![Action::Changed]
            }
        };
        let name = m
            .name
            .map(Spanned::into_inner)
            .unwrap_or_else(|| stem(&file));
        if catalog.mappings.iter().any(|x| x.name == name) {
            errors.push(diag(
                &file,
                &text,
                None,
                format!("mapping name `{name}` is used twice"),
            ));
        }
        let compiled = match crate::map::compile(&crate::map::MappingSource {
            name: &name,
            file: &file,
            text: &text,
            event: mf.event,
            base_dir: mappings_dir,
            zone,
        }) {
            Ok(c) => Arc::new(c),
            Err(d) => {
                errors.extend(d);
                continue;
            }
        };
        if let (Some(wb), Some(spec)) = (
            compiled.writeback(),
            catalog.connectors.iter().find(|c| c.name == connector),
        ) {
            errors.extend(crate::writeback::spec::check_captures(wb, spec, &file));
        }
        catalog.mappings.push(Mapping {
            compiled,
            name,
            file,
            connector,
            rule: MatchRule {
                event: mf.event,
                template_ids: mf.template_ids,
                template_names: mf.template_names,
                actions,
                change_types: mf.change_types,
                apps: mf.apps,
            },
            document: m.document,
        });
    }
    errors.extend(crate::map::overlaps(&catalog.mappings));
    if errors.is_empty() {
        catalog.mappings.sort_by(|a, b| a.name.cmp(&b.name));
        catalog.connectors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(catalog)
    } else {
        Err(errors)
    }
}

impl MatchRule {
    /// Whether this rule takes the event.
    pub fn matches(&self, input: &RouteInput<'_>) -> bool {
        let app_ok = |app: &str| self.apps.is_empty() || self.apps.iter().any(|a| a == app);
        match *input {
            RouteInput::Approval {
                app,
                template_id,
                template_name,
                action,
            } => {
                self.event == EventFamily::Approval
                    && app_ok(app)
                    && self.actions.contains(&action)
                    && (self.template_ids.iter().any(|t| t == template_id)
                        || self.template_names.iter().any(|t| t == template_name))
            }
            RouteInput::Contact { app, change_type } => {
                self.event == EventFamily::Contact
                    && app_ok(app)
                    && (self.change_types.is_empty()
                        || self.change_types.iter().any(|c| c == change_type))
            }
            RouteInput::ExternalContact { app, change_type } => {
                self.event == EventFamily::ExternalContact
                    && app_ok(app)
                    && (self.change_types.is_empty()
                        || self.change_types.iter().any(|c| c == change_type))
            }
        }
    }
}

impl Catalog {
    /// The mappings that take this event, in name order.
    pub fn routes<'a>(&'a self, input: &RouteInput<'_>) -> Vec<&'a Mapping> {
        self.mappings
            .iter()
            .filter(|m| m.rule.matches(input))
            .collect()
    }
}

#[cfg(test)]
mod tests;
