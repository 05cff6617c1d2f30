use super::*;
use crate::standins::wecom::FakeWeCom;

const CORP: &str = "ww-test-corp";
const SECRET: &str = "app-secret-123";

fn creds() -> Credentials {
    Credentials::new(CORP, Secret::new(SECRET))
}

fn cfg(fake: &FakeWeCom) -> ApiConfig {
    ApiConfig {
        base_url: fake.base_url(),
        timeout: Duration::from_secs(5),
        approval_calls_per_minute: 0,
        max_retries: 3,
        rate_limited_backoff: Duration::from_millis(200),
        retry_min_delay: Duration::from_millis(10),
    }
}

async fn setup() -> (FakeWeCom, WeComApi) {
    let fake = FakeWeCom::start().await;
    fake.add_credentials(CORP, SECRET);
    fake.add_user(json!({"userid": "zhangsan", "name": "张三"}));
    let api = WeComApi::new(cfg(&fake)).expect("client");
    (fake, api)
}

/// Submit time of the first form the paging tests add.
const BASE: i64 = 1_750_000_000;

/// Adds `n` forms on template `TPL-A` with `sp_status`, numbered `{prefix}000000`,
/// `{prefix}000001`, …, the i-th submitted at `apply_time(i)`.
fn add_approvals(
    fake: &FakeWeCom,
    prefix: &str,
    n: i64,
    sp_status: u8,
    apply_time: impl Fn(i64) -> i64,
) {
    for i in 0..n {
        fake.add_approval(approval(
            &format!("{prefix}{i:06}"),
            apply_time(i),
            sp_status,
            "TPL-A",
        ));
    }
}

/// [`setup`] with a token already fetched, then `user/get` answering `errcode` the next
/// `times` times.
async fn user_get_failing(errcode: i64, times: u32) -> (FakeWeCom, WeComApi) {
    let (fake, api) = setup().await;
    api.access_token(&creds()).await.expect("token");
    fake.fail_next("user/get", errcode, times);
    (fake, api)
}

fn approval(sp_no: &str, apply_time: i64, sp_status: u8, template_id: &str) -> Value {
    json!({
        "sp_no": sp_no,
        "sp_name": "报销",
        "sp_status": sp_status,
        "template_id": template_id,
        "apply_time": apply_time,
        "applyer": {"userid": "zhangsan", "partyid": "2"},
        "apply_data": {"contents": []}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_gettoken() {
    let (fake, api) = setup().await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let api = api.clone();
        tasks.push(tokio::spawn(
            async move { api.access_token(&creds()).await },
        ));
    }
    let mut tokens = HashSet::new();
    for t in tasks {
        tokens.insert(t.await.expect("join").expect("token"));
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(fake.calls("gettoken"), 1);
    // Cached afterwards: no per-request gettoken.
    api.user(&creds(), "zhangsan").await.expect("user");
    api.user(&creds(), "zhangsan").await.expect("user");
    assert_eq!(fake.calls("gettoken"), 1);
    api.invalidate(&creds());
    api.access_token(&creds()).await.expect("token");
    assert_eq!(fake.calls("gettoken"), 2);
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_failed_gettoken() {
    let (fake, api) = setup().await;
    let bad = Credentials::new(CORP, Secret::new("wrong"));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let api = api.clone();
        let bad = bad.clone();
        tasks.push(tokio::spawn(async move { api.access_token(&bad).await }));
    }
    for t in tasks {
        let e = t.await.expect("join").expect_err("bad secret");
        assert_eq!(e.errcode(), Some(40001));
        assert!(!e.is_retryable());
    }
    assert_eq!(fake.calls("gettoken"), 1);
    let e = api
        .access_token(&Credentials::new("ww-other", Secret::new(SECRET)))
        .await
        .expect_err("bad corp");
    assert_eq!(e.errcode(), Some(40013));
    fake.stop().await;
}

#[tokio::test]
async fn expired_token_is_refreshed() {
    let (fake, api) = setup().await;
    fake.set_token_ttl(1);
    let t1 = api.access_token(&creds()).await.expect("token");
    api.user(&creds(), "zhangsan").await.expect("user");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    api.user(&creds(), "zhangsan")
        .await
        .expect("user after expiry");
    let t2 = api.access_token(&creds()).await.expect("token");
    assert_ne!(t1, t2);
    assert_eq!(fake.calls("gettoken"), 2);
    // Refreshed ahead of expiry: the fake never had to answer 42001.
    assert_eq!(fake.calls("user/get"), 2);
    fake.stop().await;
}

#[tokio::test]
async fn token_expired_mid_flight_is_retried_once() {
    let (fake, api) = setup().await;
    api.user(&creds(), "zhangsan").await.expect("user");
    fake.expire_all_tokens();
    let u = api
        .user(&creds(), "zhangsan")
        .await
        .expect("transparent retry");
    assert_eq!(u["name"], "张三");
    assert_eq!(fake.calls("gettoken"), 2);
    assert_eq!(fake.calls("user/get"), 3);
    fake.stop().await;
}

#[tokio::test]
async fn second_consecutive_token_error_surfaces() {
    let (fake, api) = user_get_failing(42001, 2).await;
    let e = api
        .user(&creds(), "zhangsan")
        .await
        .expect_err("second 42001");
    assert_eq!(e.errcode(), Some(42001));
    assert!(!e.is_retryable());
    assert_eq!(fake.calls("user/get"), 2);
    assert_eq!(fake.calls("gettoken"), 2);
    fake.stop().await;
}

/// What the caller must get from `user/get` in an [`injected_user_get_errors`] case, given
/// the case's name for the failure messages.
type UserCheck = fn(&str, Result<Value, ApiError>);

#[tokio::test]
async fn injected_user_get_errors() {
    // (case, errcode injected, how many times, user/get calls seen, what the caller gets)
    let cases: [(&str, i64, u32, usize, UserCheck); 3] = [
        ("transient errors are retried", -1, 2, 3, |case, r| {
            let u = r.unwrap_or_else(|e| panic!("{case}: third try: {e:?}"));
            assert_eq!(u["userid"], "zhangsan", "{case}");
        }),
        // 1 + max_retries calls
        ("retries stop at max_retries", 45033, 10, 4, |case, r| {
            assert!(
                matches!(r, Err(ApiError::Transient { errcode: 45033, .. })),
                "{case}: {r:?}"
            );
        }),
        (
            "ip not allowed is permanent with a hint",
            60020,
            5,
            1,
            |case, r| {
                let e = r.expect_err(case);
                match &e {
                    ApiError::Permanent {
                        api, errcode, hint, ..
                    } => {
                        assert_eq!(*api, "user/get", "{case}");
                        assert_eq!(*errcode, 60020, "{case}");
                        assert!(hint.contains("企业可信IP"), "{case}: {hint}");
                    }
                    other => panic!("{case}: unexpected {other:?}"),
                }
                assert!(!e.is_retryable(), "{case}");
            },
        ),
    ];
    for (case, errcode, times, calls, check) in cases {
        let (fake, api) = setup().await;
        fake.fail_next("user/get", errcode, times);
        check(case, api.user(&creds(), "zhangsan").await);
        assert_eq!(fake.calls("user/get"), calls, "{case}");
        fake.stop().await;
    }
}

#[tokio::test]
async fn rate_limited_waits_then_succeeds() {
    let (fake, api) = user_get_failing(45009, 1).await;
    let started = Instant::now();
    api.user(&creds(), "zhangsan").await.expect("after backoff");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(fake.calls("user/get"), 2);
    fake.stop().await;
}

#[tokio::test]
async fn a_stage_client_hands_the_rate_limit_wait_to_its_caller() {
    let (fake, api) = user_get_failing(45009, 1).await;
    let started = Instant::now();
    let e = api
        .returning_rate_limits()
        .user(&creds(), "zhangsan")
        .await
        .expect_err("not waited out");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "no in-process wait"
    );
    assert_eq!(fake.calls("user/get"), 1);
    assert_eq!(WeComApi::retry_hint(&e), Some(Duration::from_secs(60)));
    // other retryable errors are still retried in process
    fake.fail_next("user/get", -1, 1);
    api.returning_rate_limits()
        .user(&creds(), "zhangsan")
        .await
        .expect("retried");
    assert_eq!(fake.calls("user/get"), 3);
    fake.stop().await;
}

#[tokio::test]
async fn rate_limit_of_the_fake_is_respected() {
    let (fake, api) = setup().await;
    fake.set_rate_limit_per_minute("user/get", 2);
    api.user(&creds(), "zhangsan").await.expect("1");
    api.user(&creds(), "zhangsan").await.expect("2");
    let api = WeComApi::new(ApiConfig {
        max_retries: 1,
        ..cfg(&fake)
    })
    .expect("client");
    let e = api.user(&creds(), "zhangsan").await.expect_err("limited");
    assert!(
        matches!(e, ApiError::RateLimited { errcode: 45009, retry_after, .. } if retry_after >= Duration::from_secs(60))
    );
    fake.stop().await;
}

#[tokio::test]
async fn paging_returns_every_form_once() {
    let (fake, api) = setup().await;
    add_approvals(&fake, "2025", 250, 2, |i| BASE + i * 600);
    add_approvals(&fake, "2026", 30, 1, |i| BASE + i * 600);
    let got = api
        .approved_sp_nos(&creds(), BASE, BASE + 7 * 86_400, None)
        .await
        .expect("list");
    assert_eq!(fake.calls("getapprovalinfo"), 3);
    assert_eq!(got.len(), 250);
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), 250);
    assert!(got.iter().all(|s| s.starts_with("2025")));
    fake.stop().await;
}

#[tokio::test]
async fn short_pages_do_not_stop_paging() {
    let (fake, api) = setup().await;
    for i in 0..150 {
        let mut a = approval(&format!("2025{i:06}"), BASE + i, 2, "TPL-A");
        if i % 3 == 0 {
            a["applyer"]["userid"] = json!("outsider");
        }
        fake.add_approval(a);
    }
    fake.hide_applicant("outsider");
    let q = ApprovalInfoQuery::new(BASE, BASE + 86_400).with_filter(ApprovalFilter::sp_status(2));
    let first = api
        .approval_info_page(&creds(), &q, "")
        .await
        .expect("page");
    assert!(first.sp_no_list.len() < 100);
    assert!(first.next_cursor.is_some());
    let got = api
        .approved_sp_nos(&creds(), BASE, BASE + 86_400, None)
        .await
        .expect("list");
    assert_eq!(got.len(), 100);
    fake.stop().await;
}

#[tokio::test]
async fn forty_days_are_split_into_two_windows() {
    let (fake, api) = setup().await;
    add_approvals(&fake, "2025", 40, 2, |d| BASE + d * 86_400 + 7);
    fake.add_approval(approval("OTHER-TPL", BASE + 100, 2, "TPL-B"));
    let got = api
        .approved_sp_nos(&creds(), BASE, BASE + 40 * 86_400, Some("TPL-A"))
        .await
        .expect("no 301112");
    assert_eq!(fake.calls("getapprovalinfo"), 2);
    assert_eq!(got.len(), 40);
    assert!(!got.contains(&"OTHER-TPL".to_owned()));
    fake.stop().await;
}

#[tokio::test]
async fn range_too_large_halves_the_window() {
    let (fake, api) = setup().await;
    add_approvals(&fake, "2025", 10, 2, |d| BASE + d * 86_400);
    fake.fail_next("getapprovalinfo", 301112, 1);
    let got = api
        .approved_sp_nos(&creds(), BASE, BASE + 10 * 86_400, None)
        .await
        .expect("split");
    assert_eq!(got.len(), 10);
    assert_eq!(fake.calls("getapprovalinfo"), 3);
    fake.stop().await;
}

#[tokio::test]
async fn approval_detail_returns_info() {
    let (fake, api) = setup().await;
    fake.add_approval(approval("202506050012", 1_750_000_000, 2, "TPL-A"));
    let info = api
        .approval_detail(&creds(), "202506050012")
        .await
        .expect("detail");
    assert_eq!(info["sp_no"], "202506050012");
    assert_eq!(info["sp_status"], 2);
    fake.stop().await;
}

#[tokio::test]
async fn errcode_in_200_body_is_an_error() {
    let (fake, api) = setup().await;
    let e = api
        .approval_detail(&creds(), "does-not-exist")
        .await
        .expect_err("unknown sp_no");
    assert!(
        matches!(
            e,
            ApiError::Permanent {
                errcode: 301025,
                ..
            }
        ),
        "{e:?}"
    );
    let e = api
        .user(&creds(), "nobody")
        .await
        .expect_err("unknown user");
    assert_eq!(e.errcode(), Some(60111));
    fake.stop().await;
}

#[tokio::test]
async fn client_side_limiter_spaces_approval_calls() {
    let (fake, _) = setup().await;
    fake.add_approval(approval("202506050012", 1_750_000_000, 2, "TPL-A"));
    let api = WeComApi::new(ApiConfig {
        approval_calls_per_minute: 120,
        ..cfg(&fake)
    })
    .expect("client");
    let started = Instant::now();
    for _ in 0..3 {
        api.approval_detail(&creds(), "202506050012")
            .await
            .expect("detail");
    }
    // getapprovalinfo shares the budget.
    let q = ApprovalInfoQuery::new(1_749_999_000, 1_750_001_000);
    for _ in 0..3 {
        api.approval_info_page(&creds(), &q, "")
            .await
            .expect("page");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1_800),
        "{:?}",
        started.elapsed()
    );
    // Other APIs are not held back.
    let started = Instant::now();
    for _ in 0..6 {
        api.user(&creds(), "zhangsan").await.expect("user");
    }
    assert!(started.elapsed() < Duration::from_millis(1_000));
    fake.stop().await;
}

#[tokio::test]
async fn send_message_is_recorded() {
    let (fake, api) = setup().await;
    let msg = json!({
        "touser": "zhangsan|ghost", "msgtype": "text", "agentid": 1000005,
        "text": {"content": "报销单 202506050012 已推送至财务系统"},
        "enable_duplicate_check": 1
    });
    let r = api.send_message(&creds(), &msg).await.expect("send");
    assert_eq!(r.invalid_user, vec!["ghost".to_owned()]);
    assert!(r.invalid_party.is_empty());
    assert!(r.msg_id.is_some());
    assert_eq!(fake.sent_messages(), vec![msg]);
    let e = api
        .send_message(
            &creds(),
            &json!({"touser": "ghost", "msgtype": "text", "agentid": 1, "text": {"content": "x"}}),
        )
        .await
        .expect_err("all invalid");
    assert_eq!(e.errcode(), Some(81013));
    fake.stop().await;
}

#[tokio::test]
async fn external_contact_is_fetched() {
    let (fake, api) = setup().await;
    fake.add_external_contact(json!({
        "external_contact": {"external_userid": "wmABC", "name": "李四", "type": 1},
        "follow_user": [{"userid": "zhangsan", "createtime": 1_750_000_000}]
    }));
    let v = api
        .external_contact(&creds(), "wmABC")
        .await
        .expect("contact");
    assert_eq!(v["external_contact"]["name"], "李四");
    let e = api
        .external_contact(&creds(), "wmNONE")
        .await
        .expect_err("unknown");
    assert!(matches!(e, ApiError::Permanent { .. }));
    fake.stop().await;
}

#[tokio::test]
async fn network_errors_are_retryable_and_hide_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let api = WeComApi::new(ApiConfig {
        base_url: format!("http://{addr}/cgi-bin"),
        timeout: Duration::from_secs(2),
        max_retries: 1,
        retry_min_delay: Duration::from_millis(5),
        ..ApiConfig::default()
    })
    .expect("client");
    let e = api.access_token(&creds()).await.expect_err("refused");
    assert!(
        matches!(
            e,
            ApiError::Network {
                api: "gettoken",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());
    let text = format!("{e} {e:?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(!text.contains("corpsecret"), "{text}");
}

#[test]
fn classification_follows_errcode() {
    for code in [-1, 45033, 45035, 45036, 301026, 301057] {
        let e = classify("x", code, "busy".into());
        assert!(
            matches!(e, ApiError::Transient { .. }) && e.is_retryable(),
            "{code}"
        );
    }
    assert!(matches!(
        classify("x", 45009, String::new()),
        ApiError::RateLimited { .. }
    ));
    for code in [
        40001, 40013, 41001, 48002, 48006, 60020, 301055, 301056, 301025, 40058, 44004, 45002,
        81013, 60111, 40003, 301112, 99999,
    ] {
        let e = classify("x", code, "ok".into()); // errmsg text never matters
        assert!(
            matches!(e, ApiError::Permanent { .. }) && !e.is_retryable(),
            "{code}"
        );
        assert_eq!(e.errcode(), Some(code));
    }
    assert!(
        ApiError::Http {
            api: "x",
            status: 502
        }
        .is_retryable()
    );
    assert!(
        !ApiError::Http {
            api: "x",
            status: 404
        }
        .is_retryable()
    );
    assert!(check_errcode("x", json!({"errcode": 0, "errmsg": "ok"})).is_ok());
    assert!(matches!(
        check_errcode("x", json!({"errcode": "0"})),
        Err(ApiError::BadResponse { .. })
    ));
}

#[test]
fn windows_are_at_most_31_days() {
    let w = split_windows(0, 40 * 86_400);
    assert_eq!(w, vec![(0, 31 * 86_400), (31 * 86_400, 40 * 86_400)]);
    assert!(split_windows(10, 10).is_empty());
    assert_eq!(split_windows(0, 31 * 86_400).len(), 1);
}

#[test]
fn credentials_debug_hides_the_secret() {
    let text = format!("{:?}", creds());
    assert!(!text.contains(SECRET));
    assert!(text.contains("***"));
}
