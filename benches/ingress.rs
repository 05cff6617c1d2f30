//! Ingress CPU cost: verify + decrypt + parse of one callback (`ingress::open_callback`, the
//! exact function the POST handler runs before the journal), and its parts.
//!
//! `cargo bench --bench ingress`. Sizes are decrypted XML bytes; the 1 KB and 2 KB inputs are
//! the `approval_rejected` and `approval_approved` vectors as WeCom would post them.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wecom_bridge::cli::simulate::sign_event;
use wecom_bridge::config::Config;
use wecom_bridge::ingress::{AppEndpoint, CallbackParams, open_callback};
use wecom_bridge::wecom::crypto::CallbackCrypto;
use wecom_bridge::wecom::envelope::parse_envelope;
use wecom_bridge::wecom::event::parse_event;

const VECTORS: &str = include_str!("../tests/fixtures/wecom-vectors.json");
const TOKEN: &str = "Qz7vN8wPq3LkT5rYb2Hc";
const KEY: &str = "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZrh";
const CORP: &str = "ww7a3c1e5b9d2f4a68";

struct Request {
    query: (String, String, String),
    body: String,
    xml_len: usize,
}

fn from_vector(id: &str) -> Request {
    let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let v = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Request {
        query: (s("msg_signature"), s("timestamp"), s("nonce")),
        body: v["http"]["body"].as_str().unwrap().to_string(),
        xml_len: v["expected"]["plaintext"].as_str().unwrap().len(),
    }
}

fn synthetic(target: usize) -> Request {
    let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let xml = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "approval_approved")
        .unwrap()["expected"]["plaintext"]
        .as_str()
        .unwrap()
        .to_string();
    let start = xml.find("<SpRecord>").unwrap();
    let end = xml.find("</SpRecord>").unwrap() + "</SpRecord>".len();
    let record = &xml[start..end];
    let mut big = xml.clone();
    while big.len() < target {
        big.insert_str(start, record);
    }
    let crypto = CallbackCrypto::new(TOKEN, KEY).unwrap();
    let (query, body) = sign_event(&crypto, CORP, &big, 1_749_106_584, "1688352270");
    let mut parts = query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap().1.to_string());
    Request {
        query: (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        ),
        body,
        xml_len: big.len(),
    }
}

fn endpoint() -> AppEndpoint {
    let config = Config::from_toml(&format!(
        "[apps.bench]\npath = \"/cb\"\ntoken = \"{TOKEN}\"\nencoding_aes_key = \"{KEY}\"\nreceive_ids = [\"{CORP}\"]\n"
    ))
    .unwrap();
    AppEndpoint {
        name: "bench".into(),
        config: config.apps["bench"].clone(),
        crypto: CallbackCrypto::new(TOKEN, KEY).unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let app = endpoint();
    let mut group = c.benchmark_group("open_callback");
    for (label, req) in [
        ("1KB", from_vector("approval_rejected")),
        ("2KB", from_vector("approval_approved")),
        ("4KB", synthetic(4096)),
    ] {
        let params = CallbackParams {
            msg_signature: &req.query.0,
            timestamp: &req.query.1,
            nonce: &req.query.2,
        };
        let now: i64 = req.query.1.parse().unwrap();
        let ev = open_callback(&app, &params, req.body.as_bytes(), now).unwrap();
        assert_eq!(
            ev.kind, "approval_change",
            "{label} must parse as an approval"
        );
        group.throughput(Throughput::Bytes(req.xml_len as u64));
        group.bench_function(format!("verify_decrypt_parse/{label}"), |b| {
            b.iter(|| {
                open_callback(
                    &app,
                    black_box(&params),
                    black_box(req.body.as_bytes()),
                    now,
                )
                .unwrap()
            })
        });
    }
    group.finish();

    // The parts of the 2 KB case, to see where the time goes.
    let req = from_vector("approval_approved");
    let mut parts = c.benchmark_group("open_callback_parts_2KB");
    let envelope = parse_envelope(req.body.as_bytes()).unwrap();
    let xml = app.crypto.decrypt(&envelope.encrypt).unwrap().msg;
    parts.bench_function("envelope", |b| {
        b.iter(|| parse_envelope(black_box(req.body.as_bytes())).unwrap())
    });
    parts.bench_function("signature", |b| {
        b.iter(|| {
            app.crypto
                .verify_signature(
                    &req.query.0,
                    &req.query.1,
                    &req.query.2,
                    black_box(&envelope.encrypt),
                )
                .unwrap()
        })
    });
    parts.bench_function("decrypt", |b| {
        b.iter(|| app.crypto.decrypt(black_box(&envelope.encrypt)).unwrap())
    });
    parts.bench_function("parse_event", |b| {
        b.iter(|| parse_event(black_box(&xml)).unwrap())
    });
    parts.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
