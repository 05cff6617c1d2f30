//! The writeback stage against the WeCom stand-in and a real ledger: what it sends, what it
//! records, and how each failure is answered (retry with WeCom's wait, or park).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::config::Secret;
use crate::record::{Outcome, WritebackKind};
use crate::stage::JobKey;
use crate::standins::wecom::FakeWeCom;
use crate::store::{Sealer, Store};
use crate::wecom::api::ApiConfig;

const CORP: &str = "ww-wb-corp";
const SECRET: &str = "wb-secret";

struct Setup {
    fake: FakeWeCom,
    ledger: Ledger,
    api: WeComApi,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let fake = FakeWeCom::start().await;
    fake.add_credentials(CORP, SECRET);
    let dir = tempfile::tempdir().expect("temp dir");
    let sealer = Arc::new(Sealer::with_key("t1", [3; 32]));
    let store = Store::open(&dir.path().join("s.redb"), sealer).expect("store");
    let api = WeComApi::new(ApiConfig {
        base_url: fake.base_url(),
        retry_min_delay: Duration::from_millis(10),
        ..ApiConfig::default()
    })
    .expect("client");
    Setup {
        fake,
        ledger: Ledger::embedded(store),
        api,
        _dir: dir,
    }
}

fn stage(s: &Setup, agent_id: Option<i64>) -> WritebackStage {
    let sender = Sender {
        credentials: Some(Credentials::new(CORP, Secret::new(SECRET))),
        agent_id,
    };
    let policy = RetryPolicy::new("stages.writeback", &[1, 2], &[1, 2], 3, None).expect("policy");
    WritebackStage::new(
        s.ledger.clone(),
        &s.api,
        HashMap::from([("demo".to_string(), sender)]),
        policy,
    )
}

fn card(to: &str) -> Value {
    json!({"touser": to, "toparty": "", "totag": "", "msgtype": "textcard",
        "textcard": {"title": "报销单已入账", "description": "凭证号 JZ-1", "url": "https://x/1"},
        "enable_duplicate_check": 1, "duplicate_check_interval": 14400})
}

/// A delivered job with a pending applicant card to `to`; its writeback job.
async fn pending(s: &Setup, key: &str, to: &str) -> Message {
    s.ledger
        .begin(crate::record::tests::start(key, 10))
        .await
        .expect("begin");
    let message = card(to);
    let m = message.clone();
    s.ledger
        .finish_and_notify(
            key,
            Outcome::Delivered,
            20,
            WritebackKind::Applicant,
            move |_| Some(m),
        )
        .await
        .expect("finish");
    Message::Writeback(WritebackJob {
        key: JobKey::new(key),
        kind: WritebackKind::Applicant,
        app: "demo".into(),
        business_key: "202506050012".into(),
        message,
    })
}

async fn record(s: &Setup, key: &str) -> crate::record::WritebackRecord {
    s.ledger.writebacks(key).await.expect("read")[0].clone()
}

#[tokio::test]
async fn a_card_is_sent_with_the_apps_agent_id_once_and_recorded() {
    let s = setup().await;
    let st = stage(&s, Some(1_000_005));
    let msg = pending(&s, "job_ok", "ZhangSan").await;
    assert_eq!(st.handle(msg.clone(), 1).await, Disposition::done("sent"));
    let mut expected = card("ZhangSan");
    expected["agentid"] = json!(1_000_005);
    assert_eq!(s.fake.sent_messages(), vec![expected]);
    let r = record(&s, "job_ok").await;
    assert_eq!((r.state, r.attempts), (WritebackState::Sent, 1));
    assert!(r.msg_id.is_some());
    // delivered again (a crash before the ack): nothing is sent
    assert_eq!(st.handle(msg, 2).await, Disposition::done("already_sent"));
    assert_eq!(s.fake.received_messages().len(), 1);
    s.fake.stop().await;
}

#[tokio::test]
async fn rate_limits_and_token_expiry_are_retried_and_invalid_users_parked() {
    let s = setup().await;
    let st = stage(&s, Some(7));
    // WeCom's rate limit: a retry that asks for WeCom's minute
    let msg = pending(&s, "job_rl", "ZhangSan").await;
    s.fake.fail_next("message/send", 45009, 1);
    let Disposition::Retry { reason, hint } = st.handle(msg.clone(), 1).await else {
        panic!("a rate limit is retried")
    };
    assert!(reason.contains("45009"), "{reason}");
    assert_eq!(hint, Some(Duration::from_secs(60)));
    let r = record(&s, "job_rl").await;
    assert_eq!((r.state, r.attempts), (WritebackState::Queued, 1));
    assert!(r.last_error.as_deref().is_some_and(|e| e.contains("45009")));
    // an expired token is refreshed inside the client, and the send goes through
    s.fake.expire_all_tokens();
    assert_eq!(st.handle(msg, 2).await, Disposition::done("sent"));
    assert_eq!(s.fake.sent_messages().len(), 1);
    assert_eq!(record(&s, "job_rl").await.state, WritebackState::Sent);

    // a recipient WeCom does not know (81013): retrying cannot help, parked and recorded
    s.fake.add_user(json!({"userid": "LiSi"}));
    let msg = pending(&s, "job_bad", "Nobody").await;
    let Disposition::Park { reason } = st.handle(msg, 1).await else {
        panic!("an unknown recipient is parked")
    };
    assert!(reason.contains("81013"), "{reason}");
    let r = record(&s, "job_bad").await;
    assert_eq!(r.state, WritebackState::Failed);
    assert_eq!(r.last_error.as_deref(), Some(reason.as_str()));

    // out of attempts: recorded failed, handed back as a retry for the loop to park
    let msg = pending(&s, "job_last", "LiSi").await;
    s.fake.fail_next("message/send", -1, 4);
    let d = st.handle(msg, 3).await;
    assert!(matches!(d, Disposition::Retry { .. }), "{d:?}");
    assert_eq!(record(&s, "job_last").await.state, WritebackState::Failed);
    s.fake.stop().await;
}

#[tokio::test]
async fn an_app_without_agent_id_parks_with_what_to_set() {
    let s = setup().await;
    let st = stage(&s, None);
    let msg = pending(&s, "job_na", "ZhangSan").await;
    let Disposition::Park { reason } = st.handle(msg, 1).await else {
        panic!("parked")
    };
    assert!(reason.contains("apps.demo.agent_id"), "{reason}");
    assert!(s.fake.received_messages().is_empty());
    // a job of another kind on this queue is parked, not handled
    let wrong = Message::Event {
        id: crate::stage::EventId::new("evt_1"),
        kind: "approval_change".into(),
        app: "demo".into(),
        business_key: "1:2".into(),
        received_at_ms: 1,
        xml: String::new(),
    };
    assert!(matches!(
        st.handle(wrong, 1).await,
        Disposition::Park { .. }
    ));
    s.fake.stop().await;
}
