//! `simulate`: act as WeCom against a running bridge (or any WeCom callback endpoint).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::config::Config;
use crate::wecom::crypto::CallbackCrypto;
use crate::wecom::envelope::build_envelope;

/// The built-in sample: an approved expense claim (费用报销) for the demo CorpID.
pub const SAMPLE_APPROVAL: &str = include_str!("../../samples/approval-approved.xml");

/// Arguments of `simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The app (a key of [apps]) whose credentials sign and encrypt the request.
    #[arg(long, default_value = "demo")]
    pub app: String,
    /// Target URL; default: this config's listener and the app's path.
    #[arg(long)]
    pub url: Option<String>,
    /// Run the GET URL verification instead of posting an event.
    #[arg(long)]
    pub verify_url: bool,
    /// Decrypted event XML to send; default: a built-in approved expense claim.
    pub file: Option<PathBuf>,
    /// Timestamp to sign with (Unix seconds); default: now.
    #[arg(long)]
    pub timestamp: Option<i64>,
}

/// Builds a signed, encrypted request as WeCom would: returns (query string, body).
pub fn sign_event(
    crypto: &CallbackCrypto,
    receive_id: &str,
    xml: &str,
    timestamp: i64,
    nonce: &str,
) -> (String, String) {
    let encrypted = crypto.encrypt(xml, receive_id);
    let ts = timestamp.to_string();
    let sig = crypto.signature(&ts, nonce, &encrypted);
    (
        format!("msg_signature={sig}&timestamp={ts}&nonce={nonce}"),
        build_envelope(receive_id, &encrypted, None),
    )
}

/// Builds a URL-verification query for a random echo string: returns (query, expected reply).
pub fn sign_verification(
    crypto: &CallbackCrypto,
    receive_id: &str,
    timestamp: i64,
    nonce: &str,
) -> (String, String) {
    let echo = format!("{}", rand::random::<u64>());
    let echostr = crypto.encrypt(&echo, receive_id);
    let ts = timestamp.to_string();
    let sig = crypto.signature(&ts, nonce, &echostr);
    let encoded = percent_encode(&echostr);
    (
        format!("msg_signature={sig}&timestamp={ts}&nonce={nonce}&echostr={encoded}"),
        echo,
    )
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What `simulate` says about an accepted POST, from the bridge's outcome header.
pub fn describe_outcome(outcome: &str) -> &'static str {
    match outcome {
        "duplicate" => {
            "duplicate, journaled once: the bridge already had this event (a re-delivery) and acknowledged it again"
        }
        "quarantined" => {
            "accepted but quarantined: authentic XML the bridge cannot understand (see `wecom-bridge events --quarantined`)"
        }
        "accepted" => "accepted: the event is journaled (see `wecom-bridge events`)",
        _ => "accepted (the endpoint did not say how; it is not this bridge, or an older version)",
    }
}

pub(super) async fn run(config: &Config, args: SimulateArgs) -> anyhow::Result<()> {
    let Some(app) = config.apps.get(&args.app) else {
        bail!(
            "no app `{}` in the configuration (apps: {})",
            args.app,
            config.apps.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    let secrets = config.resolve()?;
    let s = &secrets.apps[&args.app];
    let crypto = CallbackCrypto::new(s.token.expose(), s.encoding_aes_key.expose())?;
    let receive_id = &app.receive_ids[0];
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}{}", config.server.listen, app.path));
    let timestamp = args.timestamp.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    });
    let nonce = format!("{}", rand::random::<u32>());
    let client = reqwest::Client::new();
    if args.verify_url {
        let (query, expected) = sign_verification(&crypto, receive_id, timestamp, &nonce);
        let resp = client
            .get(format!("{url}?{query}"))
            .send()
            .await
            .with_context(|| format!("GET {url}: is the bridge running?"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        println!("GET {url} → {status}");
        if status.is_success() && body == expected {
            println!("URL verification passed: the reply is exactly the decrypted echostr");
            return Ok(());
        }
        bail!("URL verification failed: expected body {expected:?}, got {body:?}");
    }
    let xml = match &args.file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => SAMPLE_APPROVAL.to_string(),
    };
    let (query, body) = sign_event(&crypto, receive_id, &xml, timestamp, &nonce);
    let resp = client
        .post(format!("{url}?{query}"))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}: is the bridge running?"))?;
    let status = resp.status();
    let outcome = resp
        .headers()
        .get(crate::ingress::OUTCOME_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    println!("POST {url} → {status}");
    if status.is_success() {
        println!("{}", describe_outcome(&outcome));
        Ok(())
    } else {
        bail!("refused: {}", text.trim())
    }
}
