//! The stand-ins a routed load runs against: WeCom's API (answering `getapprovaldetail` for
//! every SpNo with the shipped 10-row expense claim), the finance voucher API and its OAuth2
//! token endpoint, and a catalog with the shipped expense mappings and `finance` connector
//! pointed at them. Used by `e2e_load` (in its own process) and by `loadgen --standins`
//! (a separate process that `scripts/load.sh` starts for `ROUTED=1`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use wecom_bridge::cli::demo::samples;
use wecom_bridge::standins::finance::FinanceStandIn;
use wecom_bridge::standins::oauth::OAuthStandIn;
use wecom_bridge::standins::wecom::FakeWeCom;

/// The demo app of `config/bridge.toml` (WeCom's published sample credentials).
pub const TOKEN: &str = "QDG6eK";
/// The demo app's EncodingAESKey.
pub const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
/// The demo app's CorpID (its receive-id).
pub const CORP_ID: &str = "wx5823bf96d3bd56c7";
/// The app secret the WeCom stand-in accepts (the bridge gets it as `apps.demo.secret`).
pub const APP_SECRET: &str = "e2e-load-app-secret";
const CLIENT_ID: &str = "wecom-bridge";
const CLIENT_SECRET: &str = "e2e-load-client-secret";
/// The shipped approval detail every synthetic form is a copy of.
const DETAIL: &str = include_str!("../../samples/approvals/expense-01.json");

/// The three running stand-ins.
pub struct StandIns {
    /// WeCom's API.
    pub wecom: FakeWeCom,
    /// The OAuth2 token endpoint of the finance API.
    pub oauth: OAuthStandIn,
    /// The finance voucher API.
    pub finance: Arc<FinanceStandIn>,
}

impl StandIns {
    /// Starts them on loopback ports; every callback's SpNo gets the shipped claim, approved,
    /// applied for at `apply_time`.
    pub async fn start(apply_time: i64) -> anyhow::Result<StandIns> {
        let wecom = FakeWeCom::start().await;
        wecom.add_credentials(CORP_ID, APP_SECRET);
        wecom.serve_synthetic_approvals(approved_detail(apply_time)?);
        let oauth = OAuthStandIn::start().await;
        oauth.add_client(CLIENT_ID, CLIENT_SECRET);
        let finance = Arc::new(FinanceStandIn::start(Some(oauth.authority())).await);
        Ok(StandIns {
            wecom,
            oauth,
            finance,
        })
    }

    /// Writes the shipped expense mappings (and their tables) and the shipped finance
    /// connector, pointed at these stand-ins, with connector `concurrency` and without its
    /// rate limit (the target is local), into `dir/catalog`. Returns the catalog folder.
    pub fn write_catalog(
        &self,
        repo: &Path,
        dir: &Path,
        concurrency: usize,
    ) -> anyhow::Result<PathBuf> {
        let catalog = dir.join("catalog");
        let (m, c) = (catalog.join("mappings"), catalog.join("connectors"));
        std::fs::create_dir_all(m.join("tables"))?;
        std::fs::create_dir_all(&c)?;
        let shipped = repo.join("mappings");
        for f in ["expense-voucher.toml", "expense-voucher-reversal.toml"] {
            std::fs::copy(shipped.join(f), m.join(f)).with_context(|| format!("copying {f}"))?;
        }
        for entry in std::fs::read_dir(shipped.join("tables"))? {
            let entry = entry?;
            std::fs::copy(entry.path(), m.join("tables").join(entry.file_name()))?;
        }
        let secret = dir.join("finance-client-secret");
        std::fs::write(&secret, format!("{CLIENT_SECRET}\n"))?;
        let path = repo.join("connectors/finance.toml");
        let mut text = std::fs::read_to_string(&path)?;
        for (from, to) in [
            ("env:FINANCE_VOUCHER_URL", self.finance.vouchers_url()),
            ("env:FINANCE_TOKEN_URL", self.oauth.token_url()),
            (
                "env:FINANCE_CLIENT_SECRET",
                format!("file:{}", secret.display()),
            ),
            ("concurrency = 8", format!("concurrency = {concurrency}")),
            ("rate_per_sec = 200", String::new()),
        ] {
            if !text.contains(from) {
                bail!(
                    "{} no longer has `{from}`: update the load stand-ins",
                    path.display()
                );
            }
            text = text.replace(from, &to);
        }
        std::fs::write(c.join("finance.toml"), text)?;
        Ok(catalog)
    }

    /// The bridge settings (environment variables) that point it at these stand-ins and at
    /// `catalog`.
    pub fn bridge_env(&self, catalog: &Path) -> Vec<(&'static str, String)> {
        vec![
            (
                "BRIDGE_CATALOG__MAPPINGS_DIR",
                catalog.join("mappings").display().to_string(),
            ),
            (
                "BRIDGE_CATALOG__CONNECTORS_DIR",
                catalog.join("connectors").display().to_string(),
            ),
            ("BRIDGE_WECOM__API_BASE_URL", self.wecom.base_url()),
            // 0 = no client-side limit: the stand-in has none (WeCom allows 600/min per corp)
            ("BRIDGE_WECOM__APPROVAL_CALLS_PER_MINUTE", "0".into()),
            ("BRIDGE_APPS__DEMO__SECRET", APP_SECRET.into()),
        ]
    }
}

/// The shipped 10-row expense claim as WeCom's API returns it, approved.
fn approved_detail(apply_time: i64) -> anyhow::Result<Value> {
    let parsed: Value = serde_json::from_str(DETAIL)?;
    let mut info = parsed["info"].clone();
    ensure!(info.is_object(), "the sample has no `info` object");
    info["sp_status"] = samples::APPROVED.into();
    info["apply_time"] = apply_time.into();
    Ok(info)
}
