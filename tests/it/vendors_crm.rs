//! The HR and CRM vendor connectors (`kind = "beisen" | "fxiaoke" | "salesforce"`) built from
//! connector files and sent through `Connector::send` against their protocol stand-ins, counted
//! AT THE STAND-IN: the leave push polled to its final batch state, token expiry and refresh,
//! FxiaoKe's token limit under 50 concurrent deliveries, each system's duplicate and business
//! failure, no secret in the record; and `check --online`'s probes of the same files.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use wecom_bridge::deliver::probe::{ProbeReport, ProbeResult, Problem, probe_spec};
use wecom_bridge::deliver::vendor::{beisen, fxiaoke};
use wecom_bridge::deliver::{Connector, Verdict, spec};
use wecom_bridge::standins;

use crate::support::{
    connector_with_secrets, no_secret_in, permanent_reason, send, spec_with_secrets,
};

const BS_SECRET: &str = "bs-secret-77a1";
const FX_SECRET: &str = "fx-secret-2b9d";
const FX_PERM: &str = "fx-perm-4c1e";
const SF_SECRET: &str = "sf-secret-9e0f";

/// The secret files the connector files here name in `{dir}`.
const SECRETS: [(&str, &str); 5] = [
    ("bs", BS_SECRET),
    ("fx", FX_SECRET),
    ("fxp", FX_PERM),
    ("sf", SF_SECRET),
    ("wrong", "not-the-secret"),
];

/// A connector from `text`; `{dir}` holds the secret files `bs`, `fx`, `fxp`, `sf`, `wrong`.
fn connector(dir: &Path, text: &str) -> Connector {
    connector_with_secrets(dir, text, &SECRETS)
}

fn spec_of(dir: &Path, text: &str) -> spec::ConnectorSpec {
    spec_with_secrets(dir, text, &SECRETS)
}

fn beisen_file(url: &str, secret: &str) -> String {
    format!(
        "kind = \"beisen\"\nurl = \"{url}\"\n[beisen]\napp_id = \"1001\"\ntenant_id = \"204402\"\nsecret = \"file:{{dir}}/{secret}\"\npoll_interval_ms = 50\npoll_timeout_secs = 5\n"
    )
}

fn leave(staff: i64) -> Value {
    json!({"StaffId": staff, "StaffName": "张三", "VacationType": "事假",
        "StartDateTime": "2026-03-16 09:00:00", "StopDateTime": "2026-03-16 18:00:00", "Reason": "家中有事"})
}

#[tokio::test]
async fn beisen_leave_is_polled_to_its_final_state_and_tokens_are_refreshed() {
    let mut state = standins::beisen::BeisenState::default();
    state.app = ("1001".into(), "204402".into(), BS_SECRET.into());
    state.staff.insert(115_000_335);
    let server = standins::beisen::start(state).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path(), &beisen_file(&server.base_url(), "bs"));

    let a = send(&c, &leave(115_000_335), "leave:1").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    assert_eq!(server.with(|s| s.records.len()), 1, "one record at Beisen");
    assert_eq!(
        server.with(|s| s.records[0]["VacationType"].clone()),
        "事假"
    );
    // "Running" first, then final: polled at least twice, the request id captured
    assert!(server.count(beisen::ASYNC_RESULT_PATH) >= 2);
    let id = a.captured["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("req-"), "{a:?}");
    assert!(
        a.response.as_ref().unwrap().body.contains("AllSuccess"),
        "{a:?}"
    );
    no_secret_in(&a, &[BS_SECRET, "beisen-token-"]);

    // a business failure arrives only in the batch state: permanent, with Beisen's message
    let a = send(&c, &leave(999), "leave:2").await;
    let reason = permanent_reason(&a);
    assert!(reason.contains("员工不存在"), "{reason}");
    assert_eq!(server.with(|s| s.records.len()), 1);

    // token expiry: 401, a new token, the push sent once more
    assert_eq!(server.count(beisen::TOKEN_PATH), 1);
    server.with(standins::beisen::BeisenState::expire_tokens);
    let a = send(&c, &leave(115_000_335), "leave:3").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    assert_eq!(server.count(beisen::TOKEN_PATH), 2);
    assert_eq!(server.with(|s| s.records.len()), 2);
    assert_eq!(c.token_fetches(), 2);

    // a wrong secret: permanent, saying what to check; nothing pushed
    let wrong = connector(dir.path(), &beisen_file(&server.base_url(), "wrong"));
    let a = send(&wrong, &leave(115_000_335), "leave:4").await;
    let reason = permanent_reason(&a);
    assert!(
        reason.contains("invalid_client") && reason.contains("beisen.secret"),
        "{reason}"
    );
    assert_eq!(
        server.count(beisen::VACATION_PATH),
        4,
        "3 pushes + 1 refused with 401"
    );
}

fn fxiaoke_file(url: &str, calls: usize) -> String {
    format!(
        "kind = \"fxiaoke\"\nurl = \"{url}\"\nconcurrency = 50\n[fxiaoke]\napp_id = \"FSAID_1\"\napp_secret = \"file:{{dir}}/fx\"\npermanent_code = \"file:{{dir}}/fxp\"\nuser_id = \"FSUID_1000\"\nobject = \"AccountObj\"\ntoken_calls_per_minute = {calls}\n"
    )
}

fn fx_state() -> standins::fxiaoke::FxiaokeState {
    let mut state = standins::fxiaoke::FxiaokeState::default();
    state.app = ("FSAID_1".into(), FX_SECRET.into(), FX_PERM.into());
    state.ea = "fxxxx1".into();
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fxiaoke_50_concurrent_deliveries_ask_for_one_token_and_never_two_at_once() {
    let server = standins::fxiaoke::start(fx_state()).await;
    // a slow token endpoint makes overlapping token requests visible if there were any
    server.set_latency(fxiaoke::TOKEN_PATH, std::time::Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(connector(dir.path(), &fxiaoke_file(&server.base_url(), 10)));
    let run = |round: usize| {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    let doc = json!({"name": format!("客户 {round}-{i}")});
                    send(&c, &doc, &format!("customer:{round}-{i}")).await
                })
            })
            .collect();
        futures_util::future::join_all(tasks)
    };
    for a in run(0).await {
        let a = a.unwrap();
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
        assert!(a.captured["id"].as_str().unwrap().starts_with("68fa"));
        no_secret_in(&a, &[FX_SECRET, FX_PERM, "fx-token-"]);
    }
    assert_eq!(
        server.with(|s| s.created().len()),
        50,
        "50 accounts at FxiaoKe"
    );
    assert_eq!(server.with(|s| s.token_requests()), 1);
    assert_eq!(server.max_concurrent(fxiaoke::TOKEN_PATH), 1);

    // the token expires mid-run: 50 deliveries get 20016, one new token serves them all
    server.with(standins::fxiaoke::FxiaokeState::expire_tokens);
    for a in run(1).await {
        assert_eq!(a.unwrap().verdict, Verdict::Delivered);
    }
    assert_eq!(server.with(|s| s.created().len()), 100);
    assert_eq!(server.with(|s| s.token_requests()), 2);
    assert_eq!(
        server.max_concurrent(fxiaoke::TOKEN_PATH),
        1,
        "never two at once"
    );
    assert!(
        !server.with(|s| s.token_overuse()),
        "≤ 10 token requests a minute"
    );
    let created = server.with(|s| s.created());
    assert_eq!(created[0]["dataObjectApiName"], "AccountObj");
    let create = server
        .recorded()
        .into_iter()
        .find(|r| r.path == fxiaoke::CREATE_PATH)
        .unwrap();
    assert_eq!(create.header("x-fs-ea"), Some("fxxxx1"));
    assert_eq!(create.header("x-fs-userid"), Some("FSUID_1000"));
    assert_eq!(create.json().unwrap()["triggerWorkFlow"], false);
}

#[tokio::test]
async fn fxiaoke_rations_its_token_requests_and_dead_letters_business_failures() {
    let server = standins::fxiaoke::start(fx_state()).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path(), &fxiaoke_file(&server.base_url(), 2));
    let doc = json!({"name": "上海示例科技有限公司"});
    assert_eq!(send(&c, &doc, "c:1").await.verdict, Verdict::Delivered);
    server.with(standins::fxiaoke::FxiaokeState::expire_tokens);
    assert_eq!(send(&c, &doc, "c:2").await.verdict, Verdict::Delivered);
    // a third token in the same minute would exceed the configured 2: retry later instead
    server.with(standins::fxiaoke::FxiaokeState::expire_tokens);
    let a = send(&c, &doc, "c:3").await;
    match &a.verdict {
        Verdict::Retryable {
            after: Some(after),
            reason,
        } => {
            assert!(reason.contains("token requests a minute"), "{reason}");
            assert!(after.as_secs() <= 60, "{after:?}");
        }
        v => panic!("expected retryable with a wait, got {v:?}"),
    }
    assert_eq!(
        server.with(|s| s.token_requests()),
        2,
        "counted at the stand-in"
    );

    // HTTP 200 with a business errorCode: permanent with FxiaoKe's message
    let server = standins::fxiaoke::start(fx_state()).await;
    server.with(|s| {
        s.reject_next
            .push((43_002, "客户名称已存在，不允许重复".into()))
    });
    let c = connector(dir.path(), &fxiaoke_file(&server.base_url(), 10));
    let a = send(&c, &doc, "c:4").await;
    let reason = permanent_reason(&a);
    assert!(
        reason.contains("43002") && reason.contains("客户名称已存在"),
        "{reason}"
    );
    assert_eq!(a.response.as_ref().unwrap().status, 200);
    assert!(server.with(|s| s.created().is_empty()));
}

fn salesforce_file(url: &str) -> String {
    format!(
        "kind = \"salesforce\"\nurl = \"{url}\"\n[idempotency]\nfield = \"/WeCom_External_Id__c\"\n[salesforce]\nclient_id = \"3MVG9\"\nclient_secret = \"file:{{dir}}/sf\"\nobject = \"Account\"\nexternal_id_field = \"WeCom_External_Id__c\"\n"
    )
}

#[tokio::test]
async fn salesforce_upserts_by_external_id_counts_the_second_as_duplicate_and_refreshes_tokens() {
    let mut state = standins::salesforce::SalesforceState::default();
    state.client = ("3MVG9".into(), SF_SECRET.into());
    let server = standins::salesforce::start(state).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path(), &salesforce_file(&server.base_url()));
    let doc = json!({"WeCom_External_Id__c": "wmEAlECwAAHrbWYD/1", "Name": "上海某某科技有限公司"});

    let a = send(&c, &doc, "customer:1").await;
    assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
    assert!(a.captured["id"].as_str().unwrap().starts_with("001D"));
    assert_eq!(a.request.method, "PATCH");
    assert!(
        a.request
            .url
            .ends_with("/sobjects/Account/WeCom_External_Id__c/wmEAlECwAAHrbWYD%2F1"),
        "{}",
        a.request.url
    );
    assert_eq!(server.with(|s| s.record_count()), 1);
    let patch = server
        .recorded()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert!(
        patch.json().unwrap().get("WeCom_External_Id__c").is_none(),
        "the id travels in the path"
    );
    no_secret_in(&a, &[SF_SECRET, "00Dstandin"]);

    // the same customer again (a retry after a lost answer): 200 updated → duplicate
    let a = send(&c, &doc, "customer:1").await;
    assert_eq!(a.verdict, Verdict::Duplicate, "{a:?}");
    assert_eq!(server.with(|s| s.record_count()), 1, "still one record");

    // token expired: 401 INVALID_SESSION_ID, a new token, sent once more
    server.with(standins::salesforce::SalesforceState::expire_tokens);
    let doc2 = json!({"WeCom_External_Id__c": "wm2", "Name": "B"});
    assert_eq!(
        send(&c, &doc2, "customer:2").await.verdict,
        Verdict::Delivered
    );
    assert_eq!(c.token_fetches(), 2);
    assert_eq!(server.with(|s| s.record_count()), 2);

    // a validation error (errors as a top-level array): permanent with Salesforce's message
    let a = send(&c, &json!({"WeCom_External_Id__c": "wm3"}), "customer:3").await;
    let reason = permanent_reason(&a);
    assert!(reason.contains("REQUIRED_FIELD_MISSING"), "{reason}");
    // no external id in the document: refused before sending
    let a = send(&c, &json!({"Name": "C"}), "customer:4").await;
    assert!(matches!(a.verdict, Verdict::Permanent { .. }), "{a:?}");
    assert_eq!(server.with(|s| s.record_count()), 2);
}

/// Asserts that the probe found the credentials refused and that its line says `fix`.
fn refused_naming(r: &ProbeReport, fix: &str) {
    assert!(
        matches!(
            &r.result,
            ProbeResult::Failed {
                problem: Problem::Credentials { .. }
            }
        ),
        "{r:?}"
    );
    assert!(r.line().contains(fix), "{}", r.line());
}

#[tokio::test]
async fn check_online_probes_vendor_connectors_with_their_token_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut bs = standins::beisen::BeisenState::default();
    bs.app = ("1001".into(), "204402".into(), BS_SECRET.into());
    let beisen = standins::beisen::start(bs).await;
    let fx = standins::fxiaoke::start(fx_state()).await;
    let mut sf = standins::salesforce::SalesforceState::default();
    sf.client = ("3MVG9".into(), SF_SECRET.into());
    let sf = standins::salesforce::start(sf).await;

    for text in [
        beisen_file(&beisen.base_url(), "bs"),
        fxiaoke_file(&fx.base_url(), 10),
        salesforce_file(&sf.base_url()),
    ] {
        let r = probe_spec(&spec_of(dir.path(), &text)).await;
        assert!(matches!(r.result, ProbeResult::Ok { .. }), "{r:?}");
        assert!(r.line().contains(" ok "), "{}", r.line());
    }
    let wrong = beisen_file(&beisen.base_url(), "wrong");
    let r = probe_spec(&spec_of(dir.path(), &wrong)).await;
    refused_naming(&r, "fix: check app_id and the AppSecret");
    let wrong = fxiaoke_file(&fx.base_url(), 10).replace("{dir}/fx\"", "{dir}/wrong\"");
    let r = probe_spec(&spec_of(dir.path(), &wrong)).await;
    assert!(r.line().contains("errorCode 10006"), "{}", r.line());
    let wrong = salesforce_file(&sf.base_url()).replace("{dir}/sf", "{dir}/wrong");
    let r = probe_spec(&spec_of(dir.path(), &wrong)).await;
    assert!(r.line().contains("invalid_client"), "{}", r.line());
    // counted at the stand-ins: one good and one wrong token request each
    assert_eq!(beisen.count(beisen::TOKEN_PATH), 2);
    assert_eq!(fx.with(|s| s.token_requests()), 2);
    assert_eq!(
        sf.count(wecom_bridge::deliver::vendor::salesforce::TOKEN_PATH),
        2
    );
}

#[tokio::test]
async fn check_online_probes_kingdee_by_login_and_yonbip_by_its_signed_token_request() {
    use wecom_bridge::deliver::vendor::{kingdee, yonbip};
    let dir = tempfile::tempdir().unwrap();
    let creds = crate::vendor_connectors::kingdee_creds();
    let kd = standins::kingdee::start(standins::kingdee::KingdeeState::new(
        creds.clone(),
        crate::vendor_connectors::KD_PASSWORD,
    ))
    .await;
    std::fs::write(dir.path().join("kd"), format!("{}\n", creds.app_secret)).unwrap();
    let kd_file = |auth: &str, secret: &str| {
        format!(
            "kind = \"kingdee\"\nurl = \"{}/k3cloud\"\n[kingdee]\nform_id = \"GL_VOUCHER\"\nauth = \"{auth}\"\nacct_id = \"{}\"\nuser = \"{}\"\napp_id = \"{}\"\napp_secret = \"file:{{dir}}/{secret}\"\n",
            kd.base_url(),
            creds.acct_id,
            creds.user,
            creds.app_id
        )
    };
    let r = probe_spec(&spec_of(dir.path(), &kd_file("login_by_app_secret", "kd"))).await;
    assert!(matches!(r.result, ProbeResult::Ok { .. }), "{r:?}");
    assert!(r.probed.contains("AuthService.LoginByAppSecret"), "{r:?}");
    let r = probe_spec(&spec_of(
        dir.path(),
        &kd_file("login_by_app_secret", "wrong"),
    ))
    .await;
    refused_naming(&r, "kingdee.acct_id");
    let logins = kd.count(&kingdee::Op::LoginByAppSecret.path("/k3cloud"));
    assert_eq!(logins, 2, "counted at the stand-in");
    // signed headers have no login: reachability only, and the line says so
    let r = probe_spec(&spec_of(dir.path(), &kd_file("signed", "kd"))).await;
    assert!(
        matches!(&r.result, ProbeResult::Reachable { detail } if detail.contains("not checked")),
        "{r:?}"
    );

    let mut state = standins::yonbip::YonbipState::default();
    state
        .apps
        .insert("yb-key-1".into(), "yb-secret-8c2e".into());
    let yb = standins::yonbip::start(state).await;
    std::fs::write(dir.path().join("yb"), "yb-secret-8c2e\n").unwrap();
    let yb_file = |secret: &str| {
        format!(
            "kind = \"yonbip\"\nurl = \"{}\"\n[yonbip]\napp_key = \"yb-key-1\"\napp_secret = \"file:{{dir}}/{secret}\"\ntenant_id = \"tenant-1\"\n",
            yb.base_url()
        )
    };
    let r = probe_spec(&spec_of(dir.path(), &yb_file("yb"))).await;
    assert!(matches!(r.result, ProbeResult::Ok { .. }), "{r:?}");
    let r = probe_spec(&spec_of(dir.path(), &yb_file("wrong"))).await;
    refused_naming(&r, "yonbip.app_secret");
    assert_eq!(yb.count(yonbip::TOKEN_PATH), 2);
    assert!(!r.line().contains("yb-secret-8c2e"));
}

#[test]
fn hr_and_crm_templates_load_and_pass_their_cases() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let mut ran = 0;
    for (template, connector) in [
        ("beisen-leave", "beisen"),
        ("fxiaoke-customer", "fxiaoke"),
        ("salesforce-customer", "salesforce"),
    ] {
        let root = repo.join("templates").join(template);
        let cat = wecom_bridge::catalog::load_in_zone(
            &root.join("mappings"),
            &root.join("connectors"),
            &zone,
        )
        .unwrap_or_else(|e| {
            panic!(
                "{template}: {}",
                wecom_bridge::catalog::Diagnostic::join(&e, "\n")
            )
        });
        assert_eq!(cat.connectors.len(), 1, "{template}");
        assert_eq!(cat.connectors[0].name, connector);
        assert!(
            cat.connectors[0].vendor.is_some(),
            "{template} uses the vendor protocol"
        );
        assert_eq!(cat.mappings.len(), 1, "{template}");
        let m = &cat.mappings[0];
        let dir = wecom_bridge::map::cases::cases_dir(&m.file);
        let results = wecom_bridge::map::cases::run_cases(&m.compiled, &dir, &zone).unwrap();
        assert!(results.len() >= 2, "{template}: {results:?}");
        for r in results {
            ran += 1;
            assert!(
                r.failure.is_none(),
                "{template} {}: {}",
                r.input.display(),
                r.failure.unwrap()
            );
        }
    }
    assert_eq!(ran, 8);
}

#[tokio::test]
async fn probing_a_running_fxiaoke_connector_never_exceeds_its_token_allowance() {
    let server = standins::fxiaoke::start(fx_state()).await;
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path(), &fxiaoke_file(&server.base_url(), 1));
    let a = send(&c, &json!({"name": "A"}), "c:1").await;
    assert_eq!(a.verdict, Verdict::Delivered);
    // the one token request of this minute went to the delivery: the probe does not ask
    let r = wecom_bridge::deliver::probe::probe(&c).await;
    assert!(
        matches!(
            &r.result,
            ProbeResult::Failed {
                problem: Problem::Rationed { per_minute: 1, .. }
            }
        ),
        "{r:?}"
    );
    assert!(r.line().contains("fix: probe again in"), "{}", r.line());
    assert_eq!(
        server.with(|s| s.token_requests()),
        1,
        "counted at the stand-in"
    );
}
