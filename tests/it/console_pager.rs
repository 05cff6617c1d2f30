//! The console's events pager over HTTP: 60 events received in the same millisecond, paged
//! 50 at a time by (received time, sequence number): every event appears exactly once (a
//! pager by time alone skips the 10 that share the last row's millisecond).

use std::collections::BTreeSet;

use wecom_bridge::store::{JournalRecord, Store, StoreError};

use crate::support::*;

const OPERATOR: &str = "pager-operator-token-52ad";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_pager_shows_every_event_once() {
    let app = TestApp::new("pager");
    let users = format!(
        "[reconcile]\nenabled = false\n[[admin.users]]\nname = \"otto\"\ntoken = \"{OPERATOR}\"\nrole = \"operator\"\n"
    );
    // 60 events received in one millisecond (as a burst is), journaled while no bridge runs
    let t = TestBridge::start_with(std::slice::from_ref(&app), &users).await;
    let config = t.config.clone();
    let dir = t.stop().await;
    {
        // the stopped bridge's last blocking store calls may still be finishing
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let store = loop {
            match Store::open(&config.store.path, test_sealer()) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => break other.unwrap(),
            }
        };
        let records: Vec<JournalRecord> = (0..60u8)
            .map(|i| JournalRecord {
                app: "pager".into(),
                kind: "approval_change".into(),
                business_key: format!("2026113000{i:02}:2"),
                received_at_ms: 1_764_500_000_000,
                content_hash: [i; 32],
                key_id: "t1".into(),
                nonce: [0; 12],
                ciphertext: vec![0; 16],
                quarantine: None,
                source: "callback".into(),
            })
            .collect();
        store.append_journal(&records).unwrap();
        drop(store);
    }
    let t = TestBridge::start_config(config, dir).await;

    // a console session
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://{}", t.admin);
    let page = c
        .get(format!("{base}/console/sign-in"))
        .send()
        .await
        .unwrap();
    let nonce_cookie = set_cookie(&page, "wb_signin");
    let signed_in = post_sign_in(&c, &format!("{base}/console"), &nonce_cookie, OPERATOR).await;
    let session = set_cookie(&signed_in, "wb_session");

    let mut seen = Vec::new();
    let mut path = "/console/events".to_string();
    for _ in 0..5 {
        let html = page_as(&c, &format!("{base}{path}"), &session).await;
        seen.extend(
            html.split("href=\"/console/event?seq=")
                .skip(1)
                .map(|s| s.split('"').next().unwrap().parse::<u64>().unwrap()),
        );
        match html.split("id=\"next-page\" href=\"").nth(1) {
            Some(rest) => path = rest.split('"').next().unwrap().replace("&amp;", "&"),
            None => break,
        }
    }
    let distinct: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), 60, "{seen:?}");
    assert_eq!(distinct.len(), 60, "no event twice: {seen:?}");
    t.stop().await;
}
