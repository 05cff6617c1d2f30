//! Runs every WeCom callback vector in `tests/fixtures/wecom-vectors.json`
//! through `wecom_bridge::wecom::crypto`.
//!
//! * `url_verification`: `open(echostr)` yields `expected.response_body` and the
//!   receive id; re-encrypting with the vector's random reproduces the echostr.
//! * `event_post`: `open(encrypt)` yields `expected.plaintext` exactly, the
//!   random prefix equals `random_hex`, and `encrypt_with_random` reproduces the
//!   ciphertext byte for byte.
//! * `passive_reply`: `passive_reply_with_random` reproduces
//!   `expected.response_body` exactly (and the reply opens again).
//! * `negative`: the error code equals `expected_error.code`.
//!
//! Fails if the file has no vectors, if a kind is unknown, or if the number of
//! checked vectors differs from the number in the file.

use serde_json::Value;
use wecom_bridge::wecom::crypto::{CallbackCrypto, CryptoError, Decrypted};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/wecom-vectors.json"
));

fn vectors() -> Vec<Value> {
    let doc: Value = serde_json::from_str(VECTORS).expect("wecom-vectors.json is valid JSON");
    let vectors = doc["vectors"]
        .as_array()
        .expect("wecom-vectors.json has a `vectors` array")
        .clone();
    assert!(
        !vectors.is_empty(),
        "wecom-vectors.json contains zero vectors"
    );
    vectors
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector {} lacks string field `{key}`", v["id"]))
}

fn random_of(v: &Value) -> [u8; 16] {
    let bytes = hex::decode(s(v, "random_hex")).expect("random_hex is hex");
    bytes
        .as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("vector {}: random_hex is not 16 bytes", v["id"]))
}

fn crypto_of(v: &Value) -> CallbackCrypto {
    CallbackCrypto::new(s(v, "token"), s(v, "encoding_aes_key"))
        .unwrap_or_else(|e| panic!("vector {}: key rejected: {e}", v["id"]))
}

/// Opens `ciphertext` with the vector's signature, timestamp, nonce and receive id.
fn open(c: &CallbackCrypto, v: &Value, ciphertext: &str) -> Result<Decrypted, CryptoError> {
    c.open(
        s(v, "msg_signature"),
        s(v, "timestamp"),
        s(v, "nonce"),
        ciphertext,
        &[s(v, "receiveid").to_owned()],
    )
}

/// Opens the vector's ciphertext (`field` = "echostr" or "encrypt") and checks
/// the receive id, the random prefix and byte-exact re-encryption.
fn open_and_reencrypt(v: &Value, field: &str) -> String {
    let id = s(v, "id");
    let c = crypto_of(v);
    let receiveid = s(v, "receiveid");
    let ciphertext = s(v, field);
    let d = open(&c, v, ciphertext)
        .unwrap_or_else(|e| panic!("vector {id}: open failed: {e} ({})", e.code()));
    assert_eq!(d.receive_id, receiveid, "vector {id}: receive id");
    assert_eq!(
        d.receive_id,
        s(&v["expected"], "receiveid"),
        "vector {id}: expected.receiveid"
    );
    let random = random_of(v);
    assert_eq!(d.random, random, "vector {id}: random prefix");
    assert_eq!(
        c.encrypt_with_random(&d.msg, &d.receive_id, random),
        ciphertext,
        "vector {id}: re-encryption is not byte-identical"
    );
    if let Some(n) = v["expected"]["plaintext_len_bytes"].as_u64() {
        assert_eq!(d.msg.len() as u64, n, "vector {id}: plaintext_len_bytes");
    }
    d.msg
}

#[test]
fn every_vector_passes() {
    let vectors = vectors();
    let mut checked = 0usize;
    let mut per_kind = std::collections::BTreeMap::<String, usize>::new();

    for v in &vectors {
        let id = s(v, "id");
        let kind = s(v, "kind");
        match kind {
            "url_verification" | "event_post" => {
                // GET verification answers with the decrypted echostr; a POST carries an event.
                let (field, expected) = match kind {
                    "url_verification" => ("echostr", "response_body"),
                    _ => ("encrypt", "plaintext"),
                };
                let msg = open_and_reencrypt(v, field);
                assert_eq!(msg, s(&v["expected"], expected), "vector {id}: {expected}");
            }
            "passive_reply" => {
                let c = crypto_of(v);
                let body = c.passive_reply_with_random(
                    s(&v["expected"], "plaintext"),
                    s(v, "receiveid"),
                    s(v, "timestamp"),
                    s(v, "nonce"),
                    random_of(v),
                );
                assert_eq!(
                    body,
                    s(&v["expected"], "response_body"),
                    "vector {id}: passive reply body"
                );
                // The reply is itself a valid callback for the same crypto.
                let reply = open(&c, v, s(v, "encrypt"))
                    .unwrap_or_else(|e| panic!("vector {id}: reply does not open: {e}"));
                assert_eq!(reply.msg, s(&v["expected"], "plaintext"));
            }
            "negative" => {
                let c = crypto_of(v);
                let want = v["expected_error"]["code"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("vector {id}: expected_error.code missing"));
                let ciphertext = v["encrypt"]
                    .as_str()
                    .or_else(|| v["echostr"].as_str())
                    .unwrap_or_else(|| panic!("vector {id}: no encrypt/echostr"));
                let err = open(&c, v, ciphertext).expect_err(&format!("vector {id}: must fail"));
                assert_eq!(
                    i64::from(err.code()),
                    want,
                    "vector {id}: got {err:?} ({})",
                    err.reason()
                );
            }
            other => panic!("vector {id}: unhandled kind {other:?}"),
        }
        checked += 1;
        *per_kind.entry(kind.to_owned()).or_default() += 1;
    }

    assert_eq!(checked, vectors.len(), "not every vector was checked");
    for kind in [
        "url_verification",
        "event_post",
        "passive_reply",
        "negative",
    ] {
        assert!(
            per_kind.get(kind).copied().unwrap_or(0) > 0,
            "no `{kind}` vector was checked: {per_kind:?}"
        );
    }
    eprintln!("checked {checked} vectors: {per_kind:?}");
}

#[test]
fn config_keys_decode() {
    let doc: Value = serde_json::from_str(VECTORS).expect("valid JSON");
    let configs = doc["configs"].as_object().expect("configs object");
    assert!(!configs.is_empty(), "no configs in vector file");
    for (name, cfg) in configs {
        CallbackCrypto::new(s(cfg, "token"), s(cfg, "encoding_aes_key"))
            .unwrap_or_else(|e| panic!("config {name}: key rejected: {e}"));
    }
}
