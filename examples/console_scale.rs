//! Console and admin API page times with a full store: 100,000 journaled events and 100,000
//! delivery records (with an attempt each) in a real store on disk.
//!
//! ```text
//! cargo build --release --example console_scale
//! target/release/examples/console_scale [--events 100000] [--jobs 100000] [--requests 200]
//!     [--path /console/…]…      # more paths to time (console paths with the session,
//!                               # /admin paths with the viewer token)
//! ```
//! (`scripts/console-scale.sh` runs it.)
//!
//! It fills the store through the real write paths: events through [`Journal::append`] (the
//! ingress's group-committing writer, 64 appends in flight) and marked published as the relay
//! does; jobs through [`Ledger::import`] (the ledger's own indexing code, 1,000 jobs per
//! transaction, attempts sealed like the deliver stage's). Then it starts the bridge on that
//! store (embedded broker, admin listener on port 0), signs in to the console, and times each
//! path: 5 warm-up requests, then `--requests` sequential ones, median / p99 / max. Every
//! answer must be 200; it exits non-zero otherwise.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use wecom_bridge::config::Config;
use wecom_bridge::journal::{IncomingEvent, Journal, JournalCipher};
use wecom_bridge::record::{
    AttemptPayload, AttemptRecord, Classification, JobRecord, JobState, Ledger,
};
use wecom_bridge::store::Store;

const KEY_HEX: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const VIEWER: &str = "scale-viewer-token-1b9e";
const OPERATOR: &str = "scale-operator-token-7c41";
const CONNECTORS: [&str; 4] = ["finance", "erp", "hr", "crm"];

struct Args {
    events: usize,
    jobs: usize,
    requests: usize,
    extra: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        events: 100_000,
        jobs: 100_000,
        requests: 200,
        extra: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => a.events = value()?.parse()?,
            "--jobs" => a.jobs = value()?.parse()?,
            "--requests" => a.requests = value()?.parse()?,
            "--path" => a.extra.push(value()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn sp_no(i: usize) -> String {
    format!("2026{i:08}")
}

/// A decrypted approval callback of realistic size.
fn callback_xml(i: usize) -> String {
    format!(
        "<xml><ToUserName><![CDATA[ww7a3c1e5b9d2f4a68]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
<CreateTime>{t}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[sys_approval_change]]></Event>\
<AgentID>1000002</AgentID><ApprovalInfo><SpNo>{sp}</SpNo><SpName><![CDATA[费用报销]]></SpName><SpStatus>2</SpStatus>\
<TemplateId><![CDATA[3TmALk1ogfgKiQE3e3jRwnTUhMTh8vca1XN8enFH]]></TemplateId><ApplyTime>{t}</ApplyTime>\
<Applyer><UserId><![CDATA[ZhangSan]]></UserId><Party><![CDATA[1]]></Party></Applyer>\
<SpRecord><SpStatus>2</SpStatus><ApproverAttr>1</ApproverAttr><Details><Approver><UserId><![CDATA[LiSi]]></UserId></Approver>\
<Speech><![CDATA[]]></Speech><SpStatus>2</SpStatus><SpTime>{t}</SpTime></Details></SpRecord>\
<StatuChangeEvent>2</StatuChangeEvent></ApprovalInfo></xml>",
        t = 1_764_000_000 + i,
        sp = sp_no(i),
    )
}

async fn fill_journal(store: &Store, n: usize) -> anyhow::Result<()> {
    let key: [u8; 32] = hex::decode(KEY_HEX)?.try_into().expect("32 bytes");
    let (journal, writer) = Journal::start(store.clone(), JournalCipher::with_key("s1", key), 1024);
    let workers = 64;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let journal = journal.clone();
        tasks.spawn(async move {
            for i in (w..n).step_by(workers) {
                let (kind, key, quarantine) = match i {
                    i if i % 2000 == 7 => ("unparsed", String::new(), Some("unknown event".into())),
                    i if i % 50 == 3 => ("contact_change", format!("user{i}"), None),
                    i => ("approval_change", format!("{}:2", sp_no(i)), None),
                };
                journal
                    .append(IncomingEvent {
                        app: "scale".into(),
                        kind: kind.into(),
                        business_key: key,
                        xml: callback_xml(i),
                        quarantine,
                        source: "callback".into(),
                    })
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    drop(journal);
    tokio::task::spawn_blocking(move || writer.join()).await?;
    // As the relay does once the broker confirmed them: nothing is left for the broker.
    let s = store.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        loop {
            let pending: Vec<u64> = s.outbox_pending(10_000)?.iter().map(|e| e.seq).collect();
            if pending.is_empty() {
                return Ok(());
            }
            s.mark_published(&pending)?;
        }
    })
    .await?
}

async fn fill_ledger(store: &Store, n: usize) -> anyhow::Result<(JobRecord, JobRecord)> {
    let ledger = Ledger::embedded(store.clone());
    let now = jiff::Timestamp::now().as_millisecond();
    let span = 90 * 86_400_000i64; // created over the last 90 days (the default retention)
    let mut middle = None;
    let mut dead = None;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut batch = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let created = now - span + span * i as i64 / n as i64;
            let (state, classification, status) = match i % 20 {
                0 => (JobState::Dead, Classification::Permanent, 400),
                1 => (JobState::Retrying, Classification::Retryable, 503),
                _ => (JobState::Delivered, Classification::Delivered, 201),
            };
            let key = format!("job_{:064x}", i as u128 * 0x9E37_79B9_7F4A_7C15);
            let mut captured = std::collections::BTreeMap::new();
            if state == JobState::Delivered {
                captured.insert("voucher_no".to_string(), format!("JZ-{i:06}"));
            }
            let error = (state != JobState::Delivered)
                .then(|| "target said: cost center closed".to_string());
            let job = JobRecord {
                key: key.clone(),
                state,
                connector: CONNECTORS[i % CONNECTORS.len()].into(),
                mapping: "expense-voucher".into(),
                action: "approved".into(),
                business_key: sp_no(i),
                app: "scale".into(),
                event_id: format!("evt_{i:016x}"),
                attempts: 1,
                created_at_ms: created,
                updated_at_ms: created + 120,
                first_attempt_at_ms: Some(created + 5),
                last_attempt_at_ms: Some(created + 5),
                captured: captured.clone(),
                last_error: error.clone(),
            };
            let attempt = AttemptRecord {
                number: 1,
                started_at_ms: created + 5,
                duration_ms: 110,
                method: "POST".into(),
                url: "https://erp.example.com/api/v1/vouchers".into(),
                status: Some(status),
                classification,
                reason: error,
                captured,
                payload: Some(AttemptPayload {
                    request_headers: vec![("content-type".into(), "application/json".into())],
                    request_body: Some(format!(
                        "{{\"bill_no\":\"EXP-{}\",\"lines\":[{}]}}",
                        sp_no(i),
                        "{\"account\":\"6602\",\"debit\":\"1999.99\"},".repeat(8)
                    )),
                    response_headers: vec![("content-type".into(), "application/json".into())],
                    response_body: Some(format!("{{\"voucher_no\":\"JZ-{i:06}\"}}")),
                }),
            };
            let sealed = ledger.seal_attempt(&key, attempt)?;
            if i == n / 2 {
                middle = Some(job.clone());
            }
            if state == JobState::Dead && i < n / 2 {
                dead = Some(job.clone());
            }
            batch.push((job, vec![sealed]));
        }
        ledger.import(batch).await?;
    }
    Ok((middle.context("no jobs")?, dead.context("no dead job")?))
}

fn config(dir: &std::path::Path) -> anyhow::Result<Config> {
    for folder in ["mappings", "connectors"] {
        std::fs::create_dir_all(dir.join(folder))?;
    }
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[admin.users]]
name = "viewer"
token = "{VIEWER}"
role = "viewer"
[[admin.users]]
name = "operator"
token = "{OPERATOR}"
role = "operator"
[store]
path = "{store}"
[journal]
active_key = "s1"
keys = {{ s1 = "{KEY_HEX}" }}
[reconcile]
enabled = false
[catalog]
mappings_dir = "{mappings}"
connectors_dir = "{connectors}"
[log]
level = "warn"
[apps.scale]
path = "/wecom/callback"
token = "Qz7vN8wPq3LkT5rYb2Hc"
encoding_aes_key = "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZrh"
receive_ids = ["ww7a3c1e5b9d2f4a68"]
"#,
        store = dir.join("bridge.redb").display(),
        mappings = dir.join("mappings").display(),
        connectors = dir.join("connectors").display(),
    );
    Ok(Config::from_toml(&toml)?)
}

/// A console session: signs in with the operator token.
async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let page = client.get(format!("{base}/console/sign-in")).send().await?;
    let nonce_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .find(|c| c.starts_with("wb_signin="))
        .context("no sign-in cookie")?;
    let nonce = nonce_cookie.trim_start_matches("wb_signin=").to_string();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", OPERATOR), ("nonce", nonce.as_str())])
        .finish();
    let r = client
        .post(format!("{base}/console/sign-in"))
        .header("cookie", &nonce_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .find(|c| c.starts_with("wb_session="))
        .context("signing in gave no session")
}

struct Timing {
    path: String,
    bytes: usize,
    median: Duration,
    p99: Duration,
    max: Duration,
}

async fn time_path(
    client: &reqwest::Client,
    base: &str,
    session: &str,
    path: &str,
    n: usize,
) -> anyhow::Result<Timing> {
    let mut times = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..n + 5 {
        let mut rb = client.get(format!("{base}{path}"));
        rb = if path.starts_with("/admin") {
            rb.bearer_auth(VIEWER)
        } else {
            rb.header("cookie", session)
        };
        let started = Instant::now();
        let r = rb.send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        let took = started.elapsed();
        ensure!(
            status == 200,
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        if i >= 5 {
            times.push(took);
            bytes = body.len();
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(Timing {
        path: path.to_string(),
        bytes,
        median: at(0.5),
        p99: at(0.99),
        max: *times.last().expect("n > 0"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    ensure!(
        a.requests > 0 && a.events > 2000 && a.jobs > 100,
        "too small to measure"
    );
    let dir = tempfile::tempdir()?;
    let config = config(dir.path())?;
    let key: [u8; 32] = hex::decode(KEY_HEX)?.try_into().expect("32 bytes");
    let sealer = JournalCipher::with_key("s1", key).sealer();
    let store = Store::open(&config.store.path, sealer)?;

    let started = Instant::now();
    fill_journal(&store, a.events).await?;
    let journal_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (middle_job, dead_job) = fill_ledger(&store, a.jobs).await?;
    let ledger_secs = started.elapsed().as_secs_f64();
    let middle_event = store
        .journal_entry((a.events / 2) as u64)?
        .context("no middle event")?;
    let counts = store.journal_counts()?;
    drop(store);
    let file_mb = std::fs::metadata(&config.store.path)?.len() as f64 / 1e6;
    println!(
        "filled: {} events in {journal_secs:.1} s, {} jobs in {ledger_secs:.1} s; store {file_mb:.0} MB",
        counts.entries, a.jobs
    );

    let bridge = wecom_bridge::app::start(&config).await?;
    let base = format!("http://{}", bridge.admin_addr);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let session = sign_in(&client, &base).await?;

    let deep_event =
        jiff::Timestamp::from_millisecond(middle_event.record.received_at_ms)?.to_string();
    let deep_cursor = format!("{}.{}", middle_job.created_at_ms, middle_job.key);
    let deep_until = jiff::Timestamp::from_millisecond(middle_job.created_at_ms)?.to_string();
    let sp = &middle_job.business_key;
    let mut paths: Vec<String> = vec![
        "/console/overview".into(),
        format!("/console/journey?sp_no={sp}"),
        "/console/journey?applicant=ZhangSan".into(),
        "/console/deliveries".into(),
        format!("/console/deliveries?state=dead&until={deep_until}"),
        "/console/connectors".into(),
        "/console/playground".into(),
        "/console/events".into(),
        format!("/console/events?before={deep_event}"),
        "/console/events?kind=contact_change".into(),
        "/console/events?quarantined=1".into(),
        format!("/console/event?seq={}", middle_event.seq),
        "/console/audit".into(),
        "/console/dead-letters?queue=deliver.finance".into(),
        "/admin/events?limit=50".into(),
        format!("/admin/events?limit=50&until={deep_event}"),
        "/admin/events?limit=50&kind=contact_change".into(),
        "/admin/deliveries?limit=50".into(),
        format!("/admin/deliveries?limit=50&cursor={deep_cursor}"),
        format!("/admin/deliveries?limit=50&until={deep_until}"),
        format!("/admin/deliveries?sp_no={sp}"),
        "/admin/deliveries?state=dead&limit=50".into(),
        "/admin/deliveries?connector=erp&state=retrying&limit=50".into(),
        format!("/admin/deliveries/{}", dead_job.business_key),
        "/admin/audit?limit=100".into(),
    ];
    paths.extend(a.extra.iter().cloned());

    println!(
        "\n| path | bytes | median ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let mut worst = Duration::ZERO;
    for path in &paths {
        let t = time_path(&client, &base, &session, path, a.requests).await?;
        worst = worst.max(t.p99);
        println!(
            "| `{}` | {} | {:.2} | {:.2} | {:.2} |",
            t.path,
            t.bytes,
            t.median.as_secs_f64() * 1e3,
            t.p99.as_secs_f64() * 1e3,
            t.max.as_secs_f64() * 1e3
        );
    }
    println!(
        "\nworst p99: {:.2} ms over {} paths × {} requests",
        worst.as_secs_f64() * 1e3,
        paths.len(),
        a.requests
    );
    bridge.shutdown().await;
    Ok(())
}
