//! Test support: the catalog folders (`mappings/`, `connectors/`) a test lays out for a
//! bridge, from the shipped files or the templates, pointed at the stand-ins.

use std::path::Path;

use wecom_bridge::standins::finance::FinanceStandIn;
use wecom_bridge::standins::oauth::OAuthStandIn;

/// The repository root: the shipped `mappings/`, `connectors/` and `templates/`.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `[catalog]` section for the folders `mappings` and `connectors`.
pub fn catalog_section(mappings: &Path, connectors: &Path) -> String {
    format!(
        "[catalog]\nmappings_dir = \"{}\"\nconnectors_dir = \"{}\"\n",
        mappings.display(),
        connectors.display()
    )
}

/// Copies every file and folder below `from` into `to` (made if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// `text` with each `(from, to)` edit applied; every `from` must be in it (`what` names the
/// file when one is not).
pub fn edited<S: AsRef<str>>(text: &str, edits: &[(&str, S)], what: &str) -> String {
    edits.iter().fold(text.to_string(), |text, (from, to)| {
        assert!(text.contains(from), "{what} has no `{from}`");
        text.replace(from, to.as_ref())
    })
}

/// Writes `value` as the secret file `dir/<name>.secret` and answers its `file:` reference.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(format!("{name}.secret"));
    std::fs::write(&p, format!("{value}\n")).unwrap();
    format!("file:{}", p.display())
}

/// The shipped `connectors/finance.toml` pointed at the finance and OAuth stand-ins, its
/// client secret read from `secret` (a `file:` reference).
pub fn shipped_finance(finance: &FinanceStandIn, oauth: &OAuthStandIn, secret: &str) -> String {
    let text = std::fs::read_to_string(repo().join("connectors/finance.toml")).unwrap();
    edited(
        &text,
        &[
            ("env:FINANCE_VOUCHER_URL", finance.vouchers_url().as_str()),
            ("env:FINANCE_TOKEN_URL", oauth.token_url().as_str()),
            ("env:FINANCE_CLIENT_SECRET", secret),
        ],
        "finance.toml",
    )
}
