//! The HR and CRM systems: Beisen (token, push, async result), FxiaoKe (token limits) and
//! Salesforce (OAuth token, upsert).

use std::time::Duration;

use serde_json::{Value, json};
use wecom_bridge::deliver::vendor::{Captured, Outcome, beisen, fxiaoke, salesforce};
use wecom_bridge::standins;

use super::{post_form, post_json};

#[tokio::test]
async fn beisen_token_push_poll_failure_and_expiry() {
    let mut state = standins::beisen::BeisenState::default();
    state.app = ("1001".into(), "204402".into(), "beisen-secret".into());
    state.staff.insert(115_000_335);
    let server = standins::beisen::start(state).await;
    let client = reqwest::Client::new();
    let token = |tenant: &'static str, secret: &'static str| {
        let url = format!("{}{}", server.base_url(), beisen::TOKEN_PATH);
        async move {
            let (status, body) = post_form(&url, &beisen::token_form("1001", tenant, secret)).await;
            beisen::parse_token(status, &body)
        }
    };
    assert_eq!(
        token("1", "beisen-secret").await,
        Err(beisen::BeisenError::Refused {
            status: 400,
            error: "invalid_tenantid".into()
        })
    );
    assert!(matches!(
        token("204402", "wrong").await,
        Err(beisen::BeisenError::Refused { .. })
    ));
    let bearer = token("204402", "beisen-secret").await.expect("token");
    let push = |bearer: String, staff: i64| {
        let client = client.clone();
        let base = server.base_url();
        async move {
            let body = json!({"VacationRecords": [{"StaffName": "张三", "StaffId": staff, "VacationType": "事假", "StartDateTime": "2026-03-16 09:00:00", "StopDateTime": "2026-03-16 18:00:00", "Reason": "家中有事"}]});
            let r = client
                .post(format!("{base}{}", beisen::VACATION_PATH))
                .bearer_auth(&bearer)
                .json(&body)
                .send()
                .await
                .expect("reachable");
            let status = r.status().as_u16();
            let id = r
                .headers()
                .get(beisen::REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let outcome =
                beisen::classify_push(status, id.as_deref(), &r.bytes().await.expect("body"), None);
            let Outcome::Success { captured } = outcome else {
                return outcome;
            };
            let request_id = captured.id.expect("request id captured");
            let mut states = Vec::new();
            loop {
                let r = client
                    .get(format!("{base}{}", beisen::ASYNC_RESULT_PATH))
                    .query(&[("requestId", &request_id)])
                    .bearer_auth(&bearer)
                    .send()
                    .await
                    .expect("reachable");
                let status = r.status().as_u16();
                match beisen::classify_state(status, &r.bytes().await.expect("body")) {
                    beisen::BatchState::Pending(s) => states.push(s),
                    beisen::BatchState::Done(o) => {
                        assert_eq!(states, ["Running"], "polled through Running first");
                        return o;
                    }
                }
                assert!(states.len() < 5, "async state never became final");
            }
        }
    };
    assert_eq!(
        push(bearer.clone(), 115_000_335).await,
        Outcome::Success {
            captured: Captured::default()
        }
    );
    assert!(
        matches!(push(bearer.clone(), 42).await, Outcome::Permanent { reason } if reason.contains("员工不存在：42"))
    );
    server.with(|s| s.throttle_next = 1);
    assert!(matches!(
        push(bearer.clone(), 115_000_335).await,
        Outcome::Retryable { .. }
    ));
    server.with(standins::beisen::BeisenState::expire_tokens);
    assert!(matches!(
        push(bearer, 115_000_335).await,
        Outcome::Reauth { .. }
    ));
    let fresh = token("204402", "beisen-secret").await.expect("token");
    assert!(matches!(
        push(fresh, 115_000_335).await,
        Outcome::Success { .. }
    ));
    assert_eq!(server.with(|s| s.records.len()), 2);
    server.stop().await;
}

#[tokio::test]
async fn fxiaoke_token_create_failure_expiry_and_token_counting() {
    let mut state = standins::fxiaoke::FxiaokeState::default();
    state.app = ("FSAID_1".into(), "fx-secret".into(), "perm-1".into());
    state.ea = "fxxxx1".into();
    let server = standins::fxiaoke::start(state).await;
    let token_url = format!("{}{}", server.base_url(), fxiaoke::TOKEN_PATH);
    let token = |secret: &'static str| {
        let url = token_url.clone();
        async move {
            let (status, _, body) =
                post_json(&url, &[], &fxiaoke::token_body("FSAID_1", secret, "perm-1")).await;
            fxiaoke::parse_token(status, &body)
        }
    };
    assert!(
        matches!(token("wrong").await, Err(fxiaoke::FxiaokeError::Refused { code, .. }) if code == "10006")
    );
    let t = token("fx-secret").await.expect("token");
    let create = |t: fxiaoke::Token, name: &'static str| {
        let url = format!("{}{}", server.base_url(), fxiaoke::CREATE_PATH);
        async move {
            let mut f = serde_json::Map::new();
            f.insert("name".into(), name.into());
            let headers = [
                ("authorization", format!("Bearer {}", t.access_token)),
                ("x-fs-ea", t.ea.clone()),
                ("x-fs-userid", "1000".into()),
            ];
            let (status, _, body) =
                post_json(&url, &headers, &fxiaoke::create_body("AccountObj", f)).await;
            fxiaoke::classify(status, &body)
        }
    };
    assert!(
        matches!(create(t.clone(), "上海示例科技有限公司").await, Outcome::Success { captured } if captured.id.is_some())
    );
    server.with(|s| {
        s.reject_next
            .push((320_001_401, "必填字段未填写：负责人".into()))
    });
    assert!(
        matches!(create(t.clone(), "B").await, Outcome::Permanent { reason } if reason.contains("必填字段未填写"))
    );
    server.with(standins::fxiaoke::FxiaokeState::expire_tokens);
    assert!(matches!(
        create(t.clone(), "C").await,
        Outcome::Reauth { .. }
    ));
    let fresh = token("fx-secret").await.expect("token");
    assert!(matches!(create(fresh, "C").await, Outcome::Success { .. }));
    assert_eq!(server.with(|s| s.created().len()), 2);
    assert_eq!(server.with(|s| s.token_requests()), 3);
    assert!(!server.with(|s| s.token_overuse()));
    assert_eq!(server.max_concurrent(fxiaoke::TOKEN_PATH), 1);

    // The counters a connector test relies on do flag abuse: two overlapping token calls,
    // then more than ten within a minute.
    server.set_latency(fxiaoke::TOKEN_PATH, Duration::from_millis(200));
    let (a, b) = tokio::join!(token("fx-secret"), token("fx-secret"));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(server.max_concurrent(fxiaoke::TOKEN_PATH), 2);
    server.set_latency(fxiaoke::TOKEN_PATH, Duration::ZERO);
    for _ in 0..6 {
        token("fx-secret").await.expect("token");
    }
    assert_eq!(server.with(|s| s.token_requests()), 11);
    assert!(server.with(|s| s.token_overuse()));
    server.stop().await;
}

#[tokio::test]
async fn salesforce_token_upsert_duplicate_failure_and_expiry() {
    let mut state = standins::salesforce::SalesforceState::default();
    state.client = ("cid".into(), "csecret".into());
    state.unique_field = "ExtId__c".into();
    let server = standins::salesforce::start(state).await;
    let client = reqwest::Client::new();
    let token = |secret: &'static str| {
        let url = format!("{}{}", server.base_url(), salesforce::TOKEN_PATH);
        async move {
            let (status, body) = post_form(&url, &salesforce::token_form("cid", secret)).await;
            salesforce::parse_token(status, &body)
        }
    };
    assert!(matches!(
        token("nope").await,
        Err(salesforce::SalesforceError::Refused { status: 400, .. })
    ));
    let t = token("csecret").await.expect("token");
    let call = |t: salesforce::Token, method: reqwest::Method, path: String, body: Value| {
        let client = client.clone();
        async move {
            let r = client
                .request(method, format!("{}{path}", t.instance_url))
                .bearer_auth(&t.access_token)
                .json(&body)
                .send()
                .await
                .expect("reachable");
            let status = r.status().as_u16();
            (
                status,
                salesforce::classify(status, &r.bytes().await.expect("body")),
            )
        }
    };
    let upsert_path = salesforce::upsert_path("v60.0", "Account", "ExtId__c", "SP 1");
    let upsert = |t| {
        let body = json!({"Name": "Express Logistics"});
        call(t, reqwest::Method::PATCH, upsert_path.clone(), body)
    };
    let create_path = "/services/data/v60.0/sobjects/Account/".to_owned();
    let create = |t, body| call(t, reqwest::Method::POST, create_path.clone(), body);
    let (status, first) = upsert(t.clone()).await;
    assert_eq!(status, 201);
    let Outcome::Success { captured } = first else {
        panic!("{first:?}")
    };
    let (status, again) = upsert(t.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        again,
        Outcome::Success {
            captured: captured.clone()
        }
    );
    let (_, dup) = create(t.clone(), json!({"Name": "X", "ExtId__c": "SP 1"})).await;
    assert!(
        matches!(dup, Outcome::Duplicate { reason } if reason.contains(captured.id.as_deref().unwrap()))
    );
    let (_, missing) = create(t.clone(), json!({"ExtId__c": "SP2"})).await;
    assert!(
        matches!(missing, Outcome::Permanent { reason } if reason.contains("Required fields are missing: [Name]"))
    );
    server.with(|s| s.throttle_next = 1);
    assert!(matches!(
        create(t.clone(), json!({"Name": "Y"})).await.1,
        Outcome::Retryable { .. }
    ));
    server.with(standins::salesforce::SalesforceState::expire_tokens);
    assert!(matches!(
        create(t, json!({"Name": "Y"})).await.1,
        Outcome::Reauth { .. }
    ));
    let fresh = token("csecret").await.expect("token");
    assert!(matches!(
        create(fresh, json!({"Name": "Y"})).await.1,
        Outcome::Success { .. }
    ));
    assert_eq!(server.with(|s| s.record_count()), 2);
    server.stop().await;
}
