//! Expense claims through the whole pipeline, for the fault tests (`fault_matrix`,
//! `redelivery`, and the kill test of the `faults` binary, which includes this file):
//! a catalog of the shipped `expense-voucher` mapping and `finance` connector, one copy per
//! target, each pointed at its own finance stand-in and OAuth token endpoint; the sample
//! claims of `wecom_bridge::cli::demo::samples` numbered for a run; and counting at a target.
//!
//! Every connector copy starts from `connectors/finance.toml` as shipped, so the tests run
//! what users run; `edits` change only what a test must shorten (timeouts, retry tiers),
//! and each edit must find its text (a changed shipped file fails loudly, never silently).

#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;
use wecom_bridge::cli::demo::samples::{self, APPROVED, CLAIMS};
use wecom_bridge::standins::finance::FinanceStandIn;
use wecom_bridge::standins::oauth::OAuthStandIn;
use wecom_bridge::standins::wecom::FakeWeCom;

use crate::support::{
    catalog_section, copy_dir, edited, get_json, repo, secret_file, shipped_finance,
};

/// The OAuth client `connectors/finance.toml` authenticates as.
pub const CLIENT_ID: &str = "wecom-bridge";
/// Its secret at every token endpoint of these tests.
pub const CLIENT_SECRET: &str = "cs-faults-7d1e9a4c2b5f-client-secret";

/// Retries on the tests' broker tiers (1 s, 2 s) instead of the shipped 5 s … 1 h.
pub const SHORT_RETRIES: (&str, &str) = (
    "schedule_secs = [5, 30, 120, 600, 3600]",
    "schedule_secs = [1, 2]",
);

/// One target: a connector named `name` (its queue is `deliver.<name>`) fed by the mapping
/// `expense-<name>`, sending to `finance` with tokens from `oauth`.
pub struct Target<'a> {
    /// Connector name (unique per test: metric labels are process-wide).
    pub name: &'a str,
    /// Where its vouchers land.
    pub finance: &'a FinanceStandIn,
    /// Its token endpoint.
    pub oauth: &'a OAuthStandIn,
}

/// A finance stand-in with its own token endpoint that knows our client.
pub async fn start_target() -> (FinanceStandIn, OAuthStandIn) {
    let oauth = OAuthStandIn::start().await;
    oauth.add_client(CLIENT_ID, CLIENT_SECRET);
    let finance = FinanceStandIn::start(Some(oauth.authority())).await;
    (finance, oauth)
}

/// Writes `mappings/` and `connectors/` under `dir` for `targets`, each connector being the
/// shipped finance connector with its references resolved and `edits` (from, to) applied;
/// returns the `[catalog]` section.
pub fn write_catalog(dir: &Path, targets: &[Target<'_>], edits: &[(&str, &str)]) -> String {
    let (m, c) = (dir.join("mappings"), dir.join("connectors"));
    copy_dir(&repo().join("mappings/tables"), &m.join("tables"));
    std::fs::create_dir_all(&c).unwrap();
    let mapping = std::fs::read_to_string(repo().join("mappings/expense-voucher.toml")).unwrap();
    let secret = secret_file(dir, "client", CLIENT_SECRET);
    for t in targets {
        let own = edited(
            &mapping,
            &[(
                "connector = \"finance\"",
                format!("connector = \"{}\"", t.name),
            )],
            "expense-voucher.toml",
        );
        std::fs::write(m.join(format!("expense-{}.toml", t.name)), own).unwrap();
        let resolved = shipped_finance(t.finance, t.oauth, &secret);
        std::fs::write(
            c.join(format!("{}.toml", t.name)),
            edited(&resolved, edits, "finance.toml"),
        )
        .unwrap();
    }
    catalog_section(&m, &c)
}

/// The document number the shipped mapping gives the voucher of `sp_no`.
pub fn document_no(sp_no: &str) -> String {
    format!("EXP-{sp_no}")
}

/// Registers `n` approved claims (the demo's first sample) at the WeCom stand-in, numbered
/// from `first` (distinct between the tests of one process); answers their SpNos.
pub fn approved_forms(fake: &FakeWeCom, first: u64, n: usize) -> Vec<String> {
    let apply_time = 1_764_000_000;
    (first..first + n as u64)
        .map(|i| {
            let sp_no = i.to_string();
            fake.add_approval(samples::detail(&CLAIMS[0], &sp_no, APPROVED, apply_time));
            sp_no
        })
        .collect()
}

/// The decrypted callback WeCom sends when `sp_no` is approved.
pub fn approved_callback(corp_id: &str, sp_no: &str) -> String {
    samples::callback(corp_id, sp_no, APPROVED, 2)
}

/// Posts `xmls` signed and encrypted to `url` (`sign` gives query and body), 16 at a time,
/// as WeCom does: a callback that is not answered 200 is sent again.
pub async fn post_all(url: &str, xmls: Vec<String>, sign: impl Fn(&str) -> (String, String)) {
    use futures_util::StreamExt;
    let client = reqwest::Client::new();
    let requests: Vec<(String, String)> = xmls.iter().map(|x| sign(x)).collect();
    futures_util::stream::iter(requests)
        .for_each_concurrent(16, |(query, body)| {
            let client = client.clone();
            async move {
                for _ in 0..50 {
                    let sent = client
                        .post(format!("{url}?{query}"))
                        .body(body.clone())
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status() == 200) {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                panic!("the bridge never answered 200 to a callback");
            }
        })
        .await;
}

/// Document numbers that reached `finance` other than exactly once, with their counts.
pub fn not_exactly_once(finance: &FinanceStandIn, sp_nos: &[String]) -> Vec<(String, usize)> {
    let mut count = std::collections::HashMap::<String, usize>::new();
    for v in finance.vouchers() {
        *count.entry(v.document_no).or_default() += 1;
    }
    let mut wrong: Vec<(String, usize)> = sp_nos
        .iter()
        .map(|sp| document_no(sp))
        .map(|d| {
            let n = count.remove(&d).unwrap_or(0);
            (d, n)
        })
        .filter(|(_, n)| *n != 1)
        .collect();
    // vouchers for forms the test never sent
    wrong.extend(count);
    wrong
}

/// Every job of `connector` in the ledger (admin API, all pages).
pub async fn ledger_jobs(admin: &str, connector: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("http://{admin}/admin/deliveries?connector={connector}&limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(&url).await;
        out.extend(page["jobs"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Waits (30 s at most) until the ledger has `n` jobs of `connector`, every one delivered
/// (or found delivered already at the target).
pub async fn ledger_settled(admin: &str, connector: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let jobs = ledger_jobs(admin, connector).await;
        let settled = |j: &Value| j["state"] == "delivered" || j["state"] == "duplicate";
        if jobs.len() == n && jobs.iter().all(settled) {
            return;
        }
        let open: Vec<&Value> = jobs.iter().filter(|j| !settled(j)).take(3).collect();
        assert!(
            std::time::Instant::now() < deadline,
            "{connector}: {} jobs in the ledger, not all settled, e.g. {open:#?}",
            jobs.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The dead letters of `deliver.<connector>` (admin API, one JSON object per line).
pub async fn dead_letters(admin: &str, connector: &str) -> Vec<Value> {
    let url = format!("http://{admin}/admin/dead-letters?queue=deliver.{connector}&limit=100000");
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    serde_json::Deserializer::from_str(&text)
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// The API secret of the apps of these tests at the WeCom stand-in.
pub const APP_SECRET: &str = "faults-app-secret-5b2e";

/// The configuration of a bridge (store under `dir`) serving app `app`, whose API secret the
/// WeCom stand-in `fake` now accepts, plus `more` (catalog, broker). Approval-API calls are
/// allowed at ten times WeCom's 600/min: the tests send bursts of hundreds of forms, and the
/// limiter has tests of its own.
pub fn bridge_toml(dir: &Path, app: &str, fake: &FakeWeCom, more: &str) -> String {
    fake.add_credentials(super::support::CORP_ID, APP_SECRET);
    let base = super::support::config_toml(dir, &[super::support::TestApp::new(app)]);
    let with_secret = base.replace(
        &format!("[apps.{app}]\n"),
        &format!("[apps.{app}]\nsecret = \"{APP_SECRET}\"\n"),
    );
    format!(
        "{with_secret}\n[wecom]\napi_base_url = \"{}\"\napproval_calls_per_minute = 6000\n\
         [reconcile]\nenabled = false\n{more}",
        fake.base_url()
    )
}

/// The WeCom API stand-in and one finance target: what a single-connector test talks to.
pub struct Stands {
    /// WeCom's API (approval details).
    pub fake: FakeWeCom,
    /// The finance system.
    pub finance: FinanceStandIn,
    /// Its token endpoint.
    pub oauth: OAuthStandIn,
}

impl Stands {
    /// Starts them.
    pub async fn start() -> Stands {
        let (finance, oauth) = start_target().await;
        Stands {
            fake: FakeWeCom::start().await,
            finance,
            oauth,
        }
    }

    /// [`bridge_toml`] for app `app` delivering to the finance target through `connector`
    /// (the shipped one with short retries and `edits`) on `broker` (a `[broker]` section
    /// with the tests' tiers, e.g. [`SHORT_TIERS`](crate::support::SHORT_TIERS)); all under `dir`.
    pub fn bridge_toml(
        &self,
        dir: &Path,
        app: &str,
        connector: &str,
        edits: &[(&str, &str)],
        broker: &str,
    ) -> String {
        let target = Target {
            name: connector,
            finance: &self.finance,
            oauth: &self.oauth,
        };
        let edits: Vec<(&str, &str)> = [SHORT_RETRIES]
            .into_iter()
            .chain(edits.iter().copied())
            .collect();
        let catalog = write_catalog(dir, &[target], &edits);
        bridge_toml(dir, app, &self.fake, &format!("{catalog}{broker}"))
    }

    /// Stops them.
    pub async fn stop(self) {
        self.finance.stop().await;
        self.oauth.stop().await;
        self.fake.stop().await;
    }
}
