//! Ingress at the router boundary, in-process: what a flood of forgeries writes to the log,
//! and how refusals answer. (The HTTP-level suite is in `tests/it/ingress.rs`.)

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

use super::*;
use crate::config::AppConfig;
use crate::journal::JournalCipher;
use crate::store::Store;

const TOKEN: &str = "Qz7vN8wPq3LkT5rYb2Hc";
const AES_KEY: &str = "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZrh";
const CORP_ID: &str = "ww7a3c1e5b9d2f4a68";

fn endpoint(name: &str) -> Arc<AppEndpoint> {
    Arc::new(AppEndpoint {
        name: name.into(),
        config: AppConfig {
            path: format!("/cb/{name}"),
            token: crate::config::SecretRef::parse(TOKEN),
            encoding_aes_key: crate::config::SecretRef::parse(AES_KEY),
            receive_ids: vec![CORP_ID.into()],
            agent_id: None,
            corp_id: None,
            secret: None,
            kind: AppKind::App,
            check_timestamp: true,
            timestamp_window_secs: 300,
        },
        crypto: CallbackCrypto::new(TOKEN, AES_KEY).expect("valid test credentials"),
    })
}

/// A log sink that keeps every line written to it.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn counter_value(rendered: &str, prefix: &str) -> u64 {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// 1,000 forged requests: every one is counted, but the log gets one line per (app, reason)
/// and interval, not 1,000.
#[tokio::test(flavor = "current_thread")]
async fn a_flood_of_forgeries_is_counted_in_full_and_logged_a_handful_of_times() {
    let handle = crate::telemetry::metrics_handle();
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    // current-thread runtime and `oneshot`: every handler runs on this thread, under this
    // subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let cipher = JournalCipher::with_key("k", [7; 32]);
    let store = Store::open(&dir.path().join("j.redb"), cipher.sealer()).unwrap();
    let (journal, writer) = Journal::start(store, cipher, 64);
    let router = router(
        vec![endpoint("flood")],
        journal.clone(),
        BodyLimits {
            max_body_bytes: 65536,
            body_read_timeout: Duration::from_secs(5),
        },
        Arc::new(LogLimiter::new(Duration::from_secs(60))),
    );
    let app = endpoint("flood");
    let xml = "<xml><ToUserName>x</ToUserName></xml>";
    let encrypted = app.crypto.encrypt(xml, CORP_ID);
    let body = crate::wecom::envelope::build_envelope(CORP_ID, &encrypted, None);
    let ts = unix_now();
    for i in 0..1000 {
        let req = Request::post(format!(
            "/cb/flood?msg_signature={}&timestamp={ts}&nonce={i}",
            "0".repeat(40)
        ))
        .body(Body::from(body.clone()))
        .unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let refusal_lines = logged
        .lines()
        .filter(|l| l.contains("callback refused"))
        .count();
    assert_eq!(refusal_lines, 1, "{logged}");
    assert!(logged.len() < 2000, "{} bytes logged", logged.len());
    assert_eq!(
        counter_value(
            &handle.render(),
            &format!(
                "{}{{app=\"flood\",reason=\"bad_signature\"}} ",
                names::CALLBACKS_REJECTED
            )
        ),
        1000
    );
    drop(router);
    drop(journal);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap();
}

#[test]
fn a_repeated_query_parameter_is_refused_by_name() {
    let e = CallbackQuery::parse(Some("msg_signature=a&timestamp=1&msg_signature=b&nonce=n"))
        .unwrap_err();
    assert!(matches!(e, Rejection::DuplicateParam("msg_signature")));
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    assert_eq!(e.reason(), "duplicate_param");
    // unknown parameters, even repeated, are ignored; known ones are decoded
    let q = CallbackQuery::parse(Some("x=1&x=2&msg_signature=a%2Bb&timestamp=1&nonce=n")).unwrap();
    assert_eq!(q.msg_signature.as_deref(), Some("a+b"));
}

#[test]
fn public_bodies_carry_the_code_and_a_short_reason_but_no_internal_chain() {
    let unavailable = Rejection::Unavailable(JournalError::WriterGone);
    let body = unavailable.public_body();
    assert_eq!(
        body,
        "journal_unavailable: event store unavailable; retry later\n"
    );
    let forged = Rejection::Crypto(CryptoError::BadSignature);
    assert!(
        forged.public_body().starts_with("-40001 bad_signature: "),
        "{}",
        forged.public_body()
    );
    let envelope = Rejection::Envelope(EnvelopeError::MissingEncrypt);
    assert!(
        envelope.public_body().starts_with("-4000"),
        "{}",
        envelope.public_body()
    );
}
