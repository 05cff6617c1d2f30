//! `init --template <name>`: copies a shipped starting point (a connector file, a mapping, its
//! code tables and test cases) from `templates/<name>/` into the configured `connectors/` and
//! `mappings/` folders. The templates are compiled into the binary, so `init` works wherever
//! the binary runs. Refuses to overwrite anything: if one file exists, nothing is copied.
//!
//! Owns only the copy; what the files mean is in `docs/connectors.md` and `docs/mappings.md`.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::config::Config;

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The template to copy (`kingdee-expense`, `kingdee-reimbursement`, `yonbip-expense`,
    /// `u8-purchase`, …); without it, the list of templates.
    #[arg(long)]
    pub template: Option<String>,
}

/// One shipped template file: its path under `templates/` and its text.
macro_rules! file {
    ($path:literal) => {
        (
            $path,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/", $path)),
        )
    };
}

/// Every file under `templates/` (a test keeps this list equal to the folder).
pub const FILES: &[(&str, &str)] = &[
    file!("beisen-leave/connectors/beisen.toml"),
    file!("beisen-leave/mappings/leave-beisen.cases/sick-leave-hours.expected.json"),
    file!("beisen-leave/mappings/leave-beisen.cases/sick-leave-hours.json"),
    file!("beisen-leave/mappings/leave-beisen.cases/unknown-employee.json"),
    file!("beisen-leave/mappings/leave-beisen.cases/unknown-employee.refused"),
    file!("beisen-leave/mappings/leave-beisen.toml"),
    file!("beisen-leave/mappings/tables/beisen-staff.toml"),
    file!("fxiaoke-customer/connectors/fxiaoke.toml"),
    file!("fxiaoke-customer/mappings/customer-fxiaoke.cases/not-fetched.json"),
    file!("fxiaoke-customer/mappings/customer-fxiaoke.cases/not-fetched.refused"),
    file!("fxiaoke-customer/mappings/customer-fxiaoke.cases/wechat-user.expected.json"),
    file!("fxiaoke-customer/mappings/customer-fxiaoke.cases/wechat-user.json"),
    file!("fxiaoke-customer/mappings/customer-fxiaoke.cases/wecom-user.expected.json"),
    file!("fxiaoke-customer/mappings/customer-fxiaoke.cases/wecom-user.json"),
    file!("fxiaoke-customer/mappings/customer-fxiaoke.toml"),
    file!("kingdee-expense/connectors/kingdee.toml"),
    file!("kingdee-expense/mappings/expense-kingdee.cases/basic-morning.expected.json"),
    file!("kingdee-expense/mappings/expense-kingdee.cases/basic-morning.json"),
    file!("kingdee-expense/mappings/expense-kingdee.cases/missing-total.json"),
    file!("kingdee-expense/mappings/expense-kingdee.cases/missing-total.refused"),
    file!("kingdee-expense/mappings/expense-kingdee.cases/total-mismatch.json"),
    file!("kingdee-expense/mappings/expense-kingdee.cases/total-mismatch.refused"),
    file!("kingdee-expense/mappings/expense-kingdee.cases/unknown-category.json"),
    file!("kingdee-expense/mappings/expense-kingdee.cases/unknown-category.refused"),
    file!("kingdee-expense/mappings/expense-kingdee.toml"),
    file!("kingdee-expense/mappings/tables/kingdee-accounts.csv"),
    file!("kingdee-reimbursement/connectors/kingdee.toml"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.cases/basic-morning.expected.json"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.cases/basic-morning.json"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.cases/missing-total.json"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.cases/missing-total.refused"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.cases/total-mismatch.json"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.cases/total-mismatch.refused"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.cases/unknown-category.json"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.cases/unknown-category.refused"),
    file!("kingdee-reimbursement/mappings/reimbursement-kingdee.toml"),
    file!("kingdee-reimbursement/mappings/tables/kingdee-expense-items.csv"),
    file!("salesforce-customer/connectors/salesforce.toml"),
    file!("salesforce-customer/mappings/customer-salesforce.cases/not-fetched.json"),
    file!("salesforce-customer/mappings/customer-salesforce.cases/not-fetched.refused"),
    file!("salesforce-customer/mappings/customer-salesforce.cases/wechat-user.expected.json"),
    file!("salesforce-customer/mappings/customer-salesforce.cases/wechat-user.json"),
    file!("salesforce-customer/mappings/customer-salesforce.cases/wecom-user.expected.json"),
    file!("salesforce-customer/mappings/customer-salesforce.cases/wecom-user.json"),
    file!("salesforce-customer/mappings/customer-salesforce.toml"),
    file!("u8-purchase/connectors/u8.toml"),
    file!("u8-purchase/mappings/purchase-u8.cases/three-items.expected.json"),
    file!("u8-purchase/mappings/purchase-u8.cases/three-items.json"),
    file!("u8-purchase/mappings/purchase-u8.cases/total-mismatch.json"),
    file!("u8-purchase/mappings/purchase-u8.cases/total-mismatch.refused"),
    file!("u8-purchase/mappings/purchase-u8.toml"),
    file!("yonbip-expense/connectors/yonbip.toml"),
    file!("yonbip-expense/mappings/expense-yonbip.cases/basic-morning.expected.json"),
    file!("yonbip-expense/mappings/expense-yonbip.cases/basic-morning.json"),
    file!("yonbip-expense/mappings/expense-yonbip.cases/missing-total.json"),
    file!("yonbip-expense/mappings/expense-yonbip.cases/missing-total.refused"),
    file!("yonbip-expense/mappings/expense-yonbip.cases/total-mismatch.json"),
    file!("yonbip-expense/mappings/expense-yonbip.cases/total-mismatch.refused"),
    file!("yonbip-expense/mappings/expense-yonbip.cases/unknown-category.json"),
    file!("yonbip-expense/mappings/expense-yonbip.cases/unknown-category.refused"),
    file!("yonbip-expense/mappings/expense-yonbip.toml"),
    file!("yonbip-expense/mappings/tables/yonbip-accounts.csv"),
];

/// The names of the shipped templates, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FILES
        .iter()
        .filter_map(|(path, _)| path.split('/').next())
        .collect();
    names.dedup();
    names
}

/// Where each file of `template` goes: `connectors/…` under `connectors_dir`, `mappings/…`
/// under `mappings_dir`; with its text.
pub fn plan(
    template: &str,
    connectors_dir: &Path,
    mappings_dir: &Path,
) -> anyhow::Result<Vec<(PathBuf, &'static str)>> {
    let prefix = format!("{template}/");
    let mut out = Vec::new();
    for (path, text) in FILES {
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let to = if let Some(r) = rest.strip_prefix("connectors/") {
            connectors_dir.join(r)
        } else if let Some(r) = rest.strip_prefix("mappings/") {
            mappings_dir.join(r)
        } else {
            bail!("template file {path} is neither under connectors/ nor mappings/")
        };
        out.push((to, *text));
    }
    if out.is_empty() {
        bail!("no template `{template}`; known: {}", names().join(", "));
    }
    Ok(out)
}

/// Copies `template` into the configured folders, refusing to overwrite; prints what it did.
pub fn run(config: &Config, args: &InitArgs) -> anyhow::Result<()> {
    let Some(template) = &args.template else {
        println!("templates (wecom-bridge init --template <name>):");
        for name in names() {
            println!("  {name}");
        }
        return Ok(());
    };
    let plan = plan(
        template,
        &config.catalog.connectors_dir,
        &config.catalog.mappings_dir,
    )?;
    let existing: Vec<String> = plan
        .iter()
        .filter(|(to, _)| to.exists())
        .map(|(to, _)| to.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "not copying template `{template}`: these files exist already (nothing was changed; move them away or edit them by hand):\n  {}",
            existing.join("\n  ")
        );
    }
    for (to, text) in &plan {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(to, text)?;
        println!("created {}", to.display());
    }
    println!(
        "next: fill in the values marked \"replace\" and the env:/file: secrets (docs/connectors.md), then `wecom-bridge mapping test --all` and `wecom-bridge check`"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                on_disk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }

    #[test]
    fn the_compiled_list_is_the_templates_folder() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut disk = Vec::new();
        on_disk(&base, &base, &mut disk);
        disk.sort();
        let mut listed: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, disk, "update FILES in src/cli/init.rs");
    }

    #[test]
    fn unknown_templates_name_the_known_ones() {
        let e = plan("sap-expense", Path::new("c"), Path::new("m")).unwrap_err();
        assert!(e.to_string().contains("kingdee-expense"), "{e}");
        let p = plan("kingdee-expense", Path::new("c"), Path::new("m")).unwrap();
        assert!(p.iter().any(|(to, _)| to == Path::new("c/kingdee.toml")));
        assert!(
            p.iter()
                .any(|(to, _)| to == Path::new("m/expense-kingdee.toml"))
        );
    }
}
