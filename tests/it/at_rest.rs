//! Nothing in plain text at rest: the journal, the embedded queues and the dead letters of a
//! real bridge hold no decrypted payload in the database file, which is 0600; dead-letter
//! listings show payloads only when asked.

use wecom_bridge::broker::{AnyBroker, Broker, Envelope};

use crate::support::*;

const MARKER: &str = "PLAINTEXT-MARKER-6d1f0e9b";

fn approval(n: usize) -> String {
    include_str!("../../samples/approval-approved.xml")
        .replace("wx5823bf96d3bd56c7", CORP_ID)
        .replace("202506050012", &format!("20251130{n:04}"))
        .replace("同意，按差旅标准报销", MARKER)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_payload_is_stored_in_plain_text_and_dead_letters_hide_payloads_by_default() {
    // The shipped expense mapping matches the sample, and the app has no API secret, so the
    // route stage parks every approval: the dead-letter table gets the marker's events.
    let t = TestBridge::start(&[TestApp::new("at_rest")]).await;
    let app = TestApp::new("at_rest");
    for n in 0..3 {
        t.post_callback(&app, &approval(n)).await;
    }
    let dead_url = format!("http://{}/admin/dead-letters?queue=route", t.admin);
    eventually(30, "three parked approvals", || async {
        get(&dead_url).await.1.lines().count() == 3
    })
    .await;

    // metadata by default, payloads only on request
    let (status, listing) = get(&dead_url).await;
    assert_eq!(status, 200);
    assert!(!listing.contains(MARKER), "{listing}");
    assert!(listing.contains("secret is not configured"), "{listing}");
    assert!(
        listing.contains("20251130"),
        "metadata is listed: {listing}"
    );
    let (_, with_payload) = get(&format!("{dead_url}&payload=true")).await;
    assert_eq!(with_payload.matches(MARKER).count(), 3, "{with_payload}");

    // and a message waiting in a queue nobody consumes
    let Some(AnyBroker::Embedded(broker)) = t.bridge.as_ref().unwrap().broker() else {
        panic!("the test bridge runs the embedded broker");
    };
    let waiting = Envelope {
        v: 1,
        id: "evt_at_rest_waiting".into(),
        kind: "approval_change".into(),
        business_key: "at-rest-waiting".into(),
        app: "at_rest".into(),
        created_at_ms: 0,
        body: wecom_bridge::broker::Body::Legacy(format!("<xml>{MARKER}</xml>")),
    };
    broker.publish("at_rest_idle", &waiting).await.unwrap();

    let dir = t.stop().await;
    let path = dir.path().join("bridge.redb");
    let bytes = std::fs::read(&path).unwrap();
    // The search works on this file: plain metadata (journal business keys) is found...
    assert!(contains(&bytes, b"202511300000:2"));
    // ...the payloads are not.
    assert!(
        !contains(&bytes, MARKER.as_bytes()),
        "a decrypted payload is stored in plain text"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "store file mode {mode:o}");
    }

    // The payloads are all there for whoever holds the key.
    let store = wecom_bridge::store::Store::open(&path, test_sealer()).unwrap();
    let broker = wecom_bridge::broker::embedded::EmbeddedBroker::open(
        store,
        wecom_bridge::broker::embedded::EmbeddedOptions {
            prefetch: 1,
            lease: std::time::Duration::from_secs(30),
            delivery_limit: 5,
        },
    )
    .await
    .unwrap();
    let dead = broker.dead_letters("route", 10).await.unwrap();
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().all(|d| d.envelope.body_text().contains(MARKER)));
    broker.close().await;
}
