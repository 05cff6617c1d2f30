//! `wecom-bridge demo`, in-process on a temporary data folder and loopback port 0: the
//! vouchers must really arrive at the finance stand-in, the refusal must really be parked,
//! and the printout must say so.

use std::path::Path;

use rust_decimal::Decimal;
use wecom_bridge::cli::demo;
use wecom_bridge::config::Config;

use crate::support::{get_as, page_as, post_sign_in, set_cookie};

/// The demo on the shipped config, its listeners on port 0, its data in `data_dir`.
pub(crate) async fn start_demo(data_dir: &Path) -> demo::Demo {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bridge.toml");
    let mut config = Config::load(&shipped).unwrap();
    config.server.listen = "127.0.0.1:0".into();
    config.admin.listen = "127.0.0.1:0".into();
    demo::start(config, data_dir, &shipped).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_delivers_the_sample_claims_and_prints_where_they_went() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_demo(dir.path()).await;

    let sp = |i: usize| d.sent[i].0.clone();
    let vouchers = d.finance.vouchers();
    let mut docs: Vec<(String, Decimal)> = vouchers
        .iter()
        .map(|v| {
            let total = v.document["total"]
                .as_str()
                .unwrap_or_else(|| panic!("total is exact decimal text: {}", v.document));
            (v.document_no.clone(), total.parse::<Decimal>().unwrap())
        })
        .collect();
    docs.sort();
    let mut want = vec![
        (format!("EXP-{}", sp(0)), Decimal::new(200009, 2)),
        (format!("EXP-{}", sp(1)), Decimal::new(138000, 2)),
        (format!("EXP-{}", sp(2)), Decimal::new(10, 2)),
        (format!("EXP-R-{}", sp(2)), Decimal::new(10, 2)),
    ];
    want.sort();
    assert_eq!(docs, want, "{}", d.summary);
    assert_eq!(d.finance.duplicate_vouchers(), 0);
    // the 1999.99 and 0.10 rows are separate debit lines, balanced by one credit line
    let first = vouchers
        .iter()
        .find(|v| v.document_no == format!("EXP-{}", sp(0)))
        .unwrap();
    let debits: Vec<&str> = first.document["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["debit"].as_str())
        .filter(|a| *a != "0.00")
        .collect();
    assert_eq!(debits.len(), 2, "{}", first.document);
    assert!(
        debits.contains(&"1999.99") && debits.contains(&"0.10"),
        "{debits:?}"
    );

    let s = &d.summary;
    assert!(s.contains("At the finance system"), "{s}");
    assert!(s.contains(": 4 voucher(s)"), "{s}");
    for v in &vouchers {
        assert!(
            s.contains(&v.voucher_no),
            "voucher {} not printed:\n{s}",
            v.voucher_no
        );
    }
    assert!(s.contains("2000.09") && s.contains("1380.00"), "{s}");
    // the refused claim: parked with its reason, and the exact command to replay it
    let parked = sp(3);
    assert!(
        s.lines()
            .any(|l| l.contains(&parked) && l.contains("unknown_category")),
        "{s}"
    );
    assert!(s.contains("replay --queue deliver.finance --id "), "{s}");
    assert!(s.contains("delivered"), "{s}");
    assert!(!s.contains("NOTE: not every claim had settled"), "{s}");
    assert!(
        s.contains("/metrics") && s.contains("wecom-bridge deliveries"),
        "{s}"
    );
    // writeback: a card per booked approval (3) and one for the operators (the parked claim),
    // counted at the WeCom stand-in, and each printed
    let sent = d.wecom.sent_messages();
    let cards: Vec<_> = sent.iter().filter(|m| m["msgtype"] == "textcard").collect();
    assert_eq!(cards.len(), 3, "{sent:?}");
    let ops: Vec<_> = sent
        .iter()
        .filter(|m| m["touser"] == "FinanceOps")
        .collect();
    assert_eq!(ops.len(), 1, "{sent:?}");
    assert!(ops[0].to_string().contains(&parked), "{}", ops[0]);
    assert!(s.contains("WeCom notifications"), "{s}");
    for v in &vouchers {
        if v.document_no.starts_with("EXP-R-") {
            continue;
        }
        assert!(
            s.lines()
                .any(|l| l.contains("textcard") && l.contains(&format!("凭证号 {}", v.voucher_no))),
            "the card of {} not printed:\n{s}",
            v.voucher_no
        );
    }
    assert!(
        s.lines()
            .any(|l| l.contains("FinanceOps") && l.contains("unknown_category")),
        "{s}"
    );
    d.stop().await;
}

/// The printout names the console's address and a viewer and an operator token: the address
/// answers, each token signs in with its role, and the admin API takes the operator token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_console_that_answers_and_tokens_that_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_demo(dir.path()).await;
    let s = &d.summary;
    assert!(
        s.contains(&format!("Operator console: {}", d.console_url)),
        "{s}"
    );
    assert!(
        s.contains(&d.viewer_token) && s.contains(&d.operator_token),
        "{s}"
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(format!("{}/sign-in", d.console_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let nonce_cookie = set_cookie(&page, "wb_signin");
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in with WeCom"), "{html}");
    for (token, role) in [(&d.viewer_token, "viewer"), (&d.operator_token, "operator")] {
        let r = post_sign_in(&client, &d.console_url, &nonce_cookie, token).await;
        assert_eq!(r.status(), 303, "{role}");
        let session = set_cookie(&r, "wb_session");
        let overview = format!("{}/overview", d.console_url);
        let html = page_as(&client, &overview, &session).await;
        assert!(
            html.contains(&format!(r#"<span class="role">{role}</span>"#)),
            "{html}"
        );
    }
    let deliveries = format!("http://{}/admin/deliveries", d.bridge.admin_addr);
    assert_eq!(get_as(&deliveries, &d.operator_token).await.0, 200);
    d.stop().await;
}
