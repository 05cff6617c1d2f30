//! `demo --target kingdee`: the same sample claims through the real pipeline, delivered by the
//! `kingdee-expense` template (connector and mapping as `init` would copy them) to the Kingdee
//! K3Cloud stand-in, which verifies the signed headers as Kingdee's gateway does. The printout
//! shows each voucher as Kingdee received it (the `Save` request in Kingdee's shape) and the
//! bill number the bridge captured.
//!
//! Owns only this variant's set-up and printout; the driver pieces (sending callbacks, reading
//! the admin API, waiting to settle) are shared with the default demo ([`super::bridge`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::APP_SECRET;
use super::bridge::{Admin, Started, start_and_send};
use super::samples;
use crate::app::RunningBridge;
use crate::config::Config;
use crate::deliver::vendor::kingdee::{Credentials, Op};
use crate::standins::kingdee::{KingdeeStandIn, KingdeeState};
use crate::standins::wecom::FakeWeCom;

/// The template the demo delivers through, and its connector.
const TEMPLATE: &str = "kingdee-expense";
const CONNECTOR: &str = "kingdee";
/// The demo's Kingdee identity: the AppID of PROTOCOLS.md's signing vector; the AppSecret is
/// made up per run.
const APP_ID: &str = "224248_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY";
const ACCT_ID: &str = "62f1e4b0a1b2c3";

/// A running Kingdee demo.
#[derive(Debug)]
pub struct KingdeeDemo {
    /// The bridge.
    pub bridge: RunningBridge,
    /// The Kingdee stand-in: what arrived at the target.
    pub kingdee: KingdeeStandIn,
    /// WeCom's API stand-in.
    pub wecom: FakeWeCom,
    /// The sample claims as sent: (SpNo, claim).
    pub sent: Vec<(String, samples::Claim)>,
    /// What the demo printed.
    pub summary: String,
}

impl KingdeeDemo {
    /// Stops the bridge, then the stand-ins.
    pub async fn stop(self) {
        self.bridge.shutdown().await;
        self.kingdee.stop().await;
        self.wecom.stop().await;
    }
}

/// Writes the template's files under `root` (`connectors/`, `mappings/`), the connector
/// pointed at `url` with the AppID and a file reference to the AppSecret.
fn write_catalog(root: &Path, url: &str, secret_file: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (connectors, mappings) = (root.join("connectors"), root.join("mappings"));
    if root.exists() {
        // Demo data: a fresh copy of the template each run.
        std::fs::remove_dir_all(&connectors).ok();
        std::fs::remove_dir_all(&mappings).ok();
    }
    for (to, text) in crate::cli::init::plan(TEMPLATE, &connectors, &mappings)? {
        let mut text = text.to_owned();
        if to.file_name().is_some_and(|n| n == "kingdee.toml") {
            for (reference, value) in [
                ("env:KINGDEE_URL", format!("{url}/k3cloud")),
                ("env:KINGDEE_APP_ID", APP_ID.to_owned()),
                (
                    "env:KINGDEE_APP_SECRET",
                    format!("file:{}", secret_file.display()),
                ),
            ] {
                anyhow::ensure!(
                    text.contains(reference),
                    "the {TEMPLATE} template no longer reads `{reference}`"
                );
                text = text.replace(reference, &value);
            }
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&to, text)?;
    }
    Ok((connectors, mappings))
}

/// Starts the Kingdee stand-in and the bridge with the `kingdee-expense` template (data under
/// `data_dir/kingdee`), sends the sample claims and waits for them to settle.
pub async fn start(mut config: Config, data_dir: &Path) -> anyhow::Result<KingdeeDemo> {
    let data_dir = super::demo_folder(&data_dir.join("kingdee"))?;
    let (app_name, app, corp_id) = super::first_app(&config)?;

    let wecom = FakeWeCom::start().await;
    wecom.add_credentials(&corp_id, APP_SECRET);
    let app_secret = format!("{:032x}", rand::random::<u128>());
    let creds = Credentials {
        acct_id: ACCT_ID.into(),
        user: "integration".into(),
        app_id: APP_ID.into(),
        app_secret: app_secret.clone(),
        lcid: 2052,
        org_num: "0".into(),
    };
    let kingdee = crate::standins::kingdee::start(KingdeeState::new(creds, "unused")).await;
    let secret_file = data_dir.join("kingdee-app-secret");
    std::fs::write(&secret_file, format!("{app_secret}\n"))?;
    let (connectors, mappings) = write_catalog(&data_dir, &kingdee.base_url(), &secret_file)?;

    config.catalog.connectors_dir = connectors;
    config.catalog.mappings_dir = mappings;
    super::point_at_demo(&mut config, &data_dir, &app_name, &wecom);

    let Started {
        bridge,
        sender,
        admin,
        sent,
        settled,
        ..
    } = start_and_send(
        &config,
        (&app_name, &app),
        &wecom,
        |secrets| secrets.admin_token.as_ref().map(|t| t.expose().to_string()),
        CONNECTOR,
    )
    .await?;
    let summary = render(&kingdee, &admin, &sent, &sender.url, settled).await?;
    Ok(KingdeeDemo {
        bridge,
        kingdee,
        wecom,
        sent,
        summary,
    })
}

/// The printout: what was sent, each voucher as Kingdee received it, what the bridge recorded.
async fn render(
    kingdee: &KingdeeStandIn,
    admin: &Admin,
    sent: &[(String, samples::Claim)],
    callback_url: &str,
    settled: bool,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nwecom-bridge demo --target kingdee: the real pipeline into Kingdee 金蝶云·星空 (stand-in)\n"
    );
    let _ = writeln!(
        out,
        "Sent {} signed, encrypted WeCom callbacks to {callback_url}",
        sent.len()
    );
    for (sp, c) in sent {
        let _ = writeln!(out, "  {sp}  approved {:>10}  {}", c.total, c.reason);
    }
    let save = Op::Save.path("/k3cloud");
    let saves: Vec<serde_json::Value> = kingdee
        .recorded()
        .iter()
        .filter(|r| r.path == save)
        .filter_map(crate::standins::vendor_server::Recorded::json)
        .collect();
    let _ = writeln!(
        out,
        "\nAt Kingdee ({}/k3cloud, signed headers verified): {} Save request(s)",
        kingdee.base_url(),
        saves.len()
    );
    if let Some(first) = saves.first() {
        let _ = writeln!(
            out,
            "\nPOST {save}\n{}",
            serde_json::to_string_pretty(first)?
        );
    }
    let jobs = admin.jobs().await?;
    for body in &saves {
        let model = &body["data"]["Model"];
        let no = model["FBillNo"].as_str().unwrap_or_default();
        let stored = kingdee.with(|s| s.bill("GL_VOUCHER", no));
        let _ = writeln!(
            out,
            "\n  GL_VOUCHER {no}  {}",
            stored.map_or("not saved".to_owned(), |(status, _)| format!(
                "status {status} (saved, 创建)"
            ))
        );
        for line in model["FEntity"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "    {:<10} 借 {:>10}  贷 {:>10}  {}",
                line["FACCOUNTID"]["FNumber"].as_str().unwrap_or_default(),
                line["FDEBIT"].as_str().unwrap_or_default(),
                line["FCREDIT"].as_str().unwrap_or_default(),
                line["FEXPLANATION"].as_str().unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "\nThe bridge's ledger (wecom-bridge deliveries):");
    for (sp, _) in sent {
        for j in jobs.iter().filter(|j| j.business_key == *sp) {
            let captured = j.captured.get("number").map_or(String::new(), |n| {
                format!(
                    " bill {n} (Id {})",
                    j.captured.get("id").map_or("?", String::as_str)
                )
            });
            let _ = writeln!(out, "  {sp}  {:<10}{captured}", j.state.to_string());
        }
    }
    for d in admin.dead_letters().await? {
        let _ = writeln!(out, "  {}  parked: {}", d.business_key, d.reason);
    }
    if !settled {
        let _ = writeln!(
            out,
            "\nnote: not every claim settled within the demo's wait; see `wecom-bridge deliveries`"
        );
    }
    Ok(out)
}
