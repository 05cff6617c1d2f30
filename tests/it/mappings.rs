//! The shipped mappings against their cases, and `wecom-bridge mapping test|bench` and `check`
//! as an IT person would use them.

use std::path::{Path, PathBuf};

use wecom_bridge::catalog::Diagnostic;

use crate::support::{copy_dir, run_config};

/// The shipped configuration, relative to [`root`].
const SHIPPED: &str = "config/bridge.toml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// `wecom-bridge --config <config> <args…>` run from the repository root.
fn cli(config: impl AsRef<Path>, args: &[&str]) -> (bool, String, String) {
    run_config(config.as_ref(), args, &root(), &[])
}

fn zone() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()
}

/// The shipped config with the catalog pointing at `mappings` (absolute connectors).
fn config_with_mappings(dir: &Path, mappings: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(root().join("config/bridge.toml")).unwrap();
    let text = shipped
        .replace(
            "mappings_dir = \"../mappings\"",
            &format!("mappings_dir = {:?}", mappings.display().to_string()),
        )
        .replace(
            "connectors_dir = \"../connectors\"",
            &format!(
                "connectors_dir = {:?}",
                root().join("connectors").display().to_string()
            ),
        );
    assert_ne!(
        text, shipped,
        "the shipped config has a [catalog] section to redirect"
    );
    let path = dir.join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_shipped_mapping_loads_and_passes_its_cases() {
    let cat = wecom_bridge::catalog::load(&root().join("mappings"), &root().join("connectors"))
        .unwrap_or_else(|e| panic!("{}", Diagnostic::join(&e, "\n")));
    assert!(
        cat.mappings.len() >= 9,
        "{:?}",
        cat.mappings.iter().map(|m| &m.name).collect::<Vec<_>>()
    );
    let mut ran = 0;
    let mut failures = Vec::new();
    for m in &cat.mappings {
        let dir = wecom_bridge::map::cases::cases_dir(&m.file);
        assert!(
            dir.is_dir(),
            "mapping {} has no cases folder {}",
            m.name,
            dir.display()
        );
        let results = wecom_bridge::map::cases::run_cases(&m.compiled, &dir, &zone()).unwrap();
        assert!(!results.is_empty(), "{} has no cases", dir.display());
        for r in results {
            ran += 1;
            if let Some(why) = r.failure {
                failures.push(format!("{} {}: {why}", m.name, r.input.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 28, "only {ran} cases ran");
}

#[test]
fn mapping_test_prints_the_document_of_a_raw_getapprovaldetail_response() {
    let test_expense_case = |case: &str| {
        let sample = format!("mappings/expense-voucher.cases/{case}");
        cli(
            SHIPPED,
            &["mapping", "test", "expense-voucher", "--sample", &sample],
        )
    };
    let (ok, out, err) = test_expense_case("basic-morning.json");
    assert!(ok, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            root().join("mappings/expense-voucher.cases/basic-morning.expected.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(doc, want);

    let (ok, out, err) = test_expense_case("total-mismatch.json");
    assert!(!ok, "{out}");
    assert!(
        err.contains("refused: total_mismatch") && err.contains("assert[0]"),
        "{err}"
    );
}

#[test]
fn mapping_test_samples_prints_one_json_line_per_input_and_a_summary() {
    let (ok, out, err) = cli(
        SHIPPED,
        &[
            "mapping",
            "test",
            "expense-voucher",
            "--samples",
            "mappings/expense-voucher.cases",
        ],
    );
    assert!(ok, "{out}{err}");
    let lines = crate::support::json_lines(&out);
    let inputs =
        wecom_bridge::map::cases::inputs(&root().join("mappings/expense-voucher.cases")).unwrap();
    assert_eq!(lines.len(), inputs.len());
    let refused: Vec<_> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(refused.len(), 4, "{out}");
    assert!(
        refused.iter().any(|l| l["input"]
            .as_str()
            .unwrap()
            .ends_with("unknown-category.json")
            && l["error"]
                .as_str()
                .unwrap()
                .starts_with("unknown_category: ")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.get("document").is_some())
            .all(|l| l["document"]["document_no"].is_string())
    );
    assert!(
        err.contains(&format!(
            "{} input(s), {} document(s), 4 refused",
            inputs.len(),
            inputs.len() - 4
        )),
        "{err}"
    );
}

#[test]
fn mapping_test_all_passes_and_shows_a_diff_on_a_mismatch() {
    let (ok, out, err) = cli(SHIPPED, &["mapping", "test", "--all"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains(" passed, 0 failed"), "{err}");

    let t = tempfile::tempdir().unwrap();
    let mappings = t.path().join("mappings");
    copy_dir(&root().join("mappings"), &mappings);
    let expected = mappings.join("expense-voucher.cases/basic-morning.expected.json");
    let text =
        std::fs::read_to_string(&expected)
            .unwrap()
            .replacen("\"6602.01\"", "\"6602.99\"", 1);
    std::fs::write(&expected, text).unwrap();
    let cfg = config_with_mappings(t.path(), &mappings);
    let (ok, out, err) = cli(&cfg, &["mapping", "test", "--all"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL  expense-voucher") && out.contains("basic-morning.json"),
        "{out}"
    );
    assert!(
        out.contains("$.lines[0].account: expected \"6602.99\", got \"6602.01\""),
        "{out}"
    );
    assert!(err.contains("1 failed"), "{err}");
}

#[test]
fn mapping_bench_reports_documents_per_second() {
    let (ok, out, err) = cli(
        SHIPPED,
        &[
            "mapping",
            "bench",
            "expense-voucher",
            "--samples",
            "samples/approvals",
            "--seconds",
            "0.3",
        ],
    );
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["samples"], 20);
    assert!(v["docs_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert!(err.contains("documents/s"), "{err}");
}

#[test]
fn check_refuses_a_broken_mapping_with_every_diagnostic() {
    let t = tempfile::tempdir().unwrap();
    let mappings = t.path().join("mappings");
    copy_dir(&root().join("mappings"), &mappings);
    std::fs::write(
        mappings.join("broken.toml"),
        "connector = \"finance\"\n[match]\nevent = \"approval\"\ntemplate_names = [\"付款申请\"]\nactions = [\"revoked\"]\n[document]\na = \"$.form_by_title['x'].amout\"\nb = \"=dec_ad('1', '2')\"\nc = \"=money()\"\n",
    )
    .unwrap();
    std::fs::remove_file(mappings.join("tables/leave-types.toml")).unwrap();
    let cfg = config_with_mappings(t.path(), &mappings);
    let (ok, out, err) = cli(&cfg, &["check"]);
    assert!(!ok, "{out}");
    for needle in [
        "broken.toml:7:26: path",
        "did you mean `amount`?",
        "broken.toml:8:7: unknown function `dec_ad`",
        "broken.toml:9:7: `money` takes 1 argument(s), 0 given",
        "leave-hr.toml:12:1: table `leave_types`: cannot read",
    ] {
        assert!(err.contains(needle), "missing {needle}:\n{err}");
    }
}
