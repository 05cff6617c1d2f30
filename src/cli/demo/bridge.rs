//! The demo's bridge at work: started on the demo's configuration, fed signed and encrypted
//! sample callbacks ([`Sender`], as WeCom sends them), and watched through its admin API
//! ([`Admin`], as an operator reads it) until the forms settle. Both demos drive it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;

use super::{numbered_claims, samples};
use crate::app::RunningBridge;
use crate::config::{AppConfig, Config, ResolvedSecrets};
use crate::record::{JobRecord, JobState};
use crate::standins::wecom::FakeWeCom;
use crate::wecom::crypto::CallbackCrypto;

use samples::APPROVED;

/// How long each phase waits for the pipeline to settle before it reports what is missing.
const SETTLE: Duration = Duration::from_secs(30);

/// The demo bridge at work: started, the sample claims sent to it once, as approved.
pub(super) struct Started {
    /// The bridge.
    pub(super) bridge: RunningBridge,
    /// The sender of callbacks to the demo app.
    pub(super) sender: Sender,
    /// The bridge's admin API.
    pub(super) admin: Admin,
    /// When the claims were sent (Unix seconds).
    pub(super) now: i64,
    /// The sample claims as sent: (SpNo, claim).
    pub(super) sent: Vec<(String, samples::Claim)>,
    /// Whether every claim settled within [`SETTLE`].
    pub(super) settled: bool,
}

/// Starts the bridge on `config`, registers the numbered sample claims as approved at the
/// WeCom stand-in, posts their callbacks to app `app_name` (settings `app`) and waits until
/// each settled once. `token` picks the admin API token from the resolved secrets; the
/// dead letters watched are those of `connector`.
pub(super) async fn start_and_send(
    config: &Config,
    (app_name, app): (&str, &AppConfig),
    wecom: &FakeWeCom,
    token: impl FnOnce(&ResolvedSecrets) -> Option<String>,
    connector: &'static str,
) -> anyhow::Result<Started> {
    let bridge = crate::app::start(config)
        .await
        .context("starting the bridge (is another `serve` or `demo` using its ports?)")?;
    let secrets = config.resolve()?;
    let sender = Sender::to_app(&bridge, &secrets, app_name, app)?;
    let admin = Admin {
        client: reqwest::Client::new(),
        base: format!("http://{}", bridge.admin_addr),
        token: token(&secrets),
        connector,
    };
    let now = unix_now();
    let sent = numbered_claims(config, now)?;
    sender.send_approved(wecom, &sent, now).await?;
    let once: Vec<(&str, usize)> = sent.iter().map(|(s, _)| (s.as_str(), 1)).collect();
    let settled = settle(&admin, &once).await;
    Ok(Started {
        bridge,
        sender,
        admin,
        now,
        sent,
        settled,
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Posts callbacks as WeCom does: signed and encrypted with the app's credentials.
pub(super) struct Sender {
    client: reqwest::Client,
    /// Where the callbacks go.
    pub(super) url: String,
    crypto: CallbackCrypto,
    /// The receive-id the callbacks carry.
    pub(super) receive_id: String,
}

impl Sender {
    /// A sender of callbacks to app `app_name` (settings `app`, secrets in `secrets`) of
    /// `bridge`.
    fn to_app(
        bridge: &RunningBridge,
        secrets: &ResolvedSecrets,
        app_name: &str,
        app: &AppConfig,
    ) -> anyhow::Result<Sender> {
        let s = &secrets.apps[app_name];
        Ok(Sender {
            client: reqwest::Client::new(),
            url: format!("http://{}{}", bridge.public_addr, app.path),
            crypto: CallbackCrypto::new(s.token.expose(), s.encoding_aes_key.expose())?,
            receive_id: app.receive_ids.first().cloned().unwrap_or_default(),
        })
    }

    /// Registers each claim of `sent` (SpNo, claim) as approved at the WeCom stand-in and
    /// posts its approval callback.
    async fn send_approved(
        &self,
        wecom: &FakeWeCom,
        sent: &[(String, samples::Claim)],
        now: i64,
    ) -> anyhow::Result<()> {
        for (sp_no, claim) in sent {
            wecom.add_approval(samples::detail(claim, sp_no, APPROVED, now - 86_400));
            let xml = samples::callback(&self.receive_id, sp_no, APPROVED, 2);
            self.post(&xml, now).await?;
        }
        Ok(())
    }

    /// Posts one callback `xml`, signed at `now`.
    pub(super) async fn post(&self, xml: &str, now: i64) -> anyhow::Result<()> {
        let nonce = format!("{}", rand::random::<u32>());
        let (query, body) =
            crate::cli::simulate::sign_event(&self.crypto, &self.receive_id, xml, now, &nonce);
        let resp = self
            .client
            .post(format!("{}?{query}", self.url))
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {}", self.url))?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "the bridge refused a demo callback ({status}): {}",
                resp.text().await.unwrap_or_default().trim()
            );
        }
        Ok(())
    }
}

/// A parked message as the admin API lists it (without its body).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Parked {
    /// Its message id (what `replay --id` takes).
    pub id: String,
    /// The SpNo.
    pub business_key: String,
    /// Why it was parked.
    pub reason: String,
}

/// The bridge's admin API, read as an operator would.
pub(super) struct Admin {
    client: reqwest::Client,
    /// `http://<admin listener>`.
    pub(super) base: String,
    token: Option<String>,
    /// The connector whose dead letters are listed.
    connector: &'static str,
}

impl Admin {
    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("GET {path} → {status}: {}", text.trim());
        }
        Ok(text)
    }

    /// The ledger's newest jobs.
    pub(super) async fn jobs(&self) -> anyhow::Result<Vec<JobRecord>> {
        #[derive(serde::Deserialize)]
        struct Page {
            jobs: Vec<JobRecord>,
        }
        let page: Page = parse(&self.get("/admin/deliveries?limit=200").await?)?;
        Ok(page.jobs)
    }

    /// The parked messages of the connector's deliver queue.
    pub(super) async fn dead_letters(&self) -> anyhow::Result<Vec<Parked>> {
        #[derive(serde::Deserialize)]
        struct Listed {
            envelope: Envelope,
            reason: String,
        }
        #[derive(serde::Deserialize)]
        struct Envelope {
            id: String,
            business_key: String,
        }
        let queue = crate::route::deliver_queue(self.connector);
        let text = self
            .get(&format!("/admin/dead-letters?queue={queue}"))
            .await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                parse::<Listed>(l).map(|d| Parked {
                    id: d.envelope.id,
                    business_key: d.envelope.business_key,
                    reason: d.reason,
                })
            })
            .collect()
    }
}

fn parse<T: DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    serde_json::from_str(text).with_context(|| format!("unexpected admin API answer: {text}"))
}

/// The messages the WeCom stand-in delivered about the demo's forms, once there are as many as
/// the ledger calls for (an applicant card per delivered approval, an operator card per dead
/// job, for the sample mapping's `[writeback]`), or when [`SETTLE`] has passed.
pub(super) async fn notifications(
    wecom: &FakeWeCom,
    sent: &[(String, samples::Claim)],
    jobs: &[JobRecord],
) -> Vec<serde_json::Value> {
    let ours = |m: &serde_json::Value| {
        let text = m.to_string();
        sent.iter().any(|(sp, _)| text.contains(sp.as_str()))
    };
    let expected = jobs
        .iter()
        .filter(|j| sent.iter().any(|(sp, _)| *sp == j.business_key))
        .filter(|j| {
            (j.action == "approved" && j.state.counts_as_delivered()) || j.state == JobState::Dead
        })
        .count();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let got: Vec<serde_json::Value> = wecom
            .sent_messages()
            .into_iter()
            .filter(|m| ours(m))
            .collect();
        if got.len() >= expected || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the job is done with (delivered, refused, parked, skipped).
fn is_final(state: JobState) -> bool {
    !matches!(state, JobState::InFlight | JobState::Retrying)
}

/// Waits (up to [`SETTLE`]) until every (SpNo, n) has n jobs in a final state or a parked
/// message; answers whether they all did.
pub(super) async fn settle(admin: &Admin, expected: &[(&str, usize)]) -> bool {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if let (Ok(jobs), Ok(dead)) = (admin.jobs().await, admin.dead_letters().await) {
            let done = expected.iter().all(|(sp, per_form)| {
                let finished = jobs
                    .iter()
                    .filter(|j| j.business_key == *sp && is_final(j.state))
                    .count();
                let parked = dead.iter().any(|d| d.business_key == *sp);
                finished >= *per_form || parked
            });
            if done {
                return true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
