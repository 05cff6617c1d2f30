//! The shipped templates (`templates/<name>/`): each loads as a catalog of its own, its
//! mapping cases pass, and `wecom-bridge init --template` copies it into place and refuses
//! to overwrite.

use std::path::Path;

use wecom_bridge::catalog::Diagnostic;

use crate::support::*;

#[test]
fn every_template_loads_and_passes_its_cases() {
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let names = wecom_bridge::cli::init::names();
    assert!(names.len() >= 4, "{names:?}");
    let mut ran = 0;
    for name in names {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates")
            .join(name);
        let cat = wecom_bridge::catalog::load(&root.join("mappings"), &root.join("connectors"))
            .unwrap_or_else(|e| panic!("{name}: {}", Diagnostic::join(&e, "\n")));
        assert_eq!(cat.connectors.len(), 1, "{name}");
        assert!(
            cat.connectors[0].vendor.is_some(),
            "{name} is a vendor connector"
        );
        assert_eq!(cat.mappings.len(), 1, "{name}");
        for m in &cat.mappings {
            let dir = wecom_bridge::map::cases::cases_dir(&m.file);
            let results = wecom_bridge::map::cases::run_cases(&m.compiled, &dir, &zone).unwrap();
            assert!(
                results.len() >= 2,
                "{name}: {} has too few cases",
                dir.display()
            );
            for r in results {
                ran += 1;
                assert!(
                    r.failure.is_none(),
                    "{name} {}: {:?}",
                    r.input.display(),
                    r.failure
                );
            }
        }
    }
    assert!(ran >= 14, "only {ran} cases ran");
}

#[test]
fn init_copies_a_template_once_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    // The catalog folders are the defaults, next to the configuration file.
    let cfg = config_file(dir.path(), &config_toml(dir.path(), &[TestApp::new("tpl")]));
    let (ok, out, err) = run_config(
        &cfg,
        &["init", "--template", "kingdee-expense"],
        dir.path(),
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(
        dir.path().join("connectors/kingdee.toml").is_file(),
        "{out}"
    );
    assert!(
        dir.path().join("mappings/expense-kingdee.toml").is_file(),
        "{out}"
    );
    assert!(
        dir.path()
            .join("mappings/tables/kingdee-accounts.csv")
            .is_file(),
        "{out}"
    );
    assert!(
        dir.path()
            .join("mappings/expense-kingdee.cases/basic-morning.expected.json")
            .is_file()
    );
    let (ok, out, _) = run_config(&cfg, &["mapping", "test", "--all"], dir.path(), &[]);
    assert!(ok, "{out}");

    // `check` resolves the copied connector's secrets: missing or malformed ones fail it.
    let (ok, out, err) = run_config(&cfg, &["check"], dir.path(), &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("connector `kingdee`") && err.contains("KINGDEE_URL"),
        "{err}"
    );
    let env = |app_id: &'static str| {
        [
            ("KINGDEE_URL", "http://127.0.0.1:9/k3cloud".to_owned()),
            ("KINGDEE_APP_ID", app_id.to_owned()),
            (
                "KINGDEE_APP_SECRET",
                "0123456789abcdef0123456789abcdef".to_owned(),
            ),
        ]
    };
    let bad = env("224248_not-32-characters");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out, err) = run_config(&cfg, &["check"], dir.path(), &bad);
    assert!(!ok, "{out}");
    assert!(err.contains("kingdee.app_id: Kingdee AppID"), "{err}");
    let good = env("224248_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out, err) = run_config(&cfg, &["check"], dir.path(), &good);
    assert!(ok, "{out}{err}");

    std::fs::write(
        dir.path().join("connectors/kingdee.toml"),
        "# edited by hand\n",
    )
    .unwrap();
    let (ok, out, err) = run_config(
        &cfg,
        &["init", "--template", "kingdee-expense"],
        dir.path(),
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("exist already") && err.contains("kingdee.toml"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("connectors/kingdee.toml")).unwrap(),
        "# edited by hand\n"
    );
    let (ok, _, err) = run_config(
        &cfg,
        &["init", "--template", "sap-expense"],
        dir.path(),
        &[],
    );
    assert!(
        !ok && err.contains("known: ") && err.contains("kingdee-expense"),
        "{err}"
    );
}
