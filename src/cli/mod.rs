//! The command line: `serve`, `demo`, `check`, `init`, `simulate`, `events`, `audit`, `queues`,
//! `dead-letters`, `replay`, `reconcile`, `reroute`, `deliveries`, `mapping`.
//!
//! Each command is a thin layer over the library; what it prints is for people (tables) or,
//! with `--json`, for scripts (one JSON object per line).

mod admin_api;
pub mod audit;
pub mod check_online;
pub mod deliveries;
pub mod demo;
pub mod events;
pub mod init;
mod listing;
pub mod mapping;
pub mod queues;
pub mod reconcile;
pub mod reroute;
pub mod simulate;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// wecom-bridge: WeCom approval callbacks → finance, ERP, CRM and HR systems.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (overridden per key by BRIDGE_SECTION__KEY variables).
    #[arg(
        long,
        short,
        global = true,
        env = "BRIDGE_CONFIG",
        default_value = "config/bridge.toml"
    )]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Try it: run the whole bridge here with stand-ins for WeCom and a finance system, send
    /// sample approvals through it, and show what arrived where.
    Demo(demo::DemoArgs),
    /// Run the bridge: accept WeCom callbacks and process them.
    Serve,
    /// Validate the configuration and print what would be served; `--online` also probes each
    /// connector's credentials at its target.
    Check(check_online::CheckArgs),
    /// Start from a shipped template: copy a connector file and a mapping (with its tables
    /// and cases) for a system such as Kingdee or YonBIP into connectors/ and mappings/.
    Init(init::InitArgs),
    /// Act as WeCom: sign, encrypt and POST an event XML to an app, or run URL verification.
    Simulate(simulate::SimulateArgs),
    /// List journaled events (newest first).
    Events(events::EventsArgs),
    /// List the audit trail: sign-ins, replays, reconciliations, payload views (newest first).
    Audit(audit::AuditArgs),
    /// Show queue depths and the outbox backlog.
    Queues(queues::QueuesArgs),
    /// List parked (dead-lettered) messages with reason and attempts.
    DeadLetters(queues::DeadLettersArgs),
    /// Send dead letters back to their queue: all, by id, or by reason.
    Replay(queues::ReplayArgs),
    /// List delivery jobs (newest first), or `show <key|SpNo>` with every attempt.
    Deliveries(deliveries::DeliveriesArgs),
    /// Ask WeCom which forms were approved and inject those whose callbacks never arrived.
    Reconcile(reconcile::ReconcileArgs),
    /// Route again, from the journal, approval events that matched no mapping (after adding
    /// one); forms already forwarded are not sent twice.
    Reroute(reroute::RerouteArgs),
    /// Try mappings on samples (`mapping test`) and measure them (`mapping bench`).
    Mapping(mapping::MappingArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = load(&cli.config)?;
    if matches!(cli.command, Command::Demo(_)) {
        // The demo's output is for a person: only warnings (RUST_LOG still overrides).
        config.log.level = "warn".into();
    }
    crate::telemetry::init_logging(&config.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve => {
            rt.block_on(serve(config))?;
            // Everything is flushed and closed by now. Exit without dropping the runtime: a
            // broker client may still have a reconnect attempt parked on its own thread, which
            // would panic on a runtime that is shutting down.
            std::process::exit(0)
        }
        Command::Demo(args) => {
            rt.block_on(demo::run(&cli.config, config, args))?;
            // As for `serve`: do not drop the runtime under a parked broker reconnect.
            std::process::exit(0)
        }
        Command::Check(args) => {
            check(&cli.config, &config)?;
            if args.online {
                rt.block_on(check_online::run(&config))?;
            }
            Ok(())
        }
        Command::Init(args) => init::run(&config, &args),
        Command::Simulate(args) => rt.block_on(simulate::run(&config, args)),
        Command::Events(args) => rt.block_on(events::run(&config, args)),
        Command::Audit(args) => rt.block_on(audit::run(&config, args)),
        Command::Queues(args) => rt.block_on(queues::queues(&config, args)),
        Command::DeadLetters(args) => rt.block_on(queues::dead_letters(&config, args)),
        Command::Replay(args) => rt.block_on(queues::replay(&config, args)),
        Command::Reconcile(args) => rt.block_on(reconcile::run(&config, args)),
        Command::Reroute(args) => rt.block_on(reroute::run(&config, args)),
        Command::Mapping(args) => mapping::run(&config, args),
        Command::Deliveries(args) => rt.block_on(deliveries::run(&config, args)),
    }
}

/// Builds every vendor connector (`kind = "kingdee"`, …), resolving and checking its signing
/// secrets, so that a missing or malformed AppID/AppSecret fails `check` instead of the first
/// delivery. (Generic `http` connectors resolve their secrets when `serve` starts.)
fn check_vendor_secrets(catalog: &crate::catalog::Catalog) -> anyhow::Result<()> {
    let problems: Vec<String> = catalog
        .connectors
        .iter()
        .filter(|c| c.vendor.is_some())
        .filter_map(|c| crate::deliver::Connector::build(c.clone()).err())
        .map(|e| e.to_string())
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "connector secrets are missing or malformed:\n  {}",
            problems.join("\n  ")
        )
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let bridge = crate::app::start(&config).await?;
    shutdown_signal().await;
    tracing::info!("shutdown requested; finishing in-flight requests");
    bridge.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn check(path: &Path, config: &Config) -> anyhow::Result<()> {
    let secrets = config.resolve()?;
    let endpoints = crate::app::build_endpoints(config, &secrets)?;
    let keys = match crate::journal::JournalCipher::from_config(&crate::config::JournalConfig {
        create_key_if_missing: false,
        ..config.journal.clone()
    }) {
        Ok(_) => "ok".to_string(),
        Err(_) if config.journal.create_key_if_missing => {
            "will be created on first `serve`".to_string()
        }
        Err(e) => return Err(e.into()),
    };
    let zone = jiff::tz::TimeZone::get(&config.wecom.time_zone)?;
    let catalog = mapping::catalog(config, &zone)?;
    check_vendor_secrets(&catalog)?;
    println!("configuration {} is valid", path.display());
    println!("  callbacks   http://{}", config.server.listen);
    for e in &endpoints {
        let c = &e.config;
        let window = if c.check_timestamp {
            format!("±{} s", c.timestamp_window_secs)
        } else {
            "OFF".into()
        };
        println!(
            "    {:<12} {:<24} receive-ids {:<24} kind {:?}  timestamp window {}",
            e.name,
            c.path,
            c.receive_ids.join(","),
            c.kind,
            window
        );
    }
    println!(
        "  admin       http://{} ({})",
        config.admin.listen,
        if config.admin.token.is_some() {
            "token required"
        } else {
            "no token: loopback only"
        }
    );
    println!("  store       {}", config.store.path.display());
    println!("  journal key {} ({keys})", config.journal.active_key);
    println!("  broker      {:?}", config.broker.kind);
    println!(
        "  wecom api   {} (time zone {})",
        config.wecom.api_base_url, config.wecom.time_zone
    );
    for m in &catalog.mappings {
        println!(
            "  mapping     {:<20} → connector {:<12} ({})",
            m.name,
            m.connector,
            m.file.display()
        );
    }
    let no_secret: Vec<_> = config
        .apps
        .iter()
        .filter(|(_, a)| a.secret.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    if !no_secret.is_empty() {
        println!(
            "note: no API secret for {}: approval events cannot be enriched or reconciled (set apps.<name>.secret)",
            no_secret.join(", ")
        );
    }
    let demo: Vec<_> = secrets
        .apps
        .iter()
        .filter(|(_, s)| s.is_demo())
        .map(|(n, _)| n.clone())
        .collect();
    if !demo.is_empty() {
        println!(
            "warning: {} use(s) WeCom's public sample credentials (demo only)",
            demo.join(", ")
        );
    }
    Ok(())
}
