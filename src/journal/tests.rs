//! The journal's writer, cipher and keys, and the outbox relay (hand-off and outbox reads).

use super::*;

fn ev(xml: &str) -> IncomingEvent {
    IncomingEvent {
        app: "demo".into(),
        kind: "approval_change".into(),
        business_key: "1:2".into(),
        xml: xml.into(),
        quarantine: None,
        source: "callback".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("j.redb"), crate::store::test_sealer()).unwrap();
    let (journal, writer) = Journal::start(store, JournalCipher::with_key("k", [7; 32]), 64);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let j = journal.clone();
        // every event twice: the second must be a duplicate of the first
        tasks.push(tokio::spawn(async move {
            j.append(ev(&format!("<xml>{i}</xml>"))).await
        }));
        let j = journal.clone();
        tasks.push(tokio::spawn(async move {
            j.append(ev(&format!("<xml>{i}</xml>"))).await
        }));
    }
    let mut appended = 0;
    let mut dups = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            AppendOutcome::Appended(_) => appended += 1,
            AppendOutcome::Duplicate(_) => dups += 1,
        }
    }
    assert_eq!((appended, dups), (200, 200));
    let views = journal.list(&JournalFilter::default(), true).unwrap();
    assert_eq!(views.len(), 200);
    assert!(
        views
            .iter()
            .all(|v| v.payload.as_deref().unwrap().starts_with("<xml>"))
    );
    drop(journal);
    writer.join();
}

#[tokio::test]
async fn payload_is_encrypted_at_rest_and_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("j.redb"), crate::store::test_sealer()).unwrap();
    let (journal, writer) =
        Journal::start(store.clone(), JournalCipher::with_key("k1", [1; 32]), 8);
    journal
        .append(ev("<xml>secret-approval-content</xml>"))
        .await
        .unwrap();
    let rec = store.journal_entry(1).unwrap().unwrap().record;
    assert!(!String::from_utf8_lossy(&rec.ciphertext).contains("secret-approval"));
    assert_eq!(rec.key_id, "k1");
    assert_eq!(
        journal.cipher().open(&rec).unwrap(),
        "<xml>secret-approval-content</xml>"
    );
    let other = JournalCipher::with_key("k1", [2; 32]);
    assert!(matches!(other.open(&rec), Err(JournalError::Key(_))));
    let rotated = JournalCipher::with_key("k2", [1; 32]);
    let e = rotated.open(&rec).unwrap_err().to_string();
    assert!(e.contains("`k1`"), "{e}");
    drop(journal);
    writer.join();
}

#[test]
fn key_file_is_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/journal.key");
    let cfg = JournalConfig {
        keys: [("local-1".to_string(), SecretRef::File(path.clone()))].into(),
        create_key_if_missing: true,
        ..Default::default()
    };
    JournalCipher::from_config(&cfg).unwrap();
    let first = std::fs::read_to_string(&path).unwrap();
    JournalCipher::from_config(&cfg).unwrap();
    assert_eq!(first, std::fs::read_to_string(&path).unwrap());
    assert_eq!(first.trim().len(), 64);
    let strict = JournalConfig {
        keys: [(
            "local-1".to_string(),
            SecretRef::File(dir.path().join("missing")),
        )]
        .into(),
        create_key_if_missing: false,
        ..Default::default()
    };
    assert!(JournalCipher::from_config(&strict).is_err());
}

/// A journal, a relay publishing to an embedded broker on its own store, and a way to stop.
struct Relayed {
    journal: Journal,
    writer: JournalWriter,
    broker: EmbeddedBroker,
    stop: crate::stage::ShutdownTrigger,
    shutdown: crate::stage::Shutdown,
    relay: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Relayed {
    /// `handoff_capacity`: how far the writer may run ahead of the relay.
    async fn new(handoff_capacity: usize) -> Relayed {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("j.redb"), crate::store::test_sealer()).unwrap();
        let (journal, writer) = Journal::start_with(
            store,
            JournalCipher::with_key("k", [3; 32]),
            64,
            handoff_capacity,
        );
        let broker_store =
            Store::open(&dir.path().join("b.redb"), crate::store::test_sealer()).unwrap();
        let opts = crate::broker::embedded::EmbeddedOptions {
            prefetch: 16,
            lease: Duration::from_secs(30),
            delivery_limit: 5,
        };
        let broker = EmbeddedBroker::open(broker_store, opts).await.unwrap();
        let (stop, shutdown) = crate::stage::Shutdown::channel();
        Relayed {
            journal,
            writer,
            broker,
            stop,
            shutdown,
            relay: None,
            _dir: dir,
        }
    }

    /// Starts the relay on `journal` (the test's journal, or a copy of it).
    fn start_relay(&mut self, journal: Journal) {
        let relay = relay::run(journal, self.broker.clone(), self.shutdown.clone());
        self.relay = Some(tokio::spawn(relay));
    }

    async fn append_many(&self, from: usize, n: usize) {
        let appends = (from..from + n).map(|i| {
            let j = self.journal.clone();
            tokio::spawn(async move { j.append(ev(&format!("<xml>{i}</xml>"))).await })
        });
        for a in appends.collect::<Vec<_>>() {
            assert!(matches!(
                a.await.unwrap().unwrap(),
                AppendOutcome::Appended(_)
            ));
        }
    }

    /// Waits until the outbox is empty, then returns the messages on the route queue.
    async fn published(&self) -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.journal.store().journal_counts().unwrap().unpublished > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the outbox did not drain"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let depths = crate::broker::Broker::depths(&self.broker, &[ROUTE_QUEUE.to_string()])
            .await
            .unwrap();
        depths[0].ready
    }

    async fn finish(mut self) {
        self.stop.stop();
        if let Some(relay) = self.relay.take() {
            relay.await.unwrap();
        }
        self.broker.close().await;
        drop(self.journal);
        self.writer.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_handed_off_entries_without_reading_them_back() {
    let mut t = Relayed::new(writer::HANDOFF_CAPACITY).await;
    // a relay whose cipher opens nothing it reads from the store: what it publishes came
    // from the hand-off
    let blind = Journal {
        cipher: JournalCipher::with_key("k", [9; 32]),
        ..t.journal.clone()
    };
    t.start_relay(blind);
    t.append_many(0, 300).await;
    assert_eq!(
        t.published().await,
        300,
        "each entry published exactly once"
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_what_the_outbox_holds_at_start_once() {
    let mut t = Relayed::new(writer::HANDOFF_CAPACITY).await;
    // journaled while no relay ran (as after a crash); the hand-off holds them as well
    t.append_many(0, 50).await;
    assert_eq!(t.journal.store().journal_counts().unwrap().unpublished, 50);
    t.start_relay(t.journal.clone());
    assert_eq!(t.published().await, 50);
    t.append_many(50, 50).await;
    assert_eq!(t.published().await, 100, "no entry published twice");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reads_the_outbox_when_hand_offs_were_dropped() {
    // a hand-off channel of one entry: most hand-offs are dropped
    let mut t = Relayed::new(1).await;
    t.start_relay(t.journal.clone());
    t.append_many(0, 20).await;
    assert_eq!(t.published().await, 20);
    t.append_many(20, 300).await;
    assert_eq!(
        t.published().await,
        320,
        "every entry published exactly once"
    );
    t.finish().await;
}
