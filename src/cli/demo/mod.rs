//! `demo`: the whole bridge on this machine in one command. It runs the real `serve` pipeline
//! in-process ([`crate::app::start`]) with the stand-ins for WeCom's API, the finance system
//! and its OAuth token endpoint, posts signed, encrypted sample callbacks through the real
//! ingress, waits for them to settle, and prints what arrived where.
//!
//! It owns the demo's set-up (configuration overrides, the stand-ins, the sample claims) and
//! its printout. It must not take any shortcut around the pipeline: everything it shows is
//! read back from the finance stand-in and the admin API, as an operator would.

mod bridge;
pub mod kingdee;
pub mod render;
pub mod samples;

pub use bridge::Parked;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::app::RunningBridge;
use crate::config::{AppConfig, Config, SecretRef};
use crate::record::JobRecord;
use crate::standins::finance::FinanceStandIn;
use crate::standins::inbox::InboxStandIn;
use crate::standins::oauth::OAuthStandIn;
use crate::standins::wecom::FakeWeCom;

use bridge::{Started, notifications, settle, start_and_send};
use samples::{CLAIMS, Expect, REVOKED};

/// The connector the demo's mappings deliver to.
const CONNECTOR: &str = "finance";
/// The OAuth client the shipped `connectors/finance.toml` authenticates as.
const CLIENT_ID: &str = "wecom-bridge";
/// The app secret the WeCom stand-in accepts for the demo app (`gettoken`).
const APP_SECRET: &str = "demo-app-secret";
/// The AgentId the demo app sends notifications as, unless the configuration names one.
const DEMO_AGENT_ID: i64 = 1_000_002;
/// The WeCom member the stand-in's login pages sign in ("Sign in with WeCom" in the demo).
const DEMO_WECOM_USER: &str = "ZhangSan";

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its store, journal key and connector copies (kept between runs:
    /// inspect it with `wecom-bridge deliveries`; delete it to start over).
    #[arg(long, default_value = "./demo-data")]
    pub data_dir: PathBuf,
    /// End after printing the summary instead of running until Ctrl-C (for tests and scripts).
    #[arg(long)]
    pub exit_after_demo: bool,
    /// Where the sample claims are delivered: the finance system stand-in (default), or the
    /// Kingdee 金蝶云·星空 stand-in through the `kingdee-expense` template.
    #[arg(long, value_enum, default_value_t = DemoTarget::Finance)]
    pub target: DemoTarget,
}

/// The system the demo delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoTarget {
    /// The generic finance voucher API (`connectors/finance.toml`).
    Finance,
    /// Kingdee K3Cloud WebAPI (`templates/kingdee-expense`), signed headers.
    Kingdee,
}

/// A running demo: the bridge, the stand-ins it talks to, and the printed summary.
#[derive(Debug)]
pub struct Demo {
    /// The bridge, serving on the configured (or overridden) listeners.
    pub bridge: RunningBridge,
    /// The finance system stand-in: what arrived at the target.
    pub finance: FinanceStandIn,
    /// The OAuth token endpoint of the finance system.
    pub oauth: OAuthStandIn,
    /// WeCom's API stand-in (approval details).
    pub wecom: FakeWeCom,
    /// The generic target the other shipped connectors (ERP, HR, CRM, legal) point at.
    pub inbox: InboxStandIn,
    /// The sample claims as sent: (SpNo, claim).
    pub sent: Vec<(String, samples::Claim)>,
    /// The console's address (`http://<admin listener>/console`).
    pub console_url: String,
    /// A token with the viewer role (`demo-viewer`), printed for the console.
    pub viewer_token: String,
    /// A token with the operator role (`demo-operator`), printed for the console and the CLI.
    pub operator_token: String,
    /// What the demo printed.
    pub summary: String,
}

impl Demo {
    /// Stops the bridge, then the stand-ins.
    pub async fn stop(self) {
        self.bridge.shutdown().await;
        self.finance.stop().await;
        self.oauth.stop().await;
        self.wecom.stop().await;
        self.inbox.stop().await;
    }
}

/// Runs `demo` from the command line: starts it, prints the summary, then runs until Ctrl-C
/// (or ends at once with `--exit-after-demo`).
pub(super) async fn run(config_path: &Path, config: Config, args: DemoArgs) -> anyhow::Result<()> {
    if args.target == DemoTarget::Kingdee {
        let demo = kingdee::start(config, &args.data_dir).await?;
        present(&demo.summary, args.exit_after_demo).await;
        demo.stop().await;
        return Ok(());
    }
    let demo = start(config, &args.data_dir, config_path).await?;
    present(&demo.summary, args.exit_after_demo).await;
    demo.stop().await;
    Ok(())
}

/// Prints the demo's summary, then waits for Ctrl-C unless `exit_after_demo`.
async fn present(summary: &str, exit_after_demo: bool) {
    print!("{summary}");
    if !exit_after_demo {
        super::shutdown_signal().await;
        println!("stopping…");
    }
}

/// Points `config` at the demo: its store and journal key (created if missing) under
/// `data_dir`, the WeCom API stand-in `wecom`, and the demo app secret (and an AgentId:
/// writeback sends as the app, message/send needs it) for app `app_name`; no reconciliation.
pub(super) fn point_at_demo(
    config: &mut Config,
    data_dir: &Path,
    app_name: &str,
    wecom: &FakeWeCom,
) {
    config.store.path = data_dir.join("bridge.redb");
    config.journal.active_key = "demo".into();
    config.journal.keys = BTreeMap::from([(
        "demo".to_string(),
        SecretRef::File(data_dir.join("journal.key")),
    )]);
    config.journal.create_key_if_missing = true;
    config.wecom.api_base_url = wecom.base_url();
    config.reconcile.enabled = false;
    if let Some(a) = config.apps.get_mut(app_name) {
        a.secret = Some(SecretRef::Literal(APP_SECRET.into()));
        a.agent_id.get_or_insert(DEMO_AGENT_ID);
    }
}

/// Creates the demo's data folder and returns its absolute path.
pub(super) fn demo_folder(data_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the demo folder {}", data_dir.display()))?;
    data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", data_dir.display()))
}

/// The configuration's first app (name, settings, corp id): the demo posts its callbacks there.
pub(super) fn first_app(config: &Config) -> anyhow::Result<(String, AppConfig, String)> {
    let (app_name, app) = config
        .apps
        .iter()
        .next()
        .map(|(n, a)| (n.clone(), a.clone()))
        .context("the configuration has no [apps.*]: the demo needs one to post callbacks to")?;
    let corp_id = config
        .checked()?
        .apps
        .get(&app_name)
        .map(|a| a.corp_id.clone())
        .context("the app has no corp id")?;
    Ok((app_name, app, corp_id))
}

/// Starts the stand-ins and the bridge with `config` pointed at them (store and journal key
/// under `data_dir`), sends the sample callbacks and waits for them to settle. `config_path`
/// is only quoted in the printed commands.
pub async fn start(
    mut config: Config,
    data_dir: &Path,
    config_path: &Path,
) -> anyhow::Result<Demo> {
    let data_dir = demo_folder(data_dir)?;
    let (app_name, app, corp_id) = first_app(&config)?;

    let wecom = FakeWeCom::start().await;
    wecom.add_credentials(&corp_id, APP_SECRET);
    let oauth = OAuthStandIn::start().await;
    let client_secret = format!("{:032x}", rand::random::<u128>());
    oauth.add_client(CLIENT_ID, &client_secret);
    let finance = FinanceStandIn::start(Some(oauth.authority())).await;

    let inbox = InboxStandIn::start().await;
    let stand_ins = StandIns {
        finance: &finance,
        oauth: &oauth,
        inbox: &inbox,
    };
    let connectors = copy_connectors(&config, &data_dir, &stand_ins, &client_secret)?;
    config.catalog.connectors_dir = connectors;
    point_at_demo(&mut config, &data_dir, &app_name, &wecom);
    let console = ConsoleAccess::add_to(&mut config, &app_name, &wecom);

    let operator_token = console.operator_token.clone();
    let Started {
        bridge,
        sender,
        admin,
        now,
        sent,
        ..
    } = start_and_send(
        &config,
        (&app_name, &app),
        &wecom,
        |_| Some(operator_token),
        CONNECTOR,
    )
    .await?;
    let console_url = format!("{}/console", admin.base);
    let mut revoked = Vec::new();
    for (sp_no, claim) in &sent {
        if claim.expect == Expect::VoucherThenReversal {
            wecom.add_approval(samples::detail(claim, sp_no, REVOKED, now - 86_400));
            // StatuChangeEvent 8: revoked after approval (通过后撤销).
            sender
                .post(
                    &samples::callback(&sender.receive_id, sp_no, REVOKED, 8),
                    now,
                )
                .await?;
            revoked.push(sp_no.clone());
        }
    }
    let expected: Vec<(&str, usize)> = sent
        .iter()
        .map(|(s, c)| {
            (
                s.as_str(),
                1 + usize::from(c.expect == Expect::VoucherThenReversal),
            )
        })
        .collect();
    let settled = settle(&admin, &expected).await;
    let jobs: Vec<JobRecord> = admin.jobs().await?;
    let notifications = notifications(&wecom, &sent, &jobs).await;
    let dead: Vec<Parked> = admin.dead_letters().await?;
    let summary = render::summary(&render::Seen {
        sent: &sent,
        revoked: &revoked,
        callback_url: &sender.url,
        finance_url: &finance.vouchers_url(),
        vouchers: &finance.vouchers(),
        jobs: &jobs,
        dead: &dead,
        notifications: &notifications,
        settled,
        admin: &admin.base,
        console: render::ConsoleHint {
            url: &console_url,
            viewer_token: &console.viewer_token,
            operator_token: &console.operator_token,
            wecom_user: DEMO_WECOM_USER,
        },
        data_dir: &data_dir,
        config_path,
        connector: CONNECTOR,
    });
    Ok(Demo {
        bridge,
        finance,
        oauth,
        wecom,
        inbox,
        sent,
        console_url,
        viewer_token: console.viewer_token,
        operator_token: console.operator_token,
        summary,
    })
}

/// The demo's way into the console: a viewer and an operator token (random per run, never
/// stored), and sign-in with WeCom through the WeCom stand-in, which signs in
/// [`DEMO_WECOM_USER`] as an operator.
struct ConsoleAccess {
    viewer_token: String,
    operator_token: String,
}

impl ConsoleAccess {
    fn add_to(config: &mut Config, app_name: &str, wecom: &FakeWeCom) -> ConsoleAccess {
        use crate::console::{AdminUser, Role, WeComUser};
        let token = || format!("{:032x}", rand::random::<u128>());
        let access = ConsoleAccess {
            viewer_token: token(),
            operator_token: token(),
        };
        for (name, token, role) in [
            ("demo-viewer", &access.viewer_token, Role::Viewer),
            ("demo-operator", &access.operator_token, Role::Operator),
        ] {
            config.admin.users.push(AdminUser {
                name: name.into(),
                token: SecretRef::Literal(token.clone()),
                role,
            });
        }
        config.console.enabled = true;
        config.console.wecom_login.app = app_name.to_string();
        config.console.wecom_login.authorize_url = wecom.authorize_url();
        config.console.wecom_login.sso_url = wecom.sso_login_url();
        config.console.wecom_users.push(WeComUser {
            user_id: DEMO_WECOM_USER.into(),
            role: Role::Operator,
        });
        wecom.set_login_user(DEMO_WECOM_USER);
        access
    }
}

/// Gives each sample claim an SpNo of today (in the configured zone) that a re-run with the
/// same data folder does not repeat (so the bridge does not take it for a re-delivery).
fn numbered_claims(config: &Config, now: i64) -> anyhow::Result<Vec<(String, samples::Claim)>> {
    let zone = jiff::tz::TimeZone::get(&config.wecom.time_zone)?;
    let today = jiff::Timestamp::from_second(now)?
        .to_zoned(zone)
        .strftime("%Y%m%d")
        .to_string();
    let run = (now as u64 / 2) % (10_000 / CLAIMS.len() as u64);
    Ok(CLAIMS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("{today}{:04}", run * CLAIMS.len() as u64 + i as u64),
                c.clone(),
            )
        })
        .collect())
}

/// Copies the configured connectors into `<data_dir>/connectors`, with the finance
/// connector's `env:` references (URL, token URL, client secret) pointed at the stand-ins:
/// the shipped file is used as is otherwise. (The demo cannot set environment variables for
/// itself: the process is already multi-threaded.)
/// The stand-ins the demo's connectors point at.
struct StandIns<'a> {
    finance: &'a FinanceStandIn,
    oauth: &'a OAuthStandIn,
    inbox: &'a InboxStandIn,
}

/// The copy of a connector other than finance: its `url = "env:…"` points at the inbox
/// stand-in under the connector's name, so every shipped connector can be built (no ERROR
/// lines for unset variables) and a document sent to it lands somewhere visible.
fn to_inbox(text: &str, inbox: &InboxStandIn, name: &str) -> String {
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("url = \"env:") {
                format!("url = \"{}\"", inbox.url(name))
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn copy_connectors(
    config: &Config,
    data_dir: &Path,
    stand_ins: &StandIns<'_>,
    client_secret: &str,
) -> anyhow::Result<PathBuf> {
    let StandIns {
        finance,
        oauth,
        inbox,
    } = stand_ins;
    let from = &config.catalog.connectors_dir;
    let to = data_dir.join("connectors");
    std::fs::create_dir_all(&to)?;
    let secret_file = data_dir.join("finance-client-secret");
    std::fs::write(&secret_file, format!("{client_secret}\n"))?;
    let entries = std::fs::read_dir(from)
        .with_context(|| format!("reading the connectors folder {}", from.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name() else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let mut text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if name == format!("{CONNECTOR}.toml").as_str() {
            for (reference, value) in [
                ("env:FINANCE_VOUCHER_URL", finance.vouchers_url()),
                ("env:FINANCE_TOKEN_URL", oauth.token_url()),
                (
                    "env:FINANCE_CLIENT_SECRET",
                    format!("file:{}", secret_file.display()),
                ),
            ] {
                if !text.contains(reference) {
                    bail!(
                        "{} no longer reads `{reference}`: the demo cannot point it at the stand-in",
                        path.display()
                    );
                }
                text = text.replace(reference, &value);
            }
        } else {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("other");
            text = to_inbox(&text, inbox, stem);
        }
        std::fs::write(to.join(name), text)?;
    }
    Ok(to)
}
