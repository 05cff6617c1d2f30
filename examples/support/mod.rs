//! Shared by the load examples (`loadgen`, `e2e_load`): signed callback requests built ahead
//! of time, a sender that drives them over keep-alive HTTP/1.1 connections on raw TCP (so the
//! generator spends its CPU on sending, not in a client library), and percentiles.
//!
//! Paced runs measure from each request's scheduled send time, so a stalled server shows up
//! in the percentiles (no coordinated omission).

// Each example uses a part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wecom_bridge::cli::simulate::sign_event;
use wecom_bridge::wecom::crypto::CallbackCrypto;

pub mod standins;

/// `http://host:port/path` → (`host:port`, `/path`).
pub fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .expect("the callback URL must be http://host:port/path");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    (host.to_string(), path.to_string())
}

/// The bytes of one POST of `xml` as WeCom sends it: signed and encrypted for `receive_id`.
pub fn callback_request(
    crypto: &CallbackCrypto,
    receive_id: &str,
    (host, path): (&str, &str),
    xml: &str,
    now: i64,
    nonce: &str,
) -> Vec<u8> {
    let (query, body) = sign_event(crypto, receive_id, xml, now, nonce);
    format!(
        "POST {path}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Closed-loop gate: request `i` is sent only once fewer than `size` requests sent before it
/// are still outstanding (`done` is advanced by whoever observes completions).
#[derive(Debug)]
pub struct Window {
    /// Requests completed so far.
    pub done: AtomicUsize,
    /// Most requests outstanding at once.
    pub size: usize,
}

/// How to drive the requests.
pub struct Drive {
    /// Keep-alive connections, one sender each.
    pub connections: usize,
    /// Paced: request `i` is due at start + `i` × interval. `None`: as fast as answers come.
    pub interval: Option<Duration>,
    /// Stop taking new requests after this long.
    pub stop_after: Option<Duration>,
    /// Closed-loop gate over end-to-end completion.
    pub window: Option<Arc<Window>>,
}

/// What a drive did: per answered request (index, due time, answer latency from due time),
/// errors, the start and elapsed time.
pub struct Driven {
    /// (request index, when it was due, latency of its 200 from then).
    pub answered: Vec<(usize, Instant, Duration)>,
    /// Requests that got no 200.
    pub errors: usize,
    /// When the first request was due.
    pub start: Instant,
    /// From start until the last answer.
    pub elapsed: Duration,
}

/// Sends `requests` to `host` as `drive` says and collects the answers.
pub async fn drive(host: &str, requests: Arc<Vec<Vec<u8>>>, drive: &Drive) -> Driven {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..drive.connections {
        let (host, requests, next) = (host.to_string(), requests.clone(), next.clone());
        let (interval, stop_after, window) =
            (drive.interval, drive.stop_after, drive.window.clone());
        tasks.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            let mut errors = 0usize;
            let mut conn = connect(&host).await;
            let mut buf = vec![0u8; 4096];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let over = || stop_after.is_some_and(|s| start.elapsed() >= s);
                if i >= requests.len() || over() {
                    break;
                }
                if let Some(w) = &window {
                    while i >= w.done.load(Ordering::Relaxed) + w.size && !over() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    if over() {
                        break;
                    }
                }
                let due = match interval {
                    Some(iv) => {
                        let at = start + iv * i as u32;
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                match round_trip(&mut conn, &requests[i], &mut buf).await {
                    Ok(200) => answered.push((i, due, due.elapsed())),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = connect(&host).await;
                    }
                }
            }
            (answered, errors)
        }));
    }
    let mut answered = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (a, e) = t.await.expect("a sender task panicked");
        answered.extend(a);
        errors += e;
    }
    Driven {
        answered,
        errors,
        start,
        elapsed: start.elapsed(),
    }
}

async fn connect(host: &str) -> TcpStream {
    let conn = TcpStream::connect(host)
        .await
        .unwrap_or_else(|e| panic!("connect to the bridge at {host}: {e}"));
    conn.set_nodelay(true).ok();
    conn
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

/// `p50 … p90 … p99 … max …` of `lat` (sorted here), in milliseconds.
pub fn percentiles(lat: &mut [Duration]) -> String {
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "p50 {} p90 {} p99 {} max {}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    )
}
