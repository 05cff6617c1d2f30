//! Durability: a 200 means the event is on disk. SIGKILL the real process right after
//! acknowledgements and count what survives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;
use wecom_bridge::store::{JournalFilter, Store};

use crate::support::*;

fn setup() -> (tempfile::TempDir, std::path::PathBuf, TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::new("durable");
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, config_toml(dir.path(), &[TestApp::new("durable")])).unwrap();
    (dir, config, app)
}

fn approval(n: usize) -> String {
    include_str!("../../samples/approval-approved.xml")
        .replace("wx5823bf96d3bd56c7", CORP_ID)
        .replace("202506050012", &format!("2025{n:08}"))
}

fn journal_keys(dir: &std::path::Path) -> Vec<String> {
    let store = Store::open(&dir.join("bridge.redb"), test_sealer()).unwrap();
    store
        .journal_entries(&JournalFilter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.record.business_key)
        .collect()
}

/// Callers posting at once in [`post_until_killed`].
const WORKERS: usize = 16;

/// Posts approvals from [`WORKERS`] concurrent callers to `url` until a few hundred are
/// acknowledged, SIGKILLs `server` while requests are in flight, and answers the business
/// keys that got their 200.
async fn post_until_killed(server: ServeProcess, url: &str) -> Vec<String> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (url, acked, stop) = (url.to_string(), acked.clone(), stop.clone());
        let app = TestApp::new("durable");
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                let (q, body) = signed(&app, &approval(i));
                if let Ok(resp) = client.post(format!("{url}?{q}")).body(body).send().await
                    && resp.status() == 200
                {
                    acked.lock().await.push(format!("2025{i:08}:2"));
                }
                i += WORKERS;
            }
        }));
    }
    // let a few hundred through, then kill while requests are in flight
    while acked.lock().await.len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    acked.lock().await.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_acks_loses_no_acknowledged_event() {
    let (dir, config, app) = setup();
    let server = ServeProcess::start(&config, dir.path());
    let url = format!("http://{}/cb/durable", server.public);
    let n = 60;
    for i in 0..n {
        let (q, body) = signed(&app, &approval(i));
        assert_eq!(post(&url, &q, body).await.0, 200);
    }
    server.kill9(); // immediately after the last 200
    let keys = journal_keys(dir.path());
    assert_eq!(
        keys.len(),
        n,
        "acknowledged count must equal journal count after SIGKILL"
    );
    // and the bridge restarts on that journal
    let server = ServeProcess::start(&config, dir.path());
    let ready = get_json(&format!("http://{}/readyz", server.admin)).await;
    assert_eq!(ready["journal"]["entries"], n as u64);
    assert_eq!(server.terminate().code(), Some(0), "clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_keeps_every_acknowledged_event() {
    let (dir, config, _app) = setup();
    let server = ServeProcess::start(&config, dir.path());
    let url = format!("http://{}/cb/durable", server.public);
    let acked = post_until_killed(server, &url).await;
    let journal = journal_keys(dir.path());
    for key in &acked {
        assert!(
            journal.contains(key),
            "acknowledged {key} missing after SIGKILL"
        );
    }
    // requests in flight at the kill may be journaled without their 200 (WeCom would retry
    // them and de-duplication absorbs that); never more than one per worker
    assert!(
        journal.len() >= acked.len() && journal.len() <= acked.len() + WORKERS,
        "journal {} vs acknowledged {}",
        journal.len(),
        acked.len()
    );
}

/// On the embedded broker an acknowledged callback is journaled *and* on the route queue:
/// both are written in one commit. The shipped expense mapping routes the sample's template
/// and the app has no API secret, so the route stage parks every event it takes: no message
/// ever leaves the route queue, and after a SIGKILL mid-stream the queue must hold exactly
/// one message per journal entry, whatever the route stage had reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_every_acknowledged_event_is_journaled_and_enqueued() {
    let dir = tempfile::tempdir().unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
    let toml = format!(
        "{}\n[catalog]\nmappings_dir = \"{repo}/mappings\"\nconnectors_dir = \"{repo}/connectors\"\n[reconcile]\nenabled = false\n",
        config_toml(dir.path(), &[TestApp::new("durable")])
    );
    let config = config_file(dir.path(), &toml);
    let server = ServeProcess::start(&config, dir.path());
    let url = format!("http://{}/cb/durable", server.public);
    let acked = post_until_killed(server, &url).await;
    let journal = journal_keys(dir.path());
    let store = Store::open(&dir.path().join("bridge.redb"), test_sealer()).unwrap();
    for key in &acked {
        assert!(
            journal.contains(key),
            "acknowledged {key} missing after SIGKILL"
        );
    }
    let route = store.queue_counts(&["route".to_string()]).unwrap()[0];
    let queued = route.ready + route.leased + route.delayed + route.dead;
    assert_eq!(
        queued,
        journal.len() as u64,
        "route queue {route:?} against {} journal entries ({} acknowledged)",
        journal.len(),
        acked.len()
    );
    assert!(route.dead > 0, "the route stage parked none: {route:?}");
    assert_eq!(
        store.journal_counts().unwrap().unpublished,
        0,
        "nothing is left for the outbox relay on the embedded broker"
    );
}
