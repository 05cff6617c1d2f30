//! Bridge-level faults against the real RabbitMQ: the bridge keeps accepting while RabbitMQ
//! is stopped and drains the backlog when it returns; a SIGKILLed bridge relays every
//! journaled event after restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// Restarts the RabbitMQ app when dropped, so a failing test never leaves it stopped.
struct RestartOnDrop;
impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .status();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "await_startup"])
            .status();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let st = std::process::Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl");
    assert!(st.success(), "rabbitmqctl {args:?} failed");
}

fn approval(n: usize) -> String {
    include_str!("../../samples/approval-approved.xml")
        .replace("wx5823bf96d3bd56c7", CORP_ID)
        // a leave request: no shipped mapping routes it, so the route stage records and acks
        .replace("费用报销", "请假")
        .replace("202506050012", &format!("2027{n:08}"))
}

async fn readyz(admin: &str) -> serde_json::Value {
    match reqwest::get(format!("http://{admin}/readyz")).await {
        Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

async fn wait_for(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rabbit_config(dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    let path = dir.join("bridge.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n{}",
            config_toml(dir, &[TestApp::new("faulty")]),
            rabbit_section(prefix)
        ),
    )
    .unwrap();
    path
}

/// Starts `serve` for app `faulty` in `dir` on RabbitMQ under a fresh prefix `name-…` and
/// waits until it is connected; answers the prefix, the configuration file and the process.
async fn serve_on_rabbitmq(
    dir: &std::path::Path,
    name: &str,
) -> (String, std::path::PathBuf, ServeProcess) {
    let prefix = unique(name);
    let config = rabbit_config(dir, &prefix);
    let server = ServeProcess::start(&config, dir);
    wait_for(30, "bridge connected to RabbitMQ", async || {
        readyz(&server.admin).await["broker"]["state"] == "ok"
    })
    .await;
    (prefix, config, server)
}

pub async fn rabbitmq_down_ingress_keeps_accepting_and_backlog_drains() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, _, server) = serve_on_rabbitmq(dir.path(), "wbfault").await;
    let app = TestApp::new("faulty");
    let url = format!("http://{}/cb/faulty", server.public);

    let _guard = RestartOnDrop;
    rabbitmqctl(&["-q", "stop_app"]);
    let n = 50;
    for i in 0..n {
        let (q, body) = signed(&app, &approval(i));
        let (status, _) = post(&url, &q, body).await;
        assert_eq!(
            status, 200,
            "ingress must keep answering 200 while RabbitMQ is down"
        );
    }
    wait_for(20, "backlog visible in /readyz", async || {
        let r = readyz(&server.admin).await;
        r["outbox_backlog"] == n as u64 && r["status"] == "ready"
    })
    .await;
    rabbitmqctl(&["-q", "start_app"]);
    rabbitmqctl(&["-q", "await_startup"]);
    wait_for(90, "backlog drained to zero after start_app", async || {
        let r = readyz(&server.admin).await;
        r["outbox_backlog"] == 0 && r["journal"]["entries"] == n as u64
    })
    .await;
    assert_eq!(server.terminate().code(), Some(0));
    cleanup(&prefix).await;
}

pub async fn sigkilled_bridge_relays_every_journaled_event_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, config, server) = serve_on_rabbitmq(dir.path(), "wbkill").await;
    let url = format!("http://{}/cb/faulty", server.public);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (url, stop, acked) = (url.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let app = TestApp::new("faulty");
            let client = reqwest::Client::new();
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                let (q, body) = signed(&app, &approval(i));
                if let Ok(r) = client.post(format!("{url}?{q}")).body(body).send().await
                    && r.status() == 200
                {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                i += 8;
            }
        }));
    }
    while acked.load(Ordering::SeqCst) < 400 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.load(Ordering::SeqCst) as u64;
    let server = ServeProcess::start(&config, dir.path());
    wait_for(
        60,
        "every journaled event confirmed by RabbitMQ after restart",
        async || {
            let r = readyz(&server.admin).await;
            r["outbox_backlog"] == 0 && r["journal"]["entries"].as_u64().is_some_and(|n| n >= acked)
        },
    )
    .await;
    assert_eq!(server.terminate().code(), Some(0));
    // every entry is marked published, which happens only after RabbitMQ's confirm
    // the journal key the bridge ran with, so a sealed read would open too
    let store =
        wecom_bridge::store::Store::open(&dir.path().join("bridge.redb"), test_sealer()).unwrap();
    let entries = store.journal_entries(&Default::default()).unwrap();
    assert!(entries.len() as u64 >= acked);
    assert!(
        entries.iter().all(|e| e.published),
        "an entry was never relayed"
    );
    cleanup(&prefix).await;
}

async fn cleanup(prefix: &str) {
    use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitOptions};
    if let Ok(b) = RabbitBroker::connect(
        &amqp_url(),
        RabbitOptions {
            prefix: prefix.into(),
            prefetch: 1,
            retry_tiers: vec![Duration::from_secs(1), Duration::from_secs(2)], // as in rabbit_section
            delivery_limit: 20,
            queues: vec![],
        },
    )
    .await
    {
        let _ = b.delete_queues(&["route".to_string()]).await;
        b.close().await;
    }
}
