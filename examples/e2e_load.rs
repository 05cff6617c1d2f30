//! End-to-end load: WeCom callback → voucher delivered at a local finance target.
//!
//! This process runs the stand-ins for WeCom's API (answering `getapprovaldetail` for every
//! generated SpNo from the shipped sample `samples/approvals/expense-01.json`, 10 rows), the
//! finance voucher API and its OAuth2 token endpoint; it writes a catalog with the shipped
//! `expense-voucher` mapping and `finance` connector pointed at them, starts the release
//! `wecom-bridge serve` as a separate process (the shipped `config/bridge.toml`, store in a
//! temporary folder), and posts signed, encrypted "approved" callbacks with unique SpNos.
//!
//! ```text
//! cargo build --release --bin wecom-bridge --example e2e_load
//! target/release/examples/e2e_load --mode paced --rate 1000 --seconds 60
//! target/release/examples/e2e_load --mode closed --seconds 30 --window 2000
//! target/release/examples/e2e_load --broker rabbitmq --prefix wbe2eload-1 --mode paced
//! ```
//! (`scripts/e2e-load.sh` runs these and removes the RabbitMQ queues afterwards.)
//!
//! - **paced**: callback `i` is due at start + `i` / rate; its latency runs from that due time
//!   (not from when it was actually sent: no coordinated omission) to the moment the finance
//!   stand-in commits its voucher (taken in this process, so one clock).
//! - **closed**: at most `--window` approvals are between "callback sent" and "voucher
//!   committed"; each commit lets the next callback go. The delivered rate is the sustained
//!   end-to-end throughput.
//!
//! At the end it counts AT THE TARGET: one voucher per callback answered 200, no document
//! twice, none for an SpNo that was not sent; otherwise it exits non-zero. It prints the
//! bridge's peak resident memory (VmHWM) and the CPU seconds of the bridge and of this process
//! (generator and stand-ins share the machine's cores with the bridge).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use support::standins::{AES_KEY, CORP_ID, StandIns, TOKEN};
use support::{Drive, Window, callback_request, drive, percentiles, unix_now};
use wecom_bridge::cli::demo::samples;
use wecom_bridge::standins::finance::{FinanceStandIn, Outcome};
use wecom_bridge::wecom::crypto::CallbackCrypto;

struct Args {
    bin: PathBuf,
    repo: PathBuf,
    broker: String,
    amqp_url: String,
    prefix: String,
    closed: bool,
    rate: f64,
    seconds: f64,
    window: usize,
    connections: usize,
    route_concurrency: usize,
    deliver_concurrency: usize,
    max_requests: usize,
    drain_secs: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        bin: "target/release/wecom-bridge".into(),
        repo: ".".into(),
        broker: "embedded".into(),
        amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        prefix: format!("wbe2eload-{}", std::process::id()),
        closed: false,
        rate: 1000.0,
        seconds: 60.0,
        window: 2000,
        connections: 32,
        route_concurrency: 64,
        deliver_concurrency: 64,
        max_requests: 250_000,
        drain_secs: 120,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--bin" => a.bin = val().into(),
            "--repo" => a.repo = val().into(),
            "--broker" => a.broker = val(),
            "--amqp-url" => a.amqp_url = val(),
            "--prefix" => a.prefix = val(),
            "--mode" => a.closed = val() == "closed",
            "--rate" => a.rate = val().parse().expect("--rate per second"),
            "--seconds" => a.seconds = val().parse().expect("--seconds S"),
            "--window" => a.window = val().parse().expect("--window N"),
            "--connections" => a.connections = val().parse().expect("--connections N"),
            "--route-concurrency" => a.route_concurrency = val().parse().expect("a number"),
            "--deliver-concurrency" => a.deliver_concurrency = val().parse().expect("a number"),
            "--max-requests" => a.max_requests = val().parse().expect("--max-requests N"),
            "--drain-secs" => a.drain_secs = val().parse().expect("--drain-secs S"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(&args))
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let now = unix_now();
    let standins = StandIns::start(now - 86_400).await?;
    let finance = standins.finance.clone();
    let catalog = standins.write_catalog(&args.repo, work.path(), args.deliver_concurrency)?;
    let (public, admin) = (free_port()?, free_port()?);
    let mut bridge = Bridge::spawn(
        args,
        work.path(),
        &standins.bridge_env(&catalog),
        public,
        admin,
    )?;
    bridge.wait_ready(admin).await?;

    let n = if args.closed {
        args.max_requests
    } else {
        (args.rate * args.seconds) as usize
    };
    let run_id: u32 = rand::random();
    let sp_no = |i: usize| format!("{run_id:010}{i:08}");
    let crypto = CallbackCrypto::new(TOKEN, AES_KEY)?;
    let host = format!("127.0.0.1:{public}");
    eprintln!("building {n} signed callbacks…");
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let xml = samples::callback(CORP_ID, &sp_no(i), samples::APPROVED, 2);
            callback_request(
                &crypto,
                CORP_ID,
                (&host, "/wecom/callback"),
                &xml,
                now,
                &i.to_string(),
            )
        })
        .collect();

    let window = args.closed.then(|| {
        Arc::new(Window {
            done: 0.into(),
            size: args.window,
        })
    });
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = window.clone().map(|w| {
        let (finance, watching) = (finance.clone(), watching.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                w.done.store(finance.voucher_count(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    });
    let plan = Drive {
        connections: args.connections,
        interval: (!args.closed).then(|| Duration::from_secs_f64(1.0 / args.rate)),
        stop_after: args.closed.then(|| Duration::from_secs_f64(args.seconds)),
        window,
    };
    let cpu_before = (cpu_secs(bridge.pid())?, cpu_secs("self")?);
    let store_before = store_work(admin, bridge.pid()).await?;
    let load_before = load_average();
    let mode = if args.closed {
        format!(
            "closed loop, window {} approvals, {} s",
            args.window, args.seconds
        )
    } else {
        format!("paced at {}/s for {} s", args.rate, args.seconds)
    };
    println!(
        "broker {}: {mode}; {} connections; route concurrency {}, finance connector concurrency {} (no rate limit)",
        args.broker, args.connections, args.route_concurrency, args.deliver_concurrency
    );
    let driven = drive(&host, Arc::new(requests), &plan).await;
    let sent = driven.answered.len();
    let mut ingress: Vec<Duration> = driven.answered.iter().map(|a| a.2).collect();
    println!(
        "callbacks: {sent} answered 200, {} errors in {:.2} s; ingress latency {}",
        driven.errors,
        driven.elapsed.as_secs_f64(),
        percentiles(&mut ingress)
    );

    let drained = wait_delivered(&finance, sent, Duration::from_secs(args.drain_secs)).await;
    watching.store(false, Ordering::Relaxed);
    if let Some(w) = watcher {
        w.await?;
    }
    let cpu_after = (cpu_secs(bridge.pid())?, cpu_secs("self")?);
    let store_after = store_work(admin, bridge.pid()).await?;
    let load_after = load_average();
    let rss = bridge.peak_rss()?;

    let vouchers = finance.vouchers();
    let due: HashMap<usize, Instant> = driven.answered.iter().map(|a| (a.0, a.1)).collect();
    let mut seen: HashMap<usize, Instant> = HashMap::new();
    let mut strangers = Vec::new();
    let mut twice = 0usize;
    for v in &vouchers {
        let i = v
            .document_no
            .strip_prefix("EXP-")
            .and_then(|s| s.strip_prefix(&format!("{run_id:010}")))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|i| due.contains_key(i));
        match i {
            Some(i) => {
                if seen.insert(i, v.committed_at).is_some() {
                    twice += 1;
                }
            }
            None => strangers.push(v.document_no.clone()),
        }
    }
    let missing = sent - seen.len();
    let mut latency: Vec<Duration> = seen
        .iter()
        .map(|(i, at)| at.saturating_duration_since(due[i]))
        .collect();
    println!(
        "callback → voucher committed ({} vouchers): latency {}",
        latency.len(),
        percentiles(&mut latency)
    );
    let mut commits: Vec<Instant> = seen.values().copied().collect();
    commits.sort_unstable();
    if let (Some(first), Some(last)) = (commits.first(), commits.last()) {
        let whole = last.saturating_duration_since(driven.start).as_secs_f64();
        let (a, b) = (commits[commits.len() / 10], commits[commits.len() * 9 / 10]);
        let middle = b.saturating_duration_since(a).as_secs_f64();
        println!(
            "delivered: {} in {whole:.2} s from the first callback → {:.0} approvals/s; \
             middle 80 % at {:.0} approvals/s (first voucher {:.1} ms after start)",
            commits.len(),
            commits.len() as f64 / whole,
            (commits.len() * 8 / 10) as f64 / middle.max(f64::EPSILON),
            first.saturating_duration_since(driven.start).as_secs_f64() * 1000.0,
        );
    }
    println!(
        "bridge peak RSS (VmHWM): {rss} kB; CPU during the run: bridge {:.1} s, this process \
         (generator + stand-ins) {:.1} s; machine load average {load_before} before, {load_after} after",
        cpu_after.0 - cpu_before.0,
        cpu_after.1 - cpu_before.1
    );
    let per = |i: usize| (store_after[i] - store_before[i]) / seen.len().max(1) as f64;
    println!(
        "store per delivered approval: {:.3} durable commits (fsync), {:.3} non-durable; \
         {:.0} bytes written to disk",
        per(0),
        per(1),
        per(2)
    );
    println!(
        "at the target: {} vouchers for {sent} callbacks sent (answered 200): {missing} missing, \
         {twice} booked twice, {} for SpNos not sent; {} re-sends refused as duplicates (409)",
        vouchers.len(),
        strangers.len(),
        finance.count(Outcome::Duplicate),
    );
    bridge.stop().await?;
    ensure!(driven.errors == 0, "{} callbacks got no 200", driven.errors);
    ensure!(
        drained,
        "not every voucher arrived within {} s",
        args.drain_secs
    );
    ensure!(
        missing == 0 && twice == 0 && strangers.is_empty() && vouchers.len() == sent,
        "vouchers at the target ≠ callbacks sent"
    );
    println!("OK: vouchers at the target = callbacks sent = {sent} (no loss, no duplicates)");
    Ok(())
}

/// A loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until `want` vouchers are committed, or `quiet` passes without a new one.
async fn wait_delivered(finance: &FinanceStandIn, want: usize, quiet: Duration) -> bool {
    let (mut last, mut since) = (finance.voucher_count(), Instant::now());
    loop {
        let n = finance.voucher_count();
        if n >= want {
            return true;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        } else if since.elapsed() >= quiet {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// User + system CPU seconds of a process (`self` or a pid) from /proc.
/// The bridge's store commits so far (durable, non-durable; its metrics) and the bytes it
/// has written to disk (`/proc/PID/io`).
async fn store_work(admin: u16, pid: u32) -> anyhow::Result<[f64; 3]> {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await?
        .text()
        .await?;
    let commits = |label: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("wecom_bridge_store_commits_total") && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    let written: f64 = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no write_bytes in /proc/PID/io")?;
    Ok([
        commits(r#"durable="true""#),
        commits(r#"durable="false""#),
        written,
    ])
}

fn cpu_secs(pid: impl std::fmt::Display) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // fields after the command name (which may contain spaces) start at field 3
    let rest = &stat[stat.rfind(')').context("malformed /proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// The machine's 1-minute load average (other work on the shared cores shows here).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The `wecom-bridge serve` child process.
struct Bridge {
    child: Child,
    log: PathBuf,
}

impl Bridge {
    fn spawn(
        args: &Args,
        dir: &Path,
        settings: &[(&'static str, String)],
        public: u16,
        admin: u16,
    ) -> anyhow::Result<Bridge> {
        let log = dir.join("bridge.log");
        let config = args.repo.join("config/bridge.toml").canonicalize()?;
        let mut cmd = Command::new(&args.bin);
        cmd.arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(dir)
            .env("RUST_LOG", "error")
            .env("BRIDGE_SERVER__LISTEN", format!("127.0.0.1:{public}"))
            .env("BRIDGE_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            .env("BRIDGE_RECONCILE__ENABLED", "false")
            .env("BRIDGE_STORE__PATH", dir.join("data/bridge.redb"))
            .env(
                "BRIDGE_JOURNAL__KEYS__LOCAL-1",
                format!("file:{}", dir.join("data/journal.key").display()),
            )
            .envs(settings.iter().map(|(k, v)| (k, v)))
            // the callbacks are signed before the clock starts; a backlogged ingress must not
            // refuse them as stale (WeCom would re-sign its retries)
            .env("BRIDGE_APPS__DEMO__TIMESTAMP_WINDOW_SECS", "3600")
            .env(
                "BRIDGE_STAGES__ROUTE__CONCURRENCY",
                args.route_concurrency.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?);
        if args.broker == "rabbitmq" {
            cmd.env("BRIDGE_BROKER__KIND", "rabbitmq")
                .env("BRIDGE_BROKER__URL", &args.amqp_url)
                .env("BRIDGE_BROKER__PREFIX", &args.prefix);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", args.bin.display()))?;
        Ok(Bridge { child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` until the broker is up (60 s at most).
    async fn wait_ready(&mut self, admin: u16) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{admin}/readyz");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("the bridge exited ({status}):\n{}", self.log_text());
            }
            if let Ok(resp) = reqwest::get(&url).await
                && let Ok(text) = resp.text().await
                && text.contains(r#""state":"ok""#)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the bridge was not ready within 60 s:\n{}", self.log_text())
    }

    fn peak_rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmHWM in /proc/PID/status")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (30 s, then SIGKILL). Prints the bridge's log if it had errors.
    async fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                self.child.kill()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = self.log_text();
        if !log.trim().is_empty() {
            eprintln!("bridge log (errors only):\n{}", tail(&log, 40));
        }
        Ok(())
    }
}

impl Drop for Bridge {
    /// Never leaves a bridge behind when the run ends early (an error, a panic).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
