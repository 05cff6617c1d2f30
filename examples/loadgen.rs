//! Load generator for the callback endpoint: distinct, validly signed and encrypted approval
//! callbacks over keep-alive HTTP/1.1 connections on loopback.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080/wecom/callback \
//!     --concurrency 64 --requests 100000            # closed loop: maximum throughput
//! cargo run --release --example loadgen -- --rate 5000 --seconds 10   # paced: latency at a rate
//! ```
//! All requests are built (signed, encrypted) before the clock starts, so the generator spends
//! its CPU on sending. Latency of paced runs is measured from each request's scheduled send
//! time, so a stalled server shows up in the percentiles (no coordinated omission).
//! Uses the demo app's credentials unless `--token/--key/--receive-id` are given.
//!
//! ```text
//! cargo run --release --example loadgen -- --standins DIR [--repo .] [--concurrency 8]
//! ```
//! does not send anything: it runs the stand-ins a routed load needs (WeCom's API answering
//! `getapprovaldetail` for every SpNo, the finance voucher API, its token endpoint), writes a
//! catalog with the shipped expense mappings and `finance` connector (that concurrency)
//! pointed at them into `DIR/catalog`, and the bridge settings that use them into
//! `DIR/bridge.env` (`KEY=VALUE` lines, written last), then serves until SIGTERM/SIGINT and
//! prints how many vouchers the finance stand-in committed. The callbacks this generator
//! sends are approved 费用报销 forms, so with those settings the route stage fetches, maps and
//! delivers every one (`ROUTED=1 scripts/load.sh`).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::standins::StandIns;
use support::{Drive, callback_request, drive, percentiles, split_url, unix_now};
use wecom_bridge::wecom::crypto::CallbackCrypto;

struct Args {
    url: String,
    concurrency: usize,
    requests: usize,
    rate: f64,
    seconds: f64,
    token: String,
    key: String,
    receive_id: String,
    standins: Option<std::path::PathBuf>,
    repo: std::path::PathBuf,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080/wecom/callback".into(),
        concurrency: 64,
        requests: 50_000,
        rate: 0.0,
        seconds: 10.0,
        token: "QDG6eK".into(),
        key: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C".into(),
        receive_id: "wx5823bf96d3bd56c7".into(),
        standins: None,
        repo: ".".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val(),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency N"),
            "--requests" => a.requests = val().parse().expect("--requests N"),
            "--rate" => a.rate = val().parse().expect("--rate per second"),
            "--seconds" => a.seconds = val().parse().expect("--seconds S"),
            "--token" => a.token = val(),
            "--key" => a.key = val(),
            "--receive-id" => a.receive_id = val(),
            "--standins" => a.standins = Some(val().into()),
            "--repo" => a.repo = val().into(),
            "--bench" => {} // passed by `cargo bench`; ignored
            other => panic!("unknown argument {other}"),
        }
    }
    if a.rate > 0.0 {
        a.requests = (a.rate * a.seconds) as usize;
    }
    a
}

const SAMPLE: &str = include_str!("../samples/approval-approved.xml");

fn main() {
    let args = parse_args();
    if let Some(dir) = &args.standins {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        if let Err(e) = rt.block_on(serve_standins(&args, dir)) {
            eprintln!("stand-ins: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let (host, path) = split_url(&args.url);
    let crypto = CallbackCrypto::new(&args.token, &args.key).expect("valid credentials");
    let now = unix_now();
    let run_id: u32 = rand::random();
    eprintln!("building {} signed callbacks…", args.requests);
    let requests: Vec<Vec<u8>> = (0..args.requests)
        .map(|i| {
            let xml = SAMPLE
                .replace("wx5823bf96d3bd56c7", &args.receive_id)
                .replace("202506050012", &format!("{run_id:010}{i:08}"));
            callback_request(
                &crypto,
                &args.receive_id,
                (&host, &path),
                &xml,
                now,
                &i.to_string(),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let plan = Drive {
        connections: args.concurrency,
        interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate)),
        stop_after: None,
        window: None,
    };
    let driven = rt.block_on(drive(&host, Arc::new(requests), &plan));
    let mut lat: Vec<Duration> = driven.answered.iter().map(|a| a.2).collect();
    let mode = if args.rate > 0.0 {
        format!("paced at {}/s", args.rate)
    } else {
        "closed loop".into()
    };
    println!(
        "{mode}, concurrency {}: {} ok, {} errors in {:.2} s → {:.0} callbacks/s; latency {}",
        args.concurrency,
        lat.len(),
        driven.errors,
        driven.elapsed.as_secs_f64(),
        lat.len() as f64 / driven.elapsed.as_secs_f64(),
        percentiles(&mut lat),
    );
    if driven.errors > 0 {
        std::process::exit(1);
    }
}

/// `--standins DIR`: runs the stand-ins until SIGTERM/SIGINT (see the module comment).
async fn serve_standins(args: &Args, dir: &std::path::Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let standins = StandIns::start(unix_now() - 86_400).await?;
    std::fs::create_dir_all(dir)?;
    let catalog = standins.write_catalog(&args.repo, dir, args.concurrency)?;
    let env: String = standins
        .bridge_env(&catalog)
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    // Written whole under another name, then renamed: whoever waits for the file reads it all.
    let partial = dir.join("bridge.env.partial");
    std::fs::write(&partial, env)?;
    std::fs::rename(&partial, dir.join("bridge.env"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!(
        "finance stand-in: {} vouchers committed ({} documents twice); WeCom stand-in: {} getapprovaldetail calls",
        standins.finance.voucher_count(),
        standins.finance.duplicate_vouchers(),
        standins.wecom.calls("getapprovaldetail"),
    );
    Ok(())
}
