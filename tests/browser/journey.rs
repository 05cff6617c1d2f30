//! The whole pipeline seen from the console: approvals posted as signed, encrypted callbacks,
//! enriched from the WeCom API stand-in, mapped by the shipped `expense-voucher` mapping and
//! delivered to the finance stand-in (OAuth2 included), on the embedded broker.
//!
//! An operator finds an approval by its SpNo and sees the voucher number the finance system
//! gave it; replays a dead delivery after the target is fixed and sees it delivered (counted
//! at the target); tries a mapping in the playground and sees the refusal point at the
//! field. A viewer finds no replay button and is refused (403) by the console and the admin
//! API; a POST without the CSRF token is refused; the audit log holds the replay and the
//! refusals. Screenshots of every page go to `target/screenshots/`.

use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};
use wecom_bridge::standins::finance::FinanceStandIn;
use wecom_bridge::standins::oauth::OAuthStandIn;
use wecom_bridge::standins::wecom::FakeWeCom;

use crate::harness::*;
use crate::support::*;

const CLIENT_SECRET: &str = "cs-browser-5e6f7a8b9c0d-client-secret";
const API_SECRET: &str = "fake-app-secret-for-browser-tests";
const EXPENSE: &str = include_str!("../fixtures/wecom/approval_detail_expense.json");

/// The expense detail of the fixture as SpNo `sp_no` with status `status`.
fn detail(sp_no: &str, status: u32) -> Value {
    let mut info = serde_json::from_str::<Value>(EXPENSE).unwrap()["info"].clone();
    info["sp_no"] = sp_no.into();
    info["sp_status"] = status.into();
    info
}

/// The shipped expense mapping and finance connector in `dir`, pointed at the stand-ins,
/// with two attempts a job (1 s apart) so an outage parks it quickly; the `[catalog]` section.
fn catalog(dir: &Path, finance: &FinanceStandIn, oauth: &OAuthStandIn) -> String {
    let (m, c) = (dir.join("shipped-mappings"), dir.join("shipped-connectors"));
    copy_dir(&repo().join("mappings/tables"), &m.join("tables"));
    copy_dir(
        &repo().join("mappings/expense-voucher.cases"),
        &m.join("expense-voucher.cases"),
    );
    std::fs::copy(
        repo().join("mappings/expense-voucher.toml"),
        m.join("expense-voucher.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(&c).unwrap();
    let secret = secret_file(dir, "client", CLIENT_SECRET);
    let text = edited(
        &shipped_finance(finance, oauth, &secret),
        &[
            (
                "schedule_secs = [5, 30, 120, 600, 3600]",
                "schedule_secs = [1]",
            ),
            ("max_attempts = 8", "max_attempts = 2"),
        ],
        "finance.toml",
    );
    std::fs::write(c.join("finance.toml"), text).unwrap();
    catalog_section(&m, &c)
}

/// The ledger's jobs of `sp` through the admin API (as the operator).
async fn jobs_of(admin: std::net::SocketAddr, sp: &str) -> Vec<Value> {
    let url = format!("http://{admin}/admin/deliveries?sp_no={sp}");
    let v: Value = serde_json::from_str(&get_as(&url, OPERATOR_TOKEN).await.1).unwrap();
    v["jobs"].as_array().cloned().unwrap_or_default()
}

async fn state_of(admin: std::net::SocketAddr, sp: &str) -> String {
    jobs_of(admin, sp)
        .await
        .first()
        .map(|j| j["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_follows_an_approval_replays_a_delivery_and_tries_a_mapping() {
    let fake = FakeWeCom::start().await;
    fake.add_credentials(CORP_ID, API_SECRET);
    let oauth = OAuthStandIn::start().await;
    oauth.add_client("wecom-bridge", CLIENT_SECRET);
    let finance = FinanceStandIn::start(Some(oauth.authority())).await;
    let app = TestApp::new("browser_journey");
    let t = TestBridge::start_edited(std::slice::from_ref(&app), |dir, toml| {
        let toml = with_api_secret(&toml, "browser_journey", API_SECRET, 1_000_005);
        format!(
            "{toml}\n{}[wecom]\napi_base_url = \"{}\"\n[reconcile]\nenabled = false\n\
             [broker]\nretry_tiers_secs = [1, 2]\n{}",
            users_section(),
            fake.base_url(),
            catalog(dir, &finance, &oauth)
        )
    })
    .await;
    let admin = t.admin;
    let send = |sp: &str| {
        fake.add_approval(detail(sp, 2));
        let (q, body) = signed(
            &app,
            &wecom_bridge::cli::demo::samples::callback(CORP_ID, sp, 2, 2),
        );
        let url = t.url(&app.path);
        async move { assert_eq!(post(&url, &q, body).await.0, 200) }
    };

    // one approval booked; two parked while the finance system is down
    let (booked, fixed, still_dead) = ("202511300101", "202511300102", "202511300103");
    send(booked).await;
    eventually(60, "the voucher reaches the finance stand-in", || async {
        finance.vouchers_for(&format!("EXP-{booked}")) == 1
    })
    .await;
    let voucher_no = finance.vouchers()[0].voucher_no.clone();
    finance.set_outage(true);
    send(fixed).await;
    send(still_dead).await;
    for sp in [fixed, still_dead] {
        eventually(60, "the job is dead after its two attempts", || async {
            state_of(admin, sp).await == "dead"
        })
        .await;
    }

    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;

    // the operator finds the approval by SpNo and sees its voucher number
    sign_in(&c, admin, OPERATOR_TOKEN).await;
    eventually(20, "the overview counts the three jobs", || async {
        goto(&c, admin, "/console/overview").await;
        text_of(&c, "#connectors").await.contains("finance")
    })
    .await;
    assert!(
        c.find(Locator::Css("#chart")).await.is_ok(),
        "the chart is drawn"
    );
    let queues = text_of(&c, "#queues").await;
    assert!(
        queues.contains("deliver.finance") && queues.contains("writeback"),
        "every stage queue's depth: {queues}"
    );
    shot(&c, "overview").await;
    goto(&c, admin, "/console/journey").await;
    type_into(&c, "#sp-no", booked).await;
    click(&c, "#find").await;
    wait_for(&c, "#captured-voucher_no").await;
    assert_eq!(
        text_of(&c, "#captured-voucher_no .value").await.trim(),
        voucher_no,
        "the journey shows the number the finance system gave"
    );
    let callbacks = text_of(&c, "#callbacks").await;
    assert!(
        callbacks.contains("approved: routed to expense-voucher → finance"),
        "{callbacks}"
    );
    assert!(
        text_of(&c, "main").await.contains("request and response"),
        "an operator may open the attempts' bodies"
    );
    // the applicant's WeCom notification (writeback) joins the journey once it is sent
    eventually(30, "the journey shows the notification sent", || async {
        goto(&c, admin, &format!("/console/journey?sp_no={booked}")).await;
        c.find(Locator::Css("table.writebacks")).await.is_ok()
            && text_of(&c, "table.writebacks").await.contains("sent")
    })
    .await;
    c.set_window_size(1280, 1300).await.unwrap();
    shot(&c, "journey").await;
    c.set_window_size(1280, 900).await.unwrap();

    // the target is fixed; the operator replays one dead delivery and sees it delivered
    finance.set_outage(false);
    goto(&c, admin, "/console/deliveries?state=dead").await;
    let dead = text_of(&c, "#deliveries").await;
    assert!(dead.contains(fixed) && dead.contains(still_dead), "{dead}");
    shot(&c, "deliveries-dead").await;
    let key = jobs_of(admin, fixed).await[0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    click(&c, &format!("#row-{key} button.replay")).await;
    wait_for(&c, "#confirm-replay").await;
    shot(&c, "deliveries-confirm").await;
    confirm_replay(&c, "Replayed 1 dead job(s)").await;
    eventually(60, "the replayed job is delivered", || async {
        goto(&c, admin, &format!("/console/deliveries?sp_no={fixed}")).await;
        text_of(&c, "#deliveries").await.contains("delivered")
    })
    .await;
    assert_eq!(
        finance.vouchers_for(&format!("EXP-{fixed}")),
        1,
        "exactly one voucher at the target after the replay"
    );
    assert_eq!(finance.vouchers_for(&format!("EXP-{still_dead}")), 0);
    shot(&c, "deliveries").await;

    // a POST without the CSRF token is refused
    let status = post_from_page(
        &c,
        "/console/deliveries/replay",
        json!({"all": "1", "confirm": "yes"}),
    )
    .await;
    assert_eq!(status, json!(403), "no CSRF token, no replay");

    // the playground: a claim without its total is refused, pointing at the field
    goto(&c, admin, "/console/playground?mapping=expense-voucher").await;
    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("mappings/expense-voucher.cases/missing-total.json"),
    )
    .unwrap();
    c.execute(
        "document.getElementById('sample').value = arguments[0];",
        vec![json!(sample)],
    )
    .await
    .unwrap();
    click(&c, "#try").await;
    wait_for(&c, "#refusal").await;
    assert_eq!(text_of(&c, "#refusal-code").await.trim(), "missing_field");
    let field = text_of(&c, "#refusal-field").await;
    assert!(
        field.contains("total"),
        "the refusal names the field: {field}"
    );
    assert!(
        text_of(&c, "#refusal-message").await.contains("报销总额"),
        "the message names the form control"
    );
    assert!(
        text_of(&c, "#refusal-at")
            .await
            .contains("expense-voucher.toml:"),
        "and the mapping's file:line:col"
    );
    assert!(
        text_of(&c, "#cases-summary").await.contains(" 0 failed"),
        "the shipped cases pass"
    );
    shot(&c, "playground").await;
    // a recent real approval as the sample: fetched from WeCom, mapped to a voucher
    click(&c, "a.use-instance").await;
    wait_for(&c, "#sample-note").await;
    click(&c, "#try").await;
    wait_for(&c, "#document").await;
    assert!(
        text_of(&c, "#document")
            .await
            .contains("\"document_no\": \"EXP-"),
        "the real instance maps to a voucher"
    );
    shot(&c, "playground-document").await;

    // connectors: settings with secrets as ***
    goto(&c, admin, "/console/connectors").await;
    let page = text_of(&c, "#connector-finance").await;
    assert!(
        page.contains("***") && !page.contains(CLIENT_SECRET),
        "{page}"
    );
    assert!(page.contains("Last success"), "{page}");
    shot(&c, "connectors").await;
    // "test auth" asks the token endpoint (counted there) and shows the verdict
    let tokens_before = oauth.token_requests();
    click(&c, "#test-auth-finance").await;
    wait_for(&c, "#probe-result").await;
    let probe = text_of(&c, "#probe-result").await;
    assert!(
        probe.contains("finance") && probe.contains(" ok "),
        "{probe}"
    );
    assert_eq!(
        oauth.token_requests(),
        tokens_before + 1,
        "one token request"
    );
    shot(&c, "connectors-test-auth").await;
    sign_out(&c).await;

    // the viewer: no replay button, no playground, 403 from the console and the API
    sign_in(&c, admin, VIEWER_TOKEN).await;
    goto(&c, admin, "/console/deliveries?state=dead").await;
    assert!(text_of(&c, "#deliveries").await.contains(still_dead));
    assert_absent(&c, "button.replay", "no replay button for a viewer").await;
    goto(&c, admin, "/console/connectors").await;
    wait_for(&c, "#connector-finance").await;
    assert_absent(&c, "form.test-auth", "no test-auth button for a viewer").await;
    goto(&c, admin, "/console/deliveries?state=dead").await;
    assert_absent(&c, "#replay-all", "no replay-all button for a viewer").await;
    shot(&c, "deliveries-viewer").await;
    let csrf = csrf_of(&c).await;
    let dead_key = jobs_of(admin, still_dead).await[0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let status = post_from_page(
        &c,
        "/console/deliveries/replay",
        json!({"csrf": csrf, "key": dead_key, "confirm": "yes"}),
    )
    .await;
    assert_eq!(status, json!(403), "the console refuses a viewer's replay");
    api_refuses_viewer_replay(admin, "deliver.finance").await;
    goto(&c, admin, "/console/playground").await;
    assert!(
        text_of(&c, "main")
            .await
            .contains("needs the operator role")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        finance.vouchers_for(&format!("EXP-{still_dead}")),
        0,
        "nothing was replayed for the viewer"
    );

    // the audit log holds the replay and the refused attempts
    let audit = audit_holds_replay_and_refusals(&c, admin).await;
    assert!(audit.contains("test_auth"), "the probe is audited: {audit}");
    shot(&c, "audit-after-replay").await;
    sign_out(&c).await;

    // the operator again: a search by applicant and template, then "replay all matching"
    sign_in(&c, admin, OPERATOR_TOKEN).await;
    goto(
        &c,
        admin,
        "/console/journey?applicant=ZhangSan&template=费用报销&since=1h",
    )
    .await;
    let found = text_of(&c, "#found").await;
    for sp in [booked, fixed, still_dead] {
        assert!(found.contains(sp), "the search finds {sp}: {found}");
    }
    shot(&c, "journey-search").await;
    goto(
        &c,
        admin,
        "/console/deliveries?state=dead&connector=finance",
    )
    .await;
    click(&c, "#replay-all").await;
    wait_for(&c, "#confirm-replay").await;
    assert!(
        text_of(&c, "main").await.contains("(1 job(s))"),
        "the confirmation says how many"
    );
    confirm_replay(&c, "Replayed 1 dead job(s)").await;
    eventually(60, "every replayed job is delivered", || async {
        finance.vouchers_for(&format!("EXP-{still_dead}")) == 1
    })
    .await;
    assert_eq!(
        finance.voucher_count(),
        3,
        "one voucher per approval, no more"
    );

    c.close().await.unwrap();
    drop(driver);
    t.stop().await;
    finance.stop().await;
    oauth.stop().await;
    fake.stop().await;
}
