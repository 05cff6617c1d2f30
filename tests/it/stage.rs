//! The stage contract through the route stage, on both broker back ends: a WeCom rate-limit
//! answer's wait reaches the broker as the retry delay, a permanent error parks at once, and
//! each kind of delivery job carries a typed mapping input.

use std::time::Duration;

use serde_json::{Value, json};
use wecom_bridge::broker::AnyBroker;
use wecom_bridge::map::input::MapInput;
use wecom_bridge::standins::wecom::FakeWeCom;
use wecom_bridge::store::{QueueOp, Store};

use crate::route::{
    broker_of, callback, detail, one_job_from_vector, remove_rabbit_queues, start_bridge,
};
use crate::support::*;

/// Tiers with a short one (the route schedule's only delay) and one at WeCom's 60 s window.
const TIERS: &str = "retry_tiers_secs = [1, 60]";
/// Without a hint, a retry would come back after 1 s.
const STAGES: &str = "[stages.route]\nretry_secs = [1]\n";

fn embedded_section() -> String {
    format!("[broker]\n{TIERS}\n{STAGES}")
}

fn rabbit_section_60(prefix: &str) -> String {
    format!(
        "[broker]\nkind = \"rabbitmq\"\nurl = \"{}\"\nprefix = \"{prefix}\"\n{TIERS}\n{STAGES}",
        amqp_url()
    )
}

async fn route_depth(broker: &AnyBroker) -> wecom_bridge::broker::QueueDepth {
    broker.depths(&["route".to_string()]).await.unwrap()[0].clone()
}

/// Starts bridge `name` (with `section`) and posts an approved callback whose first detail
/// fetch WeCom answers with `errcode`; returns the time just before the post, Unix ms.
async fn approval_whose_detail_fails(
    name: &str,
    section: &str,
    errcode: i64,
) -> (TestBridge, FakeWeCom, AnyBroker, i64) {
    let fake = FakeWeCom::start().await;
    let sp = "202506051111";
    fake.add_approval(detail(sp, 2));
    fake.fail_next("getapprovaldetail", errcode, 1);
    let (t, app) = start_bridge(name, &fake, section).await;
    let broker = broker_of(&t).await;
    let before = jiff::Timestamp::now().as_millisecond();
    t.post_callback(&app, &callback(sp, 2, 2)).await;
    (t, fake, broker, before)
}

/// Posts an approved callback whose detail fetch WeCom answers with 45009 once; returns when
/// the route stage has settled it as a retry.
async fn rate_limited_approval(
    name: &str,
    section: &str,
) -> (TestBridge, FakeWeCom, AnyBroker, i64) {
    let (t, fake, broker, before) = approval_whose_detail_fails(name, section, 45009).await;
    eventually(
        30,
        "the rate-limited event waiting for its retry",
        || async { route_depth(&broker).await.delayed == 1 },
    )
    .await;
    assert_eq!(
        fake.calls("getapprovaldetail"),
        1,
        "the client handed the 45009 to the stage instead of waiting it out"
    );
    (t, fake, broker, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_rate_limit_wait_reaches_the_broker_as_the_retry_delay() {
    let (t, fake, broker, before) = rate_limited_approval("rl_emb", &embedded_section()).await;
    let depth = route_depth(&broker).await;
    assert_eq!((depth.ready, depth.dead), (0, 0), "{depth:?}");
    let path = t.config.store.path.clone();
    let t_config = t.config.clone();
    let _dir = t.stop().await;
    // The broker's not-before time, read from its store once the bridge is stopped.
    let cipher = wecom_bridge::journal::JournalCipher::from_config(&t_config.journal).unwrap();
    let store = Store::open(&path, cipher.sealer()).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let outcome = store
        .queue_apply(
            &[QueueOp::Promote {
                now_ms: now,
                delivery_limit: 20,
            }],
            false,
        )
        .unwrap();
    assert!(outcome.woken.is_empty(), "nothing became due early");
    let due = outcome.next_due_ms.expect("the retry is scheduled");
    assert!(
        due >= before + 60_000,
        "retried after {} ms, not after WeCom's 60 s",
        due - before
    );
    assert!(due <= now + 61_000, "the 60 s tier, not a longer one");
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_rate_limit_wait_reaches_the_broker_as_the_retry_delay() {
    let prefix = unique("wbrl");
    let (t, fake, broker, _) = rate_limited_approval("rl_rmq", &rabbit_section_60(&prefix)).await;
    let AnyBroker::Rabbitmq(b) = &broker else {
        panic!("configured for RabbitMQ")
    };
    let tiers = b.delayed_by_tier("route").await.unwrap();
    assert_eq!(
        tiers,
        vec![(Duration::from_secs(1), 0), (Duration::from_secs(60), 1)],
        "the retry waits in the 60 s delay queue, not the 1 s one"
    );
    remove_rabbit_queues(&broker).await;
    t.stop().await;
    fake.stop().await;
}

async fn permanent_error_parks_at_once(name: &str, section: &str) {
    // 60011: the app may not see this applicant; retrying cannot help
    let (t, fake, broker, _) = approval_whose_detail_fails(name, section, 60011).await;
    eventually(30, "the event parked", || async {
        route_depth(&broker).await.dead == 1
    })
    .await;
    let parked = broker.dead_letters("route", 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempts, 1, "parked on the first attempt");
    assert!(parked[0].reason.contains("60011"), "{}", parked[0].reason);
    assert_eq!(fake.calls("getapprovaldetail"), 1);
    assert_eq!(route_depth(&broker).await.delayed, 0);
    remove_rabbit_queues(&broker).await;
    t.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_permanent_wecom_error_parks_at_once() {
    permanent_error_parks_at_once("perm_emb", &embedded_section()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_permanent_wecom_error_parks_at_once() {
    let prefix = unique("wbperm");
    permanent_error_parks_at_once("perm_rmq", &rabbit_section_60(&prefix)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_change_job_carries_a_snake_case_contact_record() {
    let fake = FakeWeCom::start().await;
    fake.add_user(json!({
        "errcode": 0, "userid": "SunQi", "name": "孙七", "department": [5, 12],
        "mobile": "13800000007", "position": "财务专员", "status": 1
    }));
    let (t, job, _catalog) = one_job_from_vector(
        &fake,
        "hr_app",
        (
            "hr",
            "new-members",
            "event = \"contact\"\nchange_types = [\"create_user\"]",
        ),
        "contact_create_user",
    )
    .await;
    let MapInput::Contact(record) = &job.input else {
        panic!("not a typed contact input: {:?}", job.input)
    };
    assert!(record.directory_fetched, "user/get was merged in");
    let doc: Value = job.input.to_value();
    assert_eq!(doc["user_id"], "SunQi", "{doc}");
    assert_eq!(doc["name"], "孙七", "{doc}");
    assert_eq!(doc["department_ids"], json!(["5", "12"]), "{doc}");
    assert_eq!(doc["mobile"], "13800000007", "{doc}");
    assert_eq!(doc["change_type"], "create_user", "{doc}");
    assert_eq!(fake.calls("user/get"), 1);
    t.stop().await;
    fake.stop().await;
}

/// Decodes a frozen envelope fixture.
fn fixture(name: &str) -> (wecom_bridge::broker::Envelope, wecom_bridge::stage::Message) {
    let path = format!(
        "{}/tests/fixtures/envelopes/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let env = wecom_bridge::broker::Envelope::from_bytes(&bytes).unwrap();
    let msg = wecom_bridge::stage::Message::decode(&env).unwrap();
    (env, msg)
}

fn job_of(msg: wecom_bridge::stage::Message) -> wecom_bridge::stage::DeliveryJob {
    match msg {
        wecom_bridge::stage::Message::DeliveryJob(job) => job,
        other => panic!("not a job: {other:?}"),
    }
}

#[test]
fn frozen_event_envelopes_of_both_versions_decode() {
    for (name, v) in [
        ("v1_event_approval_change", 1),
        ("v2_event_approval_change", 2),
    ] {
        let (env, msg) = fixture(name);
        assert_eq!(env.v, v, "{name}");
        let wecom_bridge::stage::Message::Event {
            id,
            kind,
            app,
            business_key,
            xml,
            ..
        } = msg
        else {
            panic!("{name}: not an event")
        };
        assert_eq!(id.as_str(), "evt_5d1f0c3b2a4e6f7081928374", "{name}");
        assert_eq!(
            (kind.as_str(), app.as_str(), business_key.as_str()),
            ("approval_change", "demo", "202506050012:2")
        );
        assert!(
            matches!(
                wecom_bridge::wecom::event::parse_event(&xml).unwrap(),
                wecom_bridge::wecom::event::InboundEvent::ApprovalChange(_)
            ),
            "{name}"
        );
    }
}

#[test]
fn frozen_approval_jobs_of_both_versions_decode_to_the_same_document() {
    let (_, v1) = fixture("v1_delivery_job_approval");
    let (env2, v2) = fixture("v2_delivery_job_approval");
    let (v1, v2) = (job_of(v1), job_of(v2));
    assert_eq!(env2.v, 2);
    assert!(matches!(v2.input, MapInput::Approval(_)), "v2 is typed");
    assert_eq!(v1.key, v2.key, "the same idempotency key");
    assert_eq!(v1.key.as_str(), env2.id);
    assert_eq!(
        v1.input.to_value(),
        v2.input.to_value(),
        "mappings read the same"
    );
    assert_eq!(v2.input.to_value()["sp_no"], "202506050012");
    assert_eq!(
        (v1.mapping.as_str(), v1.connector.as_str()),
        ("expense-voucher", "finance")
    );
}

#[test]
fn frozen_contact_and_customer_jobs_of_both_versions_decode_to_typed_records() {
    for version in ["v1", "v2"] {
        let job = job_of(fixture(&format!("{version}_delivery_job_contact")).1);
        let MapInput::Contact(c) = &job.input else {
            panic!("{version}: not a contact: {:?}", job.input)
        };
        assert_eq!(c.user_id.as_deref(), Some("SunQi"), "{version}");
        assert_eq!(c.name.as_deref(), Some("孙七"), "{version}");
        assert_eq!(c.department_ids, ["5", "12"], "{version}");
        assert_eq!(c.mobile.as_deref(), Some("13800000007"), "{version}");
        assert!(c.directory_fetched, "{version}");
        let job = job_of(fixture(&format!("{version}_delivery_job_customer")).1);
        let MapInput::Customer(x) = &job.input else {
            panic!("{version}: not a customer: {:?}", job.input)
        };
        assert_eq!(
            x.external_user_id, "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw",
            "{version}"
        );
        assert_eq!(x.name.as_deref(), Some("李客户"), "{version}");
        assert_eq!(x.follow_users.len(), 1, "{version}");
    }
}

mod run_loop {
    //! `stage::run` with a probe handler on the embedded broker: concurrency, every
    //! disposition, and an undecodable envelope.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use wecom_bridge::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
    use wecom_bridge::broker::{Body, Broker, Envelope};
    use wecom_bridge::stage::message::event_envelope;
    use wecom_bridge::stage::{Disposition, EventId, Handler, Message, RetryPolicy, Shutdown};
    use wecom_bridge::store::Store;

    use crate::support::eventually;

    /// Holds every message until the test lets it go, and records how many were held at once.
    struct Probe {
        current: AtomicUsize,
        max: AtomicUsize,
        gate: tokio::sync::Semaphore,
    }

    impl Handler for Probe {
        fn stage(&self) -> &'static str {
            "probe"
        }

        async fn handle(&self, msg: Message, _attempt: u32) -> Disposition {
            let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(now, Ordering::SeqCst);
            let permit = self.gate.acquire().await;
            self.current.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            let Message::Event { xml, .. } = msg else {
                return Disposition::park("not an event");
            };
            match xml.as_str() {
                "retry" => Disposition::Retry {
                    reason: "asked to wait".into(),
                    hint: Some(Duration::from_secs(45)),
                },
                "park" => Disposition::park("operator must look"),
                _ => Disposition::done("ok"),
            }
        }
    }

    fn event(id: &str, xml: &str) -> Envelope {
        event_envelope(&EventId::new(id), "test", id, "demo", 1, xml.into())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loop_bounds_concurrency_and_settles_every_disposition() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("stage.redb"),
            crate::support::test_sealer(),
        )
        .unwrap();
        let broker = EmbeddedBroker::open(
            store,
            EmbeddedOptions {
                prefetch: 16,
                lease: Duration::from_secs(60),
                delivery_limit: 20,
            },
        )
        .await
        .unwrap();
        let q = "probe";
        for i in 0..6 {
            broker
                .publish(q, &event(&format!("ok{i}"), "ok"))
                .await
                .unwrap();
        }
        broker.publish(q, &event("r1", "retry")).await.unwrap();
        broker.publish(q, &event("p1", "park")).await.unwrap();
        let unknown = Envelope::new(
            "x1",
            "test",
            "x1",
            "demo",
            1,
            serde_json::json!({"type": "writeback_v9"}),
        );
        broker.publish(q, &unknown).await.unwrap();
        let legacy_garbage = Envelope {
            v: 1,
            kind: "delivery_job".into(),
            body: Body::Legacy("{not json".into()),
            ..event("x2", "")
        };
        broker.publish(q, &legacy_garbage).await.unwrap();

        let probe = Arc::new(Probe {
            current: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        });
        let policy = RetryPolicy::new("stages.probe", &[1], &[1, 60], 5, None).unwrap();
        let (trigger, shutdown) = Shutdown::channel();
        let task = tokio::spawn(wecom_bridge::stage::run(
            broker.clone(),
            q.to_string(),
            probe.clone(),
            policy,
            3,
            shutdown,
        ));
        eventually(20, "three messages held at once", || async {
            probe.current.load(Ordering::SeqCst) == 3
        })
        .await;
        probe.gate.add_permits(100);
        eventually(20, "everything settled", || async {
            let d = broker.depths(&[q.to_string()]).await.unwrap()[0].clone();
            d.ready == 0 && d.unacked == 0 && d.delayed == 1 && d.dead == 3
        })
        .await;
        assert_eq!(
            probe.max.load(Ordering::SeqCst),
            3,
            "never more than `concurrency`"
        );
        let parked = broker.dead_letters(q, 10).await.unwrap();
        let reason = |id: &str| {
            parked
                .iter()
                .find(|d| d.envelope.id == id)
                .map(|d| d.reason.clone())
                .unwrap_or_else(|| panic!("{id} not parked: {parked:?}"))
        };
        assert_eq!(reason("p1"), "operator must look");
        assert!(
            reason("x1").starts_with("cannot be decoded: message x1"),
            "{}",
            reason("x1")
        );
        assert!(
            reason("x2").contains("cannot be decoded"),
            "{}",
            reason("x2")
        );
        assert!(parked.iter().all(|d| d.attempts == 1));
        trigger.stop();
        task.await.unwrap();
        broker.close().await;
    }

    /// Waits (`Disposition::Wait`) three times, then succeeds; records the attempt numbers.
    struct Waiter {
        seen: std::sync::Mutex<Vec<u32>>,
    }

    impl Handler for Waiter {
        fn stage(&self) -> &'static str {
            "waiter"
        }

        async fn handle(&self, _msg: Message, attempt: u32) -> Disposition {
            let mut seen = self.seen.lock().unwrap();
            seen.push(attempt);
            if seen.len() <= 3 {
                Disposition::Wait {
                    reason: "circuit open".into(),
                    delay: Duration::from_millis(50),
                }
            } else {
                Disposition::done("ok")
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_is_not_an_attempt_and_never_parks() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&dir.path().join("wait.redb"), crate::support::test_sealer()).unwrap();
        let options = EmbeddedOptions {
            prefetch: 4,
            lease: Duration::from_secs(60),
            delivery_limit: 20,
        };
        let broker = EmbeddedBroker::open(store, options).await.unwrap();
        broker.publish("waits", &event("w1", "ok")).await.unwrap();
        let waiter = Arc::new(Waiter {
            seen: std::sync::Mutex::new(Vec::new()),
        });
        // two attempts at most: three waits would have parked it were they attempts
        let policy = RetryPolicy::new("stages.waiter", &[1], &[1, 60], 2, None).unwrap();
        let (trigger, shutdown) = Shutdown::channel();
        let task = tokio::spawn(wecom_bridge::stage::run(
            broker.clone(),
            "waits".to_string(),
            waiter.clone(),
            policy,
            1,
            shutdown,
        ));
        eventually(20, "handled after three waits", || async {
            waiter.seen.lock().unwrap().len() == 4
        })
        .await;
        eventually(20, "acknowledged", || async {
            let d = broker.depths(&["waits".to_string()]).await.unwrap()[0].clone();
            d.ready == 0 && d.unacked == 0 && d.delayed == 0 && d.dead == 0
        })
        .await;
        assert_eq!(*waiter.seen.lock().unwrap(), [1, 1, 1, 1]);
        trigger.stop();
        task.await.unwrap();
        broker.close().await;
    }
}
