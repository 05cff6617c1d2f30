//! Loading mappings: diagnostics with file:line:col, match rules, the connector check.

use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let (m, c) = (d.path().join("mappings"), d.path().join("connectors"));
    write(
        &c,
        "finance.toml",
        "kind = \"http\"\nurl = \"http://finance.local/vouchers\"\n",
    );
    write(&c, "crm.toml", "kind = \"http\"\nurl = \"env:CRM_URL\"\n");
    (d, m, c)
}

#[test]
fn the_shipped_catalog_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cat = load(&root.join("mappings"), &root.join("connectors"))
        .unwrap_or_else(|e| panic!("{}", Diagnostic::join(&e, "\n")));
    assert!(!cat.mappings.is_empty());
}

#[test]
fn routes_by_template_action_and_event() {
    let (_d, m, c) = dirs();
    write(
        &m,
        "voucher.toml",
        "connector = \"finance\"\n[match]\nevent = \"approval\"\ntemplate_names = [\"费用报销\"]\nactions = [\"approved\", \"revoked\"]\n",
    );
    write(
        &m,
        "purchase.toml",
        "connector = \"finance\"\n[match]\nevent = \"approval\"\ntemplate_ids = [\"TPL-PO\"]\n",
    );
    write(
        &m,
        "customers.toml",
        "connector = \"crm\"\n[match]\nevent = \"external_contact\"\nchange_types = [\"add_external_contact\"]\n",
    );
    let cat = load(&m, &c).unwrap();
    let names = |i: RouteInput| {
        cat.routes(&i)
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(RouteInput::Approval {
            app: "a",
            template_id: "X",
            template_name: "费用报销",
            action: Action::Revoked
        }),
        ["voucher"]
    );
    assert_eq!(
        names(RouteInput::Approval {
            app: "a",
            template_id: "TPL-PO",
            template_name: "采购",
            action: Action::Approved
        }),
        ["purchase"]
    );
    assert!(
        names(RouteInput::Approval {
            app: "a",
            template_id: "TPL-PO",
            template_name: "采购",
            action: Action::Revoked
        })
        .is_empty()
    );
    assert!(
        names(RouteInput::Approval {
            app: "a",
            template_id: "?",
            template_name: "请假",
            action: Action::Approved
        })
        .is_empty()
    );
    assert_eq!(
        names(RouteInput::ExternalContact {
            app: "a",
            change_type: "add_external_contact"
        }),
        ["customers"]
    );
    assert!(
        names(RouteInput::ExternalContact {
            app: "a",
            change_type: "del_follow_user"
        })
        .is_empty()
    );
    assert!(
        names(RouteInput::Contact {
            app: "a",
            change_type: "create_user"
        })
        .is_empty()
    );
}

#[test]
fn every_problem_is_reported_with_file_line_and_column() {
    let (_d, m, c) = dirs();
    write(&c, "bad.toml", "kind = \"ftp\"\n");
    write(
        &m,
        "a.toml",
        "connector = \"nowhere\"\n[match]\nevent = \"approval\"\n",
    );
    write(
        &m,
        "b.toml",
        "connector = \"finance\"\n[match]\nevent = \"leave\"\n",
    );
    write(
        &m,
        "c.toml",
        "connector = \"finance\"\n[match]\nevent = \"approval\"\ntemplate_ids = [\"T\"]\nactions = [\"paid\"]\n",
    );
    let errors = load(&m, &c).unwrap_err();
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let text = all.join("\n");
    assert!(
        text.contains("bad.toml:1:8: unknown variant `ftp`, expected one of `http`, `kingdee`"),
        "{text}"
    );
    assert!(
        text.contains("a.toml:1:13: connector `nowhere` is not defined"),
        "{text}"
    );
    assert!(
        text.contains("a.toml:2:1: an approval mapping must name its templates"),
        "{text}"
    );
    assert!(text.contains("b.toml:3:9:"), "{text}");
    assert!(text.contains("c.toml:5:"), "{text}");
    assert_eq!(errors.len(), 5, "{text}");
}

#[test]
fn a_missing_folder_is_an_error_and_an_empty_one_is_allowed() {
    let d = tempfile::tempdir().unwrap();
    let (m, c) = (d.path().join("mappings"), d.path().join("connectors"));
    let errors = load(&m, &c).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.message.contains("folder does not exist"))
    );
    assert_eq!(errors[0].file, c);
    assert_eq!(errors[1].file, m);
    std::fs::create_dir_all(&m).unwrap();
    std::fs::create_dir_all(&c).unwrap();
    let cat = load(&m, &c).unwrap();
    assert!(cat.mappings.is_empty() && cat.connectors.is_empty());
}
