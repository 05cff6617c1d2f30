//! The demo's printout: what was sent, what arrived at the finance system, what the ledger
//! recorded, what was parked and how to replay it, and what to try next.
//!
//! It owns only formatting; it must not fetch anything (the driver hands it what it read).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::Parked;
use super::samples::{Claim, Expect};
use crate::record::JobRecord;
use crate::standins::finance::Voucher;

/// Everything the demo observed, for [`summary`].
#[derive(Debug)]
pub struct Seen<'a> {
    /// The claims sent: (SpNo, claim).
    pub sent: &'a [(String, Claim)],
    /// SpNos revoked after approval.
    pub revoked: &'a [String],
    /// Where the callbacks were posted.
    pub callback_url: &'a str,
    /// The finance stand-in's voucher endpoint.
    pub finance_url: &'a str,
    /// The vouchers the finance stand-in committed.
    pub vouchers: &'a [Voucher],
    /// The ledger's jobs (newest first).
    pub jobs: &'a [JobRecord],
    /// Parked messages on the connector's deliver queue.
    pub dead: &'a [Parked],
    /// The messages the WeCom stand-in delivered (`message/send` bodies), oldest first.
    pub notifications: &'a [Value],
    /// Whether every claim settled in time.
    pub settled: bool,
    /// The admin API's base URL.
    pub admin: &'a str,
    /// How to open the console.
    pub console: ConsoleHint<'a>,
    /// The demo's data folder.
    pub data_dir: &'a Path,
    /// The configuration file (quoted in commands when it is not the default).
    pub config_path: &'a Path,
    /// The connector the claims go to.
    pub connector: &'a str,
}

/// How to open the demo's console.
#[derive(Debug)]
pub struct ConsoleHint<'a> {
    /// Its address.
    pub url: &'a str,
    /// A viewer's token.
    pub viewer_token: &'a str,
    /// An operator's token (also what the CLI needs while the demo runs).
    pub operator_token: &'a str,
    /// The WeCom member the stand-in signs in with "Sign in with WeCom".
    pub wecom_user: &'a str,
}

/// Renders the human summary (aligned columns, no log noise).
pub fn summary(s: &Seen<'_>) -> String {
    let mut out = String::new();
    let ours = |sp: &str| s.sent.iter().any(|(n, _)| n == sp);
    let _ = writeln!(
        out,
        "\nwecom-bridge demo: the real pipeline, in this process\n"
    );
    let _ = writeln!(
        out,
        "Sent {} signed, encrypted WeCom callbacks to {}",
        s.sent.len() + s.revoked.len(),
        s.callback_url
    );
    for (sp, c) in s.sent {
        let what = match c.expect {
            Expect::Voucher => "approved",
            Expect::VoucherThenReversal => "approved, then revoked",
            Expect::Refused => "approved (unknown category)",
        };
        let _ = writeln!(out, "  {sp}  {what:<28} {:>10}  {}", c.total, c.reason);
    }

    let _ = writeln!(
        out,
        "\nAt the finance system ({}): {} voucher(s)",
        s.finance_url,
        s.vouchers.len()
    );
    if !s.vouchers.is_empty() {
        let _ = writeln!(
            out,
            "  {:<14} {:<22} {:>10}  {:>5}  SUMMARY",
            "VOUCHER NO", "DOCUMENT", "TOTAL", "LINES"
        );
    }
    for v in s.vouchers {
        let d = &v.document;
        let lines = d["lines"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "  {:<14} {:<22} {:>10}  {lines:>5}  {}",
            v.voucher_no,
            v.document_no,
            text(&d["total"]),
            text(&d["summary"])
        );
    }

    let _ = writeln!(out, "\nDelivery ledger (wecom-bridge deliveries):");
    let _ = writeln!(
        out,
        "  {:<14} {:<26} {:<10} {:<26} {:>8}  RESULT",
        "SPNO", "MAPPING", "ACTION", "STATE", "ATTEMPTS"
    );
    let mut jobs: Vec<&JobRecord> = s.jobs.iter().filter(|j| ours(&j.business_key)).collect();
    jobs.sort_by_key(|j| (j.business_key.clone(), j.created_at_ms));
    for j in &jobs {
        let result = j
            .captured
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(j.last_error.clone())
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            out,
            "  {:<14} {:<26} {:<10} {:<26} {:>8}  {result}",
            j.business_key,
            j.mapping,
            j.action,
            j.state.as_str(),
            j.attempts
        );
    }
    if jobs.is_empty() {
        let _ = writeln!(out, "  (no jobs recorded)");
    }

    let queue = crate::route::deliver_queue(s.connector);
    let dead: Vec<&Parked> = s.dead.iter().filter(|d| ours(&d.business_key)).collect();
    let _ = writeln!(
        out,
        "\nParked, waiting for you (wecom-bridge dead-letters --queue {queue}):"
    );
    for d in &dead {
        let _ = writeln!(out, "  {}  {}", d.business_key, d.reason.trim());
        let _ = writeln!(
            out,
            "    fix the cause (e.g. add the category to mappings/tables/expense-accounts.csv), then:\n    wecom-bridge{} replay --queue {queue} --id {}",
            config_flag(s.config_path),
            d.id
        );
    }
    if dead.is_empty() {
        let _ = writeln!(out, "  (nothing parked)");
    }
    let _ = writeln!(
        out,
        "\nWeCom notifications (writeback; what the WeCom stand-in received on message/send):"
    );
    for m in s.notifications {
        let to = ["touser", "toparty", "totag"]
            .iter()
            .filter_map(|k| m[*k].as_str().filter(|v| !v.is_empty()))
            .collect::<Vec<_>>()
            .join(" ");
        let kind = text(&m["msgtype"]);
        let (title, body) = match kind.as_str() {
            "textcard" => (
                text(&m["textcard"]["title"]),
                text(&m["textcard"]["description"]),
            ),
            _ => (String::new(), text(&m["text"]["content"])),
        };
        let body = crate::writeback::spec::plain_text(&body).replace('\n', "  ");
        let text = [title, body]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("  ");
        let _ = writeln!(out, "  → {to:<12} {kind:<9} {text}");
    }
    if s.notifications.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    if !s.settled {
        let _ = writeln!(
            out,
            "\nNOTE: not every claim had settled after 30 s; the lists above show where they were \
             then. Watch them with `wecom-bridge deliveries`."
        );
    }

    let c = config_flag(s.config_path);
    let _ = writeln!(out, "\nThe bridge keeps running. Admin API: {}", s.admin);
    let h = &s.console;
    let _ = writeln!(out, "\nOperator console: {}", h.url);
    let _ = writeln!(
        out,
        "  sign in with the operator token  {}  (replays, payloads)",
        h.operator_token
    );
    let _ = writeln!(
        out,
        "  or the viewer token              {}  (read only)",
        h.viewer_token
    );
    let _ = writeln!(
        out,
        "  or \"Sign in with WeCom\": the WeCom stand-in signs you in as {} (operator)",
        h.wecom_user
    );
    let _ = writeln!(
        out,
        "\nThe admin API needs a token while the demo runs; for the commands below:\n  export BRIDGE_ADMIN__TOKEN={}",
        h.operator_token
    );
    let _ = writeln!(out, "Try:");
    for (cmd, what) in [
        (format!("wecom-bridge{c} deliveries"), "every delivery job"),
        (
            format!("wecom-bridge{c} deliveries show {}", first_sp(s)),
            "one form's jobs with every attempt",
        ),
        (
            format!("wecom-bridge{c} dead-letters --queue {queue}"),
            "parked messages and why",
        ),
        (
            format!("wecom-bridge{c} simulate"),
            "post another approved claim as WeCom would",
        ),
        (format!("curl {}/metrics", s.admin), "Prometheus metrics"),
    ] {
        let _ = writeln!(out, "  {cmd:<58} {what}");
    }
    let _ = writeln!(
        out,
        "Data: {} (delete it to start over). Ctrl-C stops the demo.",
        s.data_dir.display()
    );
    out
}

fn first_sp(s: &Seen<'_>) -> String {
    s.sent.first().map(|(n, _)| n.clone()).unwrap_or_default()
}

fn config_flag(path: &Path) -> String {
    if path == Path::new("config/bridge.toml") {
        String::new()
    } else {
        format!(" -c {}", path.display())
    }
}

/// A JSON scalar as text (strings without quotes).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
