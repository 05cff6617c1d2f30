//! Paths that cannot go missing: relative catalog and store paths resolve against the
//! configuration file's folder, and a missing catalog folder fails `check` and start.

use crate::support::*;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let toml = config_toml(dir.path(), &[TestApp::new("paths")]).replace(
        &format!("path = \"{}\"", dir.path().join("bridge.redb").display()),
        "path = \"data/bridge.redb\"",
    ) + "[catalog]\nmappings_dir = \"mappings\"\nconnectors_dir = \"connectors\"\n";
    let config = config_file(dir.path(), &toml);
    finance_connector(dir.path());
    std::fs::write(
        dir.path().join("mappings/expense.toml"),
        "connector = \"finance\"\n[match]\nevent = \"approval\"\ntemplate_names = [\"费用报销\"]\n",
    )
    .unwrap();
    (dir, config)
}

#[test]
fn check_from_another_working_directory_finds_the_catalog_next_to_the_config() {
    let (dir, config) = setup();
    let elsewhere = tempfile::tempdir().unwrap();
    let (ok, out, err) = run_config(&config, &["check"], elsewhere.path(), &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("mapping     expense"), "{out}");
    let store = std::path::absolute(dir.path().join("data/bridge.redb")).unwrap();
    assert!(out.contains(&store.display().to_string()), "{out}");
}

#[test]
fn a_missing_catalog_folder_fails_check_and_serve() {
    let (dir, config) = setup();
    std::fs::remove_dir_all(dir.path().join("mappings")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (ok, out, err) = run_config(&config, &["check"], elsewhere.path(), &[]);
    assert!(!ok, "check passed without its mappings folder: {out}");
    assert!(err.contains("folder does not exist"), "{err}");
    assert!(err.contains("mappings"), "{err}");
    // start refuses too (in-process, so a wrong start cannot hang the test)
    let loaded = wecom_bridge::config::Config::load(&config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = rt.block_on(wecom_bridge::app::start(&loaded));
    let Err(err) = started else {
        panic!("the bridge started without its mappings folder");
    };
    assert!(err.to_string().contains("folder does not exist"), "{err}");

    // an empty folder is allowed
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    let (ok, out, err) = run_config(&config, &["check"], elsewhere.path(), &[]);
    assert!(ok, "{out}{err}");
}
