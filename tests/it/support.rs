//! Shared test support: configuration builders, a running bridge, signed requests, metrics.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use wecom_bridge::app::{self, RunningBridge};
use wecom_bridge::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitDelivery, RabbitOptions};
use wecom_bridge::broker::{
    Body, Broker, Consumer, Delivery, ENVELOPE_VERSION, Envelope, ROUTE_QUEUE, WRITEBACK_QUEUE,
};
use wecom_bridge::cli::simulate::sign_event;
use wecom_bridge::config::Config;
use wecom_bridge::store::Store;
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

    /// Journal entries as the admin API lists them (all, newest first).
    pub async fn events(&self, extra: &str) -> Vec<Value> {
        let limit = if extra.contains("limit=") {
            ""
        } else {
            "&limit=100000"
        };
        let text = reqwest::get(format!(
            "http://{}/admin/events?x=1{limit}{extra}",
            self.admin
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        json_lines(&text)
    }

    pub async fn stop(mut self) -> TempDir {
        if let Some(b) = self.bridge.take() {
            b.shutdown().await;
        }
        self.dir
    }
}

/// Posts a callback; returns (status, body).
pub async fn post(url: &str, query: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{url}?{query}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// POSTs to `url` without a body and answers the JSON it gets back.
pub async fn post_json(url: &str) -> Value {
    let resp = reqwest::Client::new().post(url).send().await.unwrap();
    resp.json().await.unwrap()
}

/// Gets a URL; returns (status, body).
pub async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
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

/// The `wecom-bridge` binary built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_wecom-bridge");

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `serve` child process.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub public: String,
    pub admin: String,
}

impl ServeProcess {
    /// Starts `wecom-bridge serve` with `config` in `cwd`, listening on fresh ports, and
    /// waits until it answers `/readyz`.
    pub fn start(config: &std::path::Path, cwd: &std::path::Path) -> ServeProcess {
        let public = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let child = std::process::Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .current_dir(cwd)
            .env("BRIDGE_SERVER__LISTEN", &public)
            .env("BRIDGE_ADMIN__LISTEN", &admin)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn wecom-bridge serve");
        let p = ServeProcess {
            child,
            public,
            admin,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&p.admin) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200") {
                    return p;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not become ready"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a `wecom-bridge` command to completion; returns (success, stdout, stderr).
pub fn run_cli(
    args: &[&str],
    cwd: &std::path::Path,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run_cli`] of `wecom-bridge --config <config> <args…>`.
pub fn run_config(
    config: &std::path::Path,
    args: &[&str],
    cwd: &std::path::Path,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    run_cli(&all, cwd, env)
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

/// Writes, in `dir`, the configuration of app `app` (its path is returned) and fills its
/// embedded broker's route queue with [`envelope`]s of `ids`, of which the first `parked`
/// taken are parked with the reason `reason` gives their id. No bridge runs.
pub async fn embedded_with_dead_letters(
    dir: &std::path::Path,
    app: &str,
    ids: &[&str],
    parked: usize,
    reason: impl Fn(&str) -> &'static str,
) -> std::path::PathBuf {
    let config = config_file(dir, &config_toml(dir, &[TestApp::new(app)]));
    let b = embedded_at(dir).await;
    for id in ids {
        b.publish(ROUTE_QUEUE, &envelope(id)).await.unwrap();
    }
    let mut c = b.consume(ROUTE_QUEUE).await.unwrap();
    for _ in 0..parked {
        let d = c.next().await.unwrap().unwrap();
        let why = reason(&d.envelope().id);
        d.dead_letter(why).await.unwrap();
    }
    drop(c);
    b.close().await;
    config
}

/// The embedded broker on the store of [`config_toml`]`(dir, …)`, opened by the test while
/// no bridge runs (to lay out queues for the CLI).
pub async fn embedded_at(dir: &std::path::Path) -> EmbeddedBroker {
    let store = Store::open(&dir.join("bridge.redb"), test_sealer()).unwrap();
    let opts = EmbeddedOptions {
        prefetch: 8,
        lease: Duration::from_secs(30),
        delivery_limit: 20,
    };
    EmbeddedBroker::open(store, opts).await.unwrap()
}

/// The RabbitMQ URL tests use; RabbitMQ must be running (tests fail loudly otherwise).
pub fn amqp_url() -> String {
    std::env::var("WECOM_BRIDGE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A `[broker]` section for RabbitMQ with a unique prefix.
pub fn rabbit_section(prefix: &str) -> String {
    format!(
        "[broker]\nkind = \"rabbitmq\"\nurl = \"{}\"\nprefix = \"{prefix}\"\nretry_tiers_secs = [1, 2]\n",
        amqp_url()
    )
}

/// The test's own RabbitMQ connection to the broker of a bridge configured with
/// [`rabbit_section`]`(prefix)`, with the same retry tiers.
pub async fn own_rabbit(prefix: &str) -> RabbitBroker {
    let opts = RabbitOptions {
        prefix: prefix.into(),
        prefetch: 8,
        retry_tiers: vec![Duration::from_secs(1), Duration::from_secs(2)],
        delivery_limit: 20,
        queues: vec![],
    };
    RabbitBroker::connect(&amqp_url(), opts).await.unwrap()
}

/// Publishes [`envelope`]s with these ids to `queue` and parks each as a stage would, with
/// `reason`; returns the consumer, still open (a replayed message comes back to it).
pub async fn park(
    own: &RabbitBroker,
    queue: &str,
    ids: &[&str],
    reason: &str,
) -> Consumer<RabbitDelivery> {
    for id in ids {
        own.publish(queue, &envelope(id)).await.unwrap();
    }
    let mut c = own.consume(queue).await.unwrap();
    for _ in ids {
        let d = c.next().await.unwrap().unwrap();
        d.dead_letter(reason).await.unwrap();
    }
    c
}

/// Deletes `queues` (with their delay and dead-letter queues at the tiers of
/// [`rabbit_section`]) of the bridge configured with `rabbit_section(prefix)`.
pub async fn delete_rabbit_queues(prefix: &str, queues: &[String]) {
    let own = own_rabbit(prefix).await;
    own.delete_queues(queues).await.unwrap();
    own.close().await;
}

/// Deletes the bridge's route and writeback queues and `queue` from RabbitMQ (with their
/// delay tiers and dead letters) and closes the connection.
pub async fn remove_queues(own: RabbitBroker, queue: &str) {
    own.delete_queues(&[
        ROUTE_QUEUE.to_string(),
        WRITEBACK_QUEUE.to_string(),
        queue.to_string(),
    ])
    .await
    .unwrap();
    own.close().await;
}

/// A test message `id`: an approval event whose XML carries the id and some CDATA.
pub fn envelope(id: &str) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        id: id.into(),
        kind: "approval_change".into(),
        business_key: format!("{id}:2"),
        app: "demo".into(),
        created_at_ms: 1_749_106_583_000,
        body: Body::Message(
            serde_json::json!({"type": "event", "xml": format!("<xml><Id>{id}</Id><Note><![CDATA[汉字 & <tags>]]></Note></xml>")}),
        ),
    }
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

/// [`run_cli`] from async tests, off the runtime's worker threads (the child may need servers
/// that run on this runtime).
pub async fn run_cli_async(args: &[&str], cwd: &std::path::Path) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        run_cli(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &cwd,
            &[],
        )
    })
    .await
    .unwrap()
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
