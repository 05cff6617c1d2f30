//! The HTTP connector against the finance stand-in and its OAuth2 token endpoint: every
//! answer a real finance system gives, counted at the target.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wecom_bridge::deliver::{Connector, Outgoing, Verdict, spec};
use wecom_bridge::standins::finance::{FinanceStandIn, Outcome};
use wecom_bridge::standins::oauth::OAuthStandIn;

use crate::support::header_masked;

const CLIENT_SECRET: &str = "cs-9f8e7d6c5b4a-client-secret";

struct Target {
    oauth: OAuthStandIn,
    finance: FinanceStandIn,
    dir: tempfile::TempDir,
}

impl Target {
    async fn start() -> Target {
        let oauth = OAuthStandIn::start().await;
        oauth.add_client("wecom-bridge", CLIENT_SECRET);
        let finance = FinanceStandIn::start(Some(oauth.authority())).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("client_secret"),
            format!("{CLIENT_SECRET}\n"),
        )
        .unwrap();
        Target {
            oauth,
            finance,
            dir,
        }
    }

    /// The shipped `connectors/finance.toml`, pointed at the stand-ins, with `edits`
    /// (find, replace) applied.
    fn connector(&self, edits: &[(&str, &str)]) -> Connector {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors/finance.toml");
        let mut text = std::fs::read_to_string(&shipped).unwrap();
        let secret = format!("file:{}", self.dir.path().join("client_secret").display());
        for (from, to) in [
            (
                "env:FINANCE_VOUCHER_URL",
                self.finance.vouchers_url().as_str(),
            ),
            ("env:FINANCE_TOKEN_URL", self.oauth.token_url().as_str()),
            ("env:FINANCE_CLIENT_SECRET", secret.as_str()),
        ]
        .into_iter()
        .chain(edits.iter().copied())
        {
            assert!(text.contains(from), "finance.toml has no `{from}`");
            text = text.replace(from, to);
        }
        let spec = spec::parse(&shipped, &text, "finance").unwrap_or_else(|e| panic!("{e:?}"));
        Connector::build(spec).unwrap()
    }

    async fn stop(self) {
        self.finance.stop().await;
        self.oauth.stop().await;
    }
}

fn voucher(no: &str) -> Value {
    json!({
        "document_no": no,
        "date": "2026-11-30",
        "summary": "差旅报销",
        "payee": {"name": "张三", "bank_account": "6222020200112233445"},
        "lines": [
            {"account": "660201", "debit": "1280.50", "credit": "0"},
            {"account": "1002", "debit": "0", "credit": "1280.50"}
        ]
    })
}

async fn send(c: &Connector, doc: &Value, key: &str) -> wecom_bridge::deliver::Attempt {
    let business_key = doc["document_no"].as_str().unwrap_or("").to_owned();
    c.send(&Outgoing {
        document: doc,
        idempotency_key: key,
        business_key: &business_key,
    })
    .await
}

#[tokio::test]
async fn delivers_once_captures_the_voucher_number_and_reuses_the_token() {
    let t = Target::start().await;
    let c = t.connector(&[]);
    let a = send(&c, &voucher("EXP-SP001"), "job_1").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    assert_eq!(a.captured["voucher_no"], json!("JZ-000001"));
    assert_eq!(a.captured["voucher_id"], json!(1));
    assert_eq!(a.response.as_ref().unwrap().status, 201);
    let b = send(&c, &voucher("EXP-SP002"), "job_2").await;
    assert_eq!(b.verdict, Verdict::Delivered);
    let vouchers = t.finance.vouchers();
    assert_eq!(vouchers.len(), 2);
    assert_eq!(
        vouchers[0].document["lines"][0]["debit"],
        json!("1280.50"),
        "amounts arrive exact"
    );
    assert_eq!(vouchers[0].idempotency_key.as_deref(), Some("job_1"));
    assert_eq!(
        t.oauth.token_requests(),
        1,
        "the token is cached until it expires"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_document_already_booked_is_a_duplicate_by_key_or_by_document_number() {
    let t = Target::start().await;
    let c = t.connector(&[]);
    assert_eq!(
        send(&c, &voucher("EXP-SP010"), "job_a").await.verdict,
        Verdict::Delivered
    );
    let same_key = send(&c, &voucher("EXP-SP010"), "job_a").await;
    assert_eq!(same_key.verdict, Verdict::Duplicate);
    assert_eq!(
        same_key.captured["voucher_no"],
        json!("JZ-000001"),
        "the duplicate answer names the voucher"
    );
    let other_key = send(&c, &voucher("EXP-SP010"), "job_other").await;
    assert_eq!(other_key.verdict, Verdict::Duplicate);
    assert_eq!(t.finance.voucher_count(), 1);
    assert_eq!(t.finance.count(Outcome::Duplicate), 2);
    t.stop().await;
}

#[tokio::test]
async fn server_errors_and_a_lost_reply_are_retryable_and_the_retry_is_a_duplicate() {
    let t = Target::start().await;
    let c = t.connector(&[]);
    t.finance.set_server_error_percent(100);
    let a = send(&c, &voucher("EXP-SP020"), "job_20").await;
    assert!(
        matches!(&a.verdict, Verdict::Retryable { reason, .. } if reason.starts_with("HTTP 500")),
        "{a:?}"
    );
    assert_eq!(t.finance.voucher_count(), 0);
    t.finance.set_server_error_percent(0);
    t.finance.set_commit_then_500_percent(100);
    let b = send(&c, &voucher("EXP-SP020"), "job_20").await;
    assert!(matches!(b.verdict, Verdict::Retryable { .. }), "{b:?}");
    assert_eq!(
        t.finance.voucher_count(),
        1,
        "committed, then the reply was lost"
    );
    t.finance.set_commit_then_500_percent(0);
    let c2 = send(&c, &voucher("EXP-SP020"), "job_20").await;
    assert_eq!(c2.verdict, Verdict::Duplicate);
    assert_eq!(t.finance.voucher_count(), 1);
    assert_eq!(t.finance.duplicate_vouchers(), 0);
    t.stop().await;
}

#[tokio::test]
async fn rate_limited_answers_are_retryable_after_the_targets_wait() {
    let t = Target::start().await;
    let c = t.connector(&[]);
    t.finance.set_rate_limited(100, "7");
    let a = send(&c, &voucher("EXP-SP030"), "job_30").await;
    match &a.verdict {
        Verdict::Retryable { after, reason } => {
            assert_eq!(*after, Some(Duration::from_secs(7)));
            assert!(
                reason.contains("429") && reason.contains("RATE_LIMITED"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let next = wecom_bridge::deliver::http::next_delay(c.spec(), &a.verdict, 1);
    assert_eq!(
        next,
        Some(Duration::from_secs(7)),
        "Retry-After beats the shorter 5 s tier"
    );
    t.stop().await;
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_retryable_and_the_retry_is_a_duplicate() {
    let t = Target::start().await;
    let c = t.connector(&[
        ("total_ms = 10000", "total_ms = 300"),
        ("connect_ms = 2000", "connect_ms = 300"),
    ]);
    t.finance.set_slow(100, Duration::from_secs(2));
    let a = send(&c, &voucher("EXP-SP040"), "job_40").await;
    assert_eq!(
        a.verdict,
        Verdict::Retryable {
            after: None,
            reason: "no answer within 300 ms (timeout)".into()
        }
    );
    assert!(a.response.is_none());
    t.finance.set_slow(0, Duration::ZERO);
    assert_eq!(
        send(&c, &voucher("EXP-SP040"), "job_40").await.verdict,
        Verdict::Duplicate
    );
    assert_eq!(t.finance.vouchers_for("EXP-SP040"), 1);
    t.stop().await;
}

#[tokio::test]
async fn two_hundred_with_an_error_code_is_permanent_with_the_targets_message() {
    let t = Target::start().await;
    let c = t.connector(&[]);
    t.finance
        .refuse_with_code("EXP-SP050", "E1001", "科目 6602 已停用");
    let a = send(&c, &voucher("EXP-SP050"), "job_50").await;
    assert_eq!(
        a.verdict,
        Verdict::Permanent {
            reason: "HTTP 200, the success condition does not hold: E1001; 科目 6602 已停用".into()
        }
    );
    assert!(a.captured.is_empty());
    t.finance.accept_all_documents();
    assert_eq!(
        send(&c, &voucher("EXP-SP050"), "job_50").await.verdict,
        Verdict::Delivered
    );
    t.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_on_401_and_fetched_single_flight() {
    let t = Target::start().await;
    let c = t.connector(&[]);
    // Ten concurrent first sends share one token request.
    let docs: Vec<Value> = (0..10).map(|i| voucher(&format!("EXP-SP06{i}"))).collect();
    let sends = docs.iter().enumerate().map(|(i, d)| {
        let c = &c;
        async move { send(c, d, &format!("job_6{i}")).await }
    });
    let results = futures_util::future::join_all(sends).await;
    assert!(results.iter().all(|a| a.verdict == Verdict::Delivered));
    assert_eq!(t.oauth.token_requests(), 1);
    // The target stops accepting the cached token mid-run: one 401, one refresh, delivered.
    t.oauth.expire_all_tokens();
    let a = send(&c, &voucher("EXP-SP070"), "job_70").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    assert_eq!(t.oauth.token_requests(), 2);
    assert_eq!(t.finance.count(Outcome::Unauthorized), 1);
    // Tokens that live one second are within the refresh margin from the start: each
    // request fetches a new one (the first after one more 401 on the old token).
    t.oauth.set_ttl_secs(1);
    t.oauth.expire_all_tokens();
    for i in 0..3 {
        let a = send(&c, &voucher(&format!("EXP-SP08{i}")), &format!("job_8{i}")).await;
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    }
    assert_eq!(t.oauth.token_requests(), 5);
    assert_eq!(t.finance.count(Outcome::Unauthorized), 2);
    assert_eq!(c.token_fetches(), 5);
    t.stop().await;
}

#[tokio::test]
async fn credentials_the_token_endpoint_refuses_are_permanent() {
    let t = Target::start().await;
    std::fs::write(t.dir.path().join("client_secret"), "wrong-secret").unwrap();
    let c = t.connector(&[]);
    let a = send(&c, &voucher("EXP-SP090"), "job_90").await;
    assert!(
        matches!(&a.verdict, Verdict::Permanent { reason } if reason.contains("invalid_client")),
        "{a:?}"
    );
    assert!(
        t.finance.requests().is_empty(),
        "nothing reached the target"
    );
    t.stop().await;
}

#[tokio::test]
async fn secrets_and_redacted_fields_never_reach_the_record() {
    let t = Target::start().await;
    let c = t.connector(&[]);
    for i in 0..2 {
        let a = send(&c, &voucher(&format!("EXP-SP10{i}")), "job_100").await;
        let recorded = serde_json::to_string(&a).unwrap();
        assert!(!recorded.contains(CLIENT_SECRET), "{recorded}");
        assert!(
            !recorded.contains("Bearer at-") && !recorded.contains("\"at-"),
            "{recorded}"
        );
        assert!(
            !recorded.contains("6222020200112233445"),
            "configured field: {recorded}"
        );
        header_masked(&a, "Authorization");
        assert!(
            a.request.body.contains("\"bank_account\":\"***\""),
            "{}",
            a.request.body
        );
        assert!(
            a.request
                .headers
                .iter()
                .any(|(n, v)| n == "Idempotency-Key" && v == "job_100")
        );
    }
    // An API key in the query is masked in the recorded URL.
    let plain = FinanceStandIn::start(None).await;
    std::fs::write(t.dir.path().join("api_key"), "ak-0123456789").unwrap();
    let text = format!(
        "kind = \"http\"\nurl = \"{}\"\n[auth]\nkind = \"api_key\"\nname = \"api_key\"\nlocation = \"query\"\nvalue = \"file:{}\"\n",
        plain.vouchers_url(),
        t.dir.path().join("api_key").display()
    );
    let spec = spec::parse(Path::new("connectors/plain.toml"), &text, "plain").unwrap();
    let c = Connector::build(spec).unwrap();
    let a = send(&c, &voucher("EXP-SP110"), "job_110").await;
    assert_eq!(a.verdict, Verdict::Delivered);
    assert!(
        a.request.url.ends_with("/api/v1/vouchers?api_key=***"),
        "{}",
        a.request.url
    );
    assert!(!serde_json::to_string(&a).unwrap().contains("ak-0123456789"));
    plain.stop().await;
    t.stop().await;
}

#[tokio::test]
async fn an_outage_is_retryable_and_a_closed_port_too() {
    let t = Target::start().await;
    let c = t.connector(&[]);
    t.finance.set_outage(true);
    let a = send(&c, &voucher("EXP-SP120"), "job_120").await;
    assert!(
        matches!(&a.verdict, Verdict::Retryable { reason, .. } if reason.contains("HTTP 503") && reason.contains("HTML page")),
        "{a:?}"
    );
    t.finance.set_outage(false);
    assert_eq!(
        send(&c, &voucher("EXP-SP120"), "job_120").await.verdict,
        Verdict::Delivered
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = spec::parse(
        Path::new("connectors/down.toml"),
        &format!("kind = \"http\"\nurl = \"http://127.0.0.1:{closed}/v\"\n"),
        "down",
    )
    .unwrap();
    let a = send(
        &Connector::build(spec).unwrap(),
        &voucher("EXP-SP121"),
        "job_121",
    )
    .await;
    assert!(
        matches!(&a.verdict, Verdict::Retryable { reason, .. } if reason.starts_with("cannot connect")),
        "{a:?}"
    );
    t.stop().await;
}

#[tokio::test]
async fn pilot_mode_and_a_document_without_its_business_key_send_nothing() {
    let t = Target::start().await;
    let pilot = t.connector(&[("method = \"POST\"", "method = \"POST\"\ndry_run = true")]);
    let a = send(&pilot, &voucher("EXP-SP130"), "job_130").await;
    assert_eq!(a.verdict, Verdict::DryRun);
    assert!(
        a.request.body.contains("EXP-SP130"),
        "the record shows what would have been sent"
    );
    let live = t.connector(&[]);
    let mut doc = voucher("EXP-SP131");
    doc.as_object_mut().unwrap().remove("document_no");
    let b = live
        .send(&Outgoing {
            document: &doc,
            idempotency_key: "job_131",
            business_key: "EXP-SP131",
        })
        .await;
    assert!(
        matches!(&b.verdict, Verdict::Permanent { reason } if reason.contains("`/document_no`")),
        "{b:?}"
    );
    assert!(t.finance.requests().is_empty());
    t.stop().await;
}

/// What a plain echo target received.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String, Vec<u8>)>>>;

/// A target that records each request (headers, path and query, body) and answers 200 `{}`.
async fn echo_target() -> (String, Received) {
    let seen: Received = Default::default();
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/signed/{*rest}",
        axum::routing::post(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    kept.lock()
                        .unwrap()
                        .push((headers, uri.to_string(), body.to_vec()));
                    "{}"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn hmac_signatures_cover_the_request_as_sent_and_stay_out_of_the_record() {
    use sha2::Digest as _;
    let (base, seen) = echo_target().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "hmac-signing-key-42").unwrap();
    let text = format!(
        r#"kind = "http"
url = "{base}/signed/v1/vouchers?tenant=t1"
[auth]
kind = "hmac_sha256"
secret = "file:{}"
key_id = "bridge-1"
canonical = "{{method}}\n{{path}}\n{{query}}\n{{timestamp}}\n{{nonce}}\n{{body_sha256}}"
encoding = "base64"
signature_prefix = "HMAC-SHA256 "
"#,
        dir.path().join("key").display()
    );
    let spec = spec::parse(Path::new("connectors/signed.toml"), &text, "signed").unwrap();
    let c = Connector::build(spec).unwrap();
    let a = send(&c, &voucher("EXP-SP140"), "job_140").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    let (headers, uri, body) = seen.lock().unwrap().remove(0);
    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
    let canonical = format!(
        "POST\n/signed/v1/vouchers\ntenant=t1\n{}\n{}\n{}",
        h("x-timestamp"),
        h("x-nonce"),
        hex::encode(sha2::Sha256::digest(&body))
    );
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode(
        wecom_bridge::deliver::auth::hmac_sha256(b"hmac-signing-key-42", canonical.as_bytes()),
    );
    assert_eq!(uri, "/signed/v1/vouchers?tenant=t1");
    assert_eq!(h("x-signature"), format!("HMAC-SHA256 {expected}"));
    assert_eq!(h("x-key-id"), "bridge-1");
    assert_eq!(h("x-nonce").len(), 32);
    header_masked(&a, "X-Signature");
    assert!(!serde_json::to_string(&a).unwrap().contains(&expected));
}
