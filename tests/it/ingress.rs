//! Ingress at its HTTP boundary: URL verification, event delivery, every bad input.
//! Each refusal asserts status, the metric, and that nothing was stored.

use wecom_bridge::telemetry::names;

use crate::support::*;

const APPROVAL: &str = include_str!("../../samples/approval-approved.xml");

fn approval_for(corp: &str, sp_no: &str) -> String {
    APPROVAL
        .replace("wx5823bf96d3bd56c7", corp)
        .replace("202506050012", sp_no)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doc_sample_is_stale_with_window_on_and_answered_with_window_off() {
    let doc = |name: &str, check: bool| TestApp {
        name: name.into(),
        path: format!("/cb/{name}"),
        token: "QDG6eK".into(),
        key: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C".into(),
        receive_id: "wx5823bf96d3bd56c7".into(),
        check_timestamp: check,
        kind: "app",
    };
    let t = TestBridge::start(&[doc("doc_on", true), doc("doc_off", false)]).await;
    let get_v = vector("official_doc_sample_url_verification");
    let post_v = vector("official_doc_sample_post");
    let get_q = get_v["http"]["query"].as_str().unwrap();
    let post_q = post_v["http"]["query"].as_str().unwrap();
    let post_body = post_v["http"]["body"].as_str().unwrap().to_string();

    let (status, _) = get(&format!("{}?{get_q}", t.url("/cb/doc_on"))).await;
    assert_eq!(status, 403);
    let (status, _) = post(&t.url("/cb/doc_on"), post_q, post_body.clone()).await;
    assert_eq!(status, 403);
    assert_eq!(
        counter(
            names::CALLBACKS_REJECTED,
            &[("app", "doc_on"), ("reason", "stale_timestamp")]
        ),
        2
    );

    let (status, body) = get(&format!("{}?{get_q}", t.url("/cb/doc_off"))).await;
    assert_eq!((status, body.as_str()), (200, "1616140317555161061"));
    let (status, body) = post(&t.url("/cb/doc_off"), post_q, post_body).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let events = t.events("").await;
    assert_eq!(
        events.len(),
        1,
        "only the window-off POST is journaled: {events:?}"
    );
    assert_eq!(events[0]["app"], "doc_off");
    assert_eq!(events[0]["kind"], "other");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_vector_is_accepted_over_http_and_journaled_with_its_kind() {
    let app = TestApp::new("vec_http").no_timestamp_check();
    let t = TestBridge::start(&[app]).await;
    let expect = [
        ("bridge_url_verification", "", ""),
        ("approval_approved", "approval_change", "202506050012:2"),
        ("approval_rejected", "approval_change", ""),
        ("approval_revoked_after_pass", "approval_change", ""),
        ("contact_create_user", "contact_change", "create_user:SunQi"),
        ("external_contact_add", "external_contact_change", ""),
        ("text_message_multibyte", "other", ""),
        ("open_approval_change", "open_approval_change", ""),
        ("batch_job_result", "other", ""),
        ("edge_full_pad_block", "", ""),
    ];
    let mut posted = 0;
    for (id, kind, key) in expect {
        let v = vector(id);
        let q = v["http"]["query"].as_str().unwrap();
        if v["http"]["method"] == "GET" {
            let (status, body) = get(&format!("{}?{q}", t.url("/cb/vec_http"))).await;
            assert_eq!(status, 200, "{id}");
            assert_eq!(
                body,
                v["expected"]["response_body"].as_str().unwrap(),
                "{id}"
            );
            continue;
        }
        let (status, body) = post(
            &t.url("/cb/vec_http"),
            q,
            v["http"]["body"].as_str().unwrap().to_string(),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, ""), "{id}");
        posted += 1;
        let newest = &t.events("&limit=1").await[0];
        if !kind.is_empty() {
            assert_eq!(newest["kind"], kind, "{id}");
        }
        if !key.is_empty() {
            assert_eq!(newest["business_key"], key, "{id}");
        }
        // journaled as understood (the relay may already have published it)
        assert!(
            newest["state"] == "pending" || newest["state"] == "published",
            "{id}: {newest}"
        );
    }
    assert_eq!(t.events("").await.len(), posted);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_apps_answer_success() {
    let mut app = TestApp::new("suite_app");
    app.kind = "suite";
    let t = TestBridge::start(&[app]).await;
    let app = TestApp::new("suite_app");
    let (q, body) = signed(&app, &approval_for(CORP_ID, "300000000001"));
    let (status, text) = post(&t.url("/cb/suite_app"), &q, body).await;
    assert_eq!((status, text.as_str()), (200, "success"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_with_new_nonce_and_timestamp_is_journaled_once() {
    let app = TestApp::new("redeliver");
    let t = TestBridge::start(&[TestApp::new("redeliver")]).await;
    let xml = approval_for(CORP_ID, "202500000001");
    for _ in 0..3 {
        let (q, body) = signed(&app, &xml); // fresh nonce and a new random prefix each time
        let (status, _) = post(&t.url("/cb/redeliver"), &q, body).await;
        assert_eq!(status, 200);
    }
    let events = t.events("&app=redeliver").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        counter(
            names::CALLBACKS,
            &[("app", "redeliver"), ("outcome", "duplicate")]
        ),
        2
    );
    // a different status of the same form is a different event
    let (q, body) = signed(
        &app,
        &xml.replace(
            "<SpStatus>2</SpStatus><TemplateId>",
            "<SpStatus>6</SpStatus><TemplateId>",
        ),
    );
    assert_eq!(post(&t.url("/cb/redeliver"), &q, body).await.0, 200);
    assert_eq!(t.events("&app=redeliver").await.len(), 2);
    t.stop().await;
}

/// One bad request: expected status and metric reason; asserts nothing was stored.
async fn refused(
    t: &TestBridge,
    app: &str,
    query: &str,
    body: impl Into<reqwest::Body>,
    status: u16,
    reason: &str,
) {
    let before = counter(
        names::CALLBACKS_REJECTED,
        &[("app", app), ("reason", reason)],
    );
    let stored_before = t.events("").await.len();
    let (got, text) = post(&t.url(&format!("/cb/{app}")), query, body).await;
    assert_eq!(got, status, "{reason}: body {text}");
    assert_eq!(
        counter(
            names::CALLBACKS_REJECTED,
            &[("app", app), ("reason", reason)]
        ),
        before + 1,
        "{reason}: counter"
    );
    assert_eq!(
        t.events("").await.len(),
        stored_before,
        "{reason}: something was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_counted_and_not_stored() {
    let app = TestApp::new("bad");
    let t = TestBridge::start(&[TestApp::new("bad")]).await;
    let xml = approval_for(CORP_ID, "202500000002");

    // bad signature
    let (q, body) = signed(&app, &xml);
    let forged = format!(
        "msg_signature={}{}",
        "0".repeat(40),
        &q[q.find('&').unwrap()..]
    );
    refused(&t, "bad", &forged, body.clone(), 403, "bad_signature").await;

    // stale and future timestamps, correctly signed
    for ts in [now() - 3600, now() + 3600] {
        let (q, body) =
            wecom_bridge::cli::simulate::sign_event(&app.crypto(), CORP_ID, &xml, ts, "1");
        refused(&t, "bad", &q, body, 403, "stale_timestamp").await;
    }
    // timestamp that is not a number (signed as is)
    let crypto = app.crypto();
    let enc = crypto.encrypt(&xml, CORP_ID);
    let sig = crypto.signature("soon", "1", &enc);
    refused(
        &t,
        "bad",
        &format!("msg_signature={sig}&timestamp=soon&nonce=1"),
        wecom_bridge::wecom::envelope::build_envelope(CORP_ID, &enc, None),
        400,
        "bad_timestamp",
    )
    .await;

    // wrong receive-id
    let (q, body) =
        wecom_bridge::cli::simulate::sign_event(&crypto, "ww0000000000000000", &xml, now(), "2");
    refused(&t, "bad", &q, body, 403, "receive_id_mismatch").await;

    // bad base64 (signed, so it gets past the signature)
    let (q, body) = signed_raw(&app, "!!!not-base64!!!");
    refused(&t, "bad", &q, body, 400, "bad_base64").await;

    // bad padding: last plaintext byte 0x00
    let mut f = frame(xml.as_bytes(), xml.len() as u32, CORP_ID);
    let pad = 32 - f.len() % 32;
    f.extend(std::iter::repeat_n(pad as u8, pad - 1));
    f.push(0);
    let enc = encrypt_blocks_raw(&app.key, &f);
    let (q, body) = signed_raw(&app, &enc);
    refused(&t, "bad", &q, body, 400, "bad_padding").await;

    // msg_len larger than the frame
    let enc = encrypt_raw_frame(&app.key, &frame(xml.as_bytes(), 1_000_000, CORP_ID));
    let (q, body) = signed_raw(&app, &enc);
    refused(&t, "bad", &q, body, 400, "msg_len_out_of_range").await;

    // non-UTF-8 message
    let bad_utf8 = [b"<xml>".as_slice(), &[0xff, 0xfe, 0xfd], b"</xml>"].concat();
    let enc = encrypt_raw_frame(&app.key, &frame(&bad_utf8, bad_utf8.len() as u32, CORP_ID));
    let (q, body) = signed_raw(&app, &enc);
    refused(&t, "bad", &q, body, 400, "not_utf8").await;

    // oversize body
    let (q, _) = signed(&app, &xml);
    refused(&t, "bad", &q, vec![b'a'; 70 * 1024], 413, "too_large").await;

    // missing query parameters
    let (q, body) = signed(&app, &xml);
    for drop in ["msg_signature", "timestamp", "nonce"] {
        let partial: Vec<&str> = q.split('&').filter(|kv| !kv.starts_with(drop)).collect();
        refused(
            &t,
            "bad",
            &partial.join("&"),
            body.clone(),
            400,
            "missing_param",
        )
        .await;
    }

    // broken envelope
    let (q, _) = signed(&app, &xml);
    refused(&t, "bad", &q, "<xml><Encrypt>abc", 400, "bad_envelope").await;

    // DOCTYPE/entity in the (authentic) decrypted XML: refused, never expanded, not stored
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>{}",
        xml.replace("费用报销", "&b;")
    );
    let (q, body) = signed(&app, &xxe);
    refused(&t, "bad", &q, body, 400, "doctype").await;
    // and in the envelope
    let (q, body) = signed(&app, &xml);
    let body = format!("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{body}");
    refused(&t, "bad", &q, body, 400, "doctype").await;

    // GET without echostr
    let (status, _) = get(&format!(
        "{}?msg_signature=x&timestamp=1&nonce=1",
        t.url("/cb/bad")
    ))
    .await;
    assert_eq!(status, 400);

    // after all of that, a good request still works
    let (q, body) = signed(&app, &xml);
    assert_eq!(post(&t.url("/cb/bad"), &q, body).await.0, 200);
    assert_eq!(t.events("").await.len(), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentic_but_unparseable_xml_is_quarantined_and_answered_200() {
    let app = TestApp::new("quarantine");
    let t = TestBridge::start(&[TestApp::new("quarantine")]).await;
    for broken in [
        "<xml><MsgType>event</MsgType><Event>sys_approval_change</Event><ApprovalInfo><SpStatus>2</SpStatus></ApprovalInfo></xml>",
        "<xml><ToUserName>ww</ToUserName><Unclosed></xml>",
        "this is not xml at all",
    ] {
        let (q, body) = signed(&app, broken);
        let (status, text) = post(&t.url("/cb/quarantine"), &q, body).await;
        assert_eq!((status, text.as_str()), (200, ""), "{broken}");
    }
    let q = t.events("&quarantined=true").await;
    assert_eq!(q.len(), 3, "{q:?}");
    assert!(
        q.iter()
            .all(|e| e["state"] == "quarantined" && e["kind"] == "unparsed")
    );
    assert!(q.iter().all(|e| {
        e["quarantine_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    }));
    // the payload is kept for the operator
    let with_payload = t.events("&quarantined=true&payload=true").await;
    assert_eq!(with_payload[0]["payload"], "this is not xml at all");
    assert_eq!(
        counter(
            names::CALLBACKS,
            &[("app", "quarantine"), ("outcome", "quarantined")]
        ),
        3
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let t = TestBridge::start(&[TestApp::new("health")]).await;
    assert_eq!(get(&t.url("/healthz")).await, (200, "ok".into()));
    let (status, body) = get(&format!("http://{}/readyz", t.admin)).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["store"], "ok");
    assert_eq!(v["journal"]["entries"], 0);
    let (status, metrics) = get(&format!("http://{}/metrics", t.admin)).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("wecom_bridge"), "{metrics}");
    t.stop().await;
}
