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

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wecom_bridge::cli::simulate::sign_event;
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
    let rest = args
        .url
        .strip_prefix("http://")
        .expect("--url must be http://host:port/path");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };

    let crypto = CallbackCrypto::new(&args.token, &args.key).expect("valid credentials");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let run_id: u32 = rand::random();
    eprintln!("building {} signed callbacks…", args.requests);
    let requests: Vec<Vec<u8>> = (0..args.requests)
        .map(|i| {
            let xml = SAMPLE
                .replace("wx5823bf96d3bd56c7", &args.receive_id)
                .replace("202506050012", &format!("{run_id:010}{i:08}"));
            let (query, body) = sign_event(&crypto, &args.receive_id, &xml, now, &i.to_string());
            format!(
                "POST {path}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let requests = Arc::new(requests);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (latencies, errors, elapsed) = rt.block_on(run(&args, host.to_string(), requests));
    report(&args, latencies, errors, elapsed);
}

async fn run(
    args: &Args,
    host: String,
    requests: Arc<Vec<Vec<u8>>>,
) -> (Vec<Duration>, usize, Duration) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (host, requests, next) = (host.clone(), requests.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut conn = TcpStream::connect(&host)
                .await
                .expect("connect to the bridge");
            conn.set_nodelay(true).ok();
            let mut buf = vec![0u8; 4096];
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests.len() {
                    break;
                }
                let scheduled = match interval {
                    Some(iv) => {
                        let at = start + iv * i as u32;
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                match round_trip(&mut conn, &requests[i], &mut buf).await {
                    Ok(200) => lat.push(scheduled.elapsed()),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = TcpStream::connect(&host).await.expect("reconnect");
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    (all, errors, start.elapsed())
}

/// Sends one request and reads one response; returns the status code.
async fn round_trip(conn: &mut TcpStream, req: &[u8], buf: &mut [u8]) -> std::io::Result<u16> {
    conn.write_all(req).await?;
    let mut filled = 0;
    loop {
        let n = conn.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        filled += n;
        let head = &buf[..filled];
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = std::str::from_utf8(&head[..end]).map_err(std::io::Error::other)?;
            let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let len: usize = text
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut have = filled - (end + 4);
            while have < len {
                let n = conn.read(&mut buf[..]).await?;
                if n == 0 {
                    return Err(std::io::Error::other("connection closed"));
                }
                have += n;
            }
            return Ok(status);
        }
        if filled == buf.len() {
            return Err(std::io::Error::other("response head too large"));
        }
    }
}

fn report(args: &Args, mut lat: Vec<Duration>, errors: usize, elapsed: Duration) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    let mode = if args.rate > 0.0 {
        format!("paced at {}/s", args.rate)
    } else {
        "closed loop".into()
    };
    println!(
        "{mode}, concurrency {}: {} ok, {} errors in {:.2} s → {:.0} callbacks/s; latency p50 {} p90 {} p99 {} max {}",
        args.concurrency,
        lat.len(),
        errors,
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
    );
    if errors > 0 {
        std::process::exit(1);
    }
}
