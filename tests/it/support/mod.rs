//! Shared test support: configuration builders, a running bridge, signed requests, metrics.

#![allow(dead_code)]

mod brokers;
mod catalog;
mod connectors;
mod console;
mod process;

// The `browser` and `faults` binaries include this module too and use only part of it.
#[allow(unused_imports)]
pub use {brokers::*, catalog::*, connectors::*, console::*, process::*};

use std::net::SocketAddr;

use serde_json::Value;
use tempfile::TempDir;
use wecom_bridge::app::{self, RunningBridge};
use wecom_bridge::broker::ROUTE_QUEUE;
use wecom_bridge::cli::simulate::sign_event;
use wecom_bridge::config::Config;
use wecom_bridge::standins::wecom::FakeWeCom;
use wecom_bridge::wecom::crypto::CallbackCrypto;

/// The generated test credentials of `vectors.json` (config `bridge_test`).
pub const TOKEN: &str = "Qz7vN8wPq3LkT5rYb2Hc";
/// EncodingAESKey of `bridge_test`.
pub const AES_KEY: &str = "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZrh";
/// CorpID of `bridge_test`.
pub const CORP_ID: &str = "ww7a3c1e5b9d2f4a68";

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/wecom-vectors.json"
));

/// One vector by id.
pub fn vector(id: &str) -> Value {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no vector {id}"))
        .clone()
}

/// An app section.
pub struct TestApp {
    pub name: String,
    pub path: String,
    pub token: String,
    pub key: String,
    pub receive_id: String,
    pub check_timestamp: bool,
    pub kind: &'static str,
}

impl TestApp {
    /// An app with the `bridge_test` credentials; `name` also makes metric labels unique.
    pub fn new(name: &str) -> Self {
        TestApp {
            name: name.into(),
            path: format!("/cb/{name}"),
            token: TOKEN.into(),
            key: AES_KEY.into(),
            receive_id: CORP_ID.into(),
            check_timestamp: true,
            kind: "app",
        }
    }
    pub fn no_timestamp_check(mut self) -> Self {
        self.check_timestamp = false;
        self
    }
    pub fn crypto(&self) -> CallbackCrypto {
        CallbackCrypto::new(&self.token, &self.key).unwrap()
    }
}

/// A configuration for `apps`, with its store under `dir` and listeners on port 0.
pub fn config_toml(dir: &std::path::Path, apps: &[TestApp]) -> String {
    // The default catalog folders (next to the configuration) must exist: empty is allowed.
    for folder in ["mappings", "connectors"] {
        std::fs::create_dir_all(dir.join(folder)).expect("create a catalog folder");
    }
    let mut s = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5
[admin]
listen = "127.0.0.1:0"
[store]
path = "{store}"
[journal]
active_key = "t1"
keys = {{ t1 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" }}
"#,
        store = dir.join("bridge.redb").display()
    );
    for a in apps {
        s.push_str(&format!(
            r#"
[apps.{name}]
path = "{path}"
token = "{token}"
encoding_aes_key = "{key}"
receive_ids = ["{rid}"]
check_timestamp = {check}
kind = "{kind}"
"#,
            name = a.name,
            path = a.path,
            token = a.token,
            key = a.key,
            rid = a.receive_id,
            check = a.check_timestamp,
            kind = a.kind,
        ));
    }
    s
}

/// A bridge running in this process.
pub struct TestBridge {
    pub bridge: Option<RunningBridge>,
    pub dir: TempDir,
    pub config: Config,
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

impl TestBridge {
    pub async fn start(apps: &[TestApp]) -> TestBridge {
        Self::start_with(apps, "").await
    }

    /// Starts with extra TOML appended (e.g. a `[broker]` section).
    pub async fn start_with(apps: &[TestApp], extra: &str) -> TestBridge {
        Self::start_edited(apps, |_, toml| format!("{toml}\n{extra}")).await
    }

    /// Starts on [`config_toml`] for `apps` as `edit` changes it; `edit` gets the bridge's
    /// fresh temp folder and the TOML.
    pub async fn start_edited(
        apps: &[TestApp],
        edit: impl FnOnce(&std::path::Path, String) -> String,
    ) -> TestBridge {
        let dir = tempfile::tempdir().unwrap();
        let toml = edit(dir.path(), config_toml(dir.path(), apps));
        Self::start_config(Config::from_toml(&toml).unwrap(), dir).await
    }

    /// Starts on `config`; `dir` is kept (and removed) with the bridge.
    pub async fn start_config(config: Config, dir: TempDir) -> TestBridge {
        let bridge = app::start(&config).await.unwrap();
        TestBridge {
            public: bridge.public_addr,
            admin: bridge.admin_addr,
            bridge: Some(bridge),
            dir,
            config,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// Signs `xml` for `app`, posts it to the app's callback path and asserts the 200.
    pub async fn post_callback(&self, app: &TestApp, xml: &str) {
        let (q, body) = signed(app, xml);
        let (status, text) = post(&self.url(&app.path), &q, body).await;
        assert_eq!(status, 200, "{text}");
    }

    /// Journal entries as the admin API lists them (all, newest first).
    pub async fn events(&self, extra: &str) -> Vec<Value> {
        let limit = if extra.contains("limit=") {
            ""
        } else {
            "&limit=100000"
        };
        let url = format!("http://{}/admin/events?x=1{limit}{extra}", self.admin);
        json_lines(&get(&url).await.1)
    }

    pub async fn stop(mut self) -> TempDir {
        if let Some(b) = self.bridge.take() {
            b.shutdown().await;
        }
        self.dir
    }
}

/// `toml` (of [`config_toml`]) with the WeCom API secret `secret` and agent id `agent_id`
/// in the section of app `app`.
pub fn with_api_secret(toml: &str, app: &str, secret: &str, agent_id: u32) -> String {
    let section = format!("[apps.{app}]\n");
    assert!(toml.contains(&section), "no app {app} in the configuration");
    toml.replace(
        &section,
        &format!("{section}secret = \"{secret}\"\nagent_id = {agent_id}\n"),
    )
}

/// Starts a bridge with app `app`, whose WeCom API secret `secret` the stand-in `wecom`
/// knows, and whose console signs WeCom member `zhangsan` in as operator through the login
/// pages `(authorize, sso)` (the stand-in's, perhaps under another host name); `extra` TOML
/// is appended (more members, admin users).
pub async fn start_with_wecom_login(
    wecom: &FakeWeCom,
    (app, secret): (&str, &str),
    (authorize, sso): (String, String),
    extra: &str,
) -> TestBridge {
    wecom.add_credentials(CORP_ID, secret);
    let section = format!(
        r#"
[reconcile]
enabled = false
[wecom]
api_base_url = "{api}"
[console.wecom_login]
app = "{app}"
authorize_url = "{authorize}"
sso_url = "{sso}"
[[console.wecom_users]]
user_id = "zhangsan"
role = "operator"
{extra}"#,
        api = wecom.base_url(),
    );
    TestBridge::start_edited(&[TestApp::new(app)], |_, toml| {
        format!(
            "{}\n{section}",
            with_api_secret(&toml, app, secret, 1_000_002)
        )
    })
    .await
}

/// Sends `req`; returns (status, body).
pub async fn answer(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Posts a callback; returns (status, body).
pub async fn post(url: &str, query: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    answer(
        reqwest::Client::new()
            .post(format!("{url}?{query}"))
            .body(body),
    )
    .await
}

/// POSTs to `url` without a body and answers the JSON it gets back.
pub async fn post_json(url: &str) -> Value {
    let resp = reqwest::Client::new().post(url).send().await.unwrap();
    resp.json().await.unwrap()
}

/// GETs `url` and answers the JSON it gets back.
pub async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Gets a URL; returns (status, body).
pub async fn get(url: &str) -> (u16, String) {
    answer(reqwest::Client::new().get(url)).await
}

/// Signs and encrypts `xml` for `app` with a fresh timestamp and nonce.
pub fn signed(app: &TestApp, xml: &str) -> (String, String) {
    sign_event(&app.crypto(), &app.receive_id, xml, now(), &rand_nonce())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn rand_nonce() -> String {
    format!("{}", rand::random::<u32>())
}

/// Current value of a counter with exactly these labels (0 if never incremented).
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = wecom_bridge::telemetry::metrics_handle().render();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((label_part, value)) = rest.split_once("} ") else {
            continue;
        };
        let mut found: Vec<(String, String)> = label_part
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        found.sort();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        if found == want {
            return value.trim().parse::<f64>().unwrap() as u64;
        }
    }
    0
}

/// Encrypts arbitrary frame bytes (already framed, unpadded) with `app`'s key, PKCS#7(32)
/// padded, for requests that the crypto module would never produce (bad msg_len, bad UTF-8).
pub fn encrypt_raw_frame(encoding_aes_key: &str, frame: &[u8]) -> String {
    let mut buf = frame.to_vec();
    let pad = 32 - (buf.len() % 32);
    buf.extend(std::iter::repeat_n(pad as u8, pad));
    encrypt_blocks_raw(encoding_aes_key, &buf)
}

/// AES-256-CBC over `buf` (a multiple of 16 bytes) with no padding added, base64.
pub fn encrypt_blocks_raw(encoding_aes_key: &str, buf: &[u8]) -> String {
    use aes::cipher::array::Array;
    use aes::cipher::consts::U16;
    use aes::cipher::{BlockModeEncrypt, KeyIvInit};
    use base64::Engine;
    let key = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
    .decode(encoding_aes_key)
    .unwrap();
    let mut buf = buf.to_vec();
    let key: [u8; 32] = key.try_into().unwrap();
    let iv: [u8; 16] = key[..16].try_into().unwrap();
    let mut enc = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into());
    let (blocks, tail) = Array::<u8, U16>::slice_as_chunks_mut(&mut buf);
    assert!(tail.is_empty());
    enc.encrypt_blocks(blocks);
    base64::engine::general_purpose::STANDARD.encode(&buf)
}

/// A frame: 16 random bytes, big-endian length, message, receive-id.
pub fn frame(msg: &[u8], declared_len: u32, receive_id: &str) -> Vec<u8> {
    let mut f = b"0123456789abcdef".to_vec();
    f.extend_from_slice(&declared_len.to_be_bytes());
    f.extend_from_slice(msg);
    f.extend_from_slice(receive_id.as_bytes());
    f
}

/// Signs an already-encrypted payload for `app` and wraps it in an envelope.
pub fn signed_raw(app: &TestApp, encrypted: &str) -> (String, String) {
    let crypto = app.crypto();
    let ts = now().to_string();
    let nonce = rand_nonce();
    let sig = crypto.signature(&ts, &nonce, encrypted);
    (
        format!("msg_signature={sig}&timestamp={ts}&nonce={nonce}"),
        wecom_bridge::wecom::envelope::build_envelope(&app.receive_id, encrypted, None),
    )
}

/// Writes `toml` as `dir/bridge.toml` and returns its path.
pub fn config_file(dir: &std::path::Path, toml: &str) -> std::path::PathBuf {
    let path = dir.join("bridge.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Writes the `finance` connector (an HTTP target at `env:FINANCE_URL`) into the catalog of
/// [`config_toml`]`(dir, …)`.
pub fn finance_connector(dir: &std::path::Path) {
    std::fs::write(
        dir.join("connectors/finance.toml"),
        "kind = \"http\"\nurl = \"env:FINANCE_URL\"\n",
    )
    .unwrap();
}

/// One JSON value per line, as the admin API lists things.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `check` every 50 ms until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl TestBridge {
    /// Waits until the bridge's broker connection is up (`/readyz` says so).
    pub async fn broker_up(&self) {
        let url = format!("http://{}/readyz", self.admin);
        eventually(
            20,
            "the bridge's broker connection (RabbitMQ running? `rabbitmq-server -detached`)",
            || async { get(&url).await.1.contains("\"state\":\"ok\"") },
        )
        .await;
    }

    /// Waits until every journaled event is relayed to the broker and the route queue holds
    /// nothing ready or unacknowledged (every event routed and settled).
    pub async fn route_settled(&self) {
        eventually(30, "outbox relayed and route queue drained", || async {
            let q = self.queues().await;
            let route = &q["queues"][0];
            q["outbox_backlog"] == 0
                && route["queue"] == ROUTE_QUEUE
                && route["ready"] == 0
                && route["unacked"] == 0
        })
        .await;
    }

    /// `/admin/dead-letters?queue=…` as the admin API answers it (one JSON object a line).
    pub async fn dead_letters(&self, queue: &str) -> String {
        let url = format!("http://{}/admin/dead-letters?queue={queue}", self.admin);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    /// `/admin/queues` as JSON.
    pub async fn queues(&self) -> Value {
        let resp = reqwest::get(format!("http://{}/admin/queues", self.admin))
            .await
            .unwrap();
        if !resp.status().is_success() {
            return Value::Null;
        }
        resp.json().await.unwrap()
    }
}

/// The journal key of [`config_toml`] as a sealer, for tests that open the store directly.
pub fn test_sealer() -> std::sync::Arc<wecom_bridge::store::Sealer> {
    let key: [u8; 32] = hex_key("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    std::sync::Arc::new(wecom_bridge::store::Sealer::with_key("t1", key))
}

fn hex_key(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("a hex test key");
    }
    out
}
