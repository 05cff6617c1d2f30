//! The backbone end to end, on both back ends: a callback accepted by ingress is journaled,
//! relayed to the broker with a confirm (then marked published), and consumed and settled by
//! the route stage; dead letters can be listed and replayed through the admin API and CLI.

use std::time::Duration;

use wecom_bridge::broker::{Broker, Delivery};

use crate::support::*;

fn approval(n: usize) -> String {
    include_str!("../../samples/approval-approved.xml")
        .replace("wx5823bf96d3bd56c7", CORP_ID)
        // a leave request: no shipped mapping routes it, so the route stage records and acks
        .replace("费用报销", "外出") // a template no shipped mapping takes
        .replace("202506050012", &format!("2026{n:08}"))
}

async fn flows_through(t: &TestBridge, app: &TestApp, n: usize) {
    for i in 0..n {
        t.post_callback(app, &approval(i)).await;
    }
    eventually(30, "every event published", || async {
        let events = t.events("").await;
        events.len() == n && events.iter().all(|e| e["state"] == "published")
    })
    .await;
    t.route_settled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_carries_callbacks_to_the_route_stage() {
    let app = TestApp::new("pipe_embedded");
    let t = TestBridge::start(&[TestApp::new("pipe_embedded")]).await;
    flows_through(&t, &app, 25).await;
    let (_, ready) = get(&format!("http://{}/readyz", t.admin)).await;
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["broker"]["kind"], "embedded");
    assert_eq!(ready["broker"]["state"], "ok");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_carries_callbacks_to_the_route_stage() {
    let prefix = unique("wbpipe");
    let app = TestApp::new("pipe_rabbit");
    let t = TestBridge::start_with(&[TestApp::new("pipe_rabbit")], &rabbit_section(&prefix)).await;
    t.broker_up().await;
    flows_through(&t, &app, 25).await;
    // the topology is really in RabbitMQ: a passive look through our own connection
    let own = own_rabbit(&prefix).await;
    let d = own.depths(&["route".to_string()]).await.unwrap();
    assert_eq!((d[0].ready, d[0].dead), (0, 0));
    remove_queues(own, "manual").await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_through_the_admin_api() {
    let prefix = unique("wbdead");
    let t = TestBridge::start_with(&[TestApp::new("dead_admin")], &rabbit_section(&prefix)).await;
    // park two messages in a queue of the same bridge through our own connection
    let own = own_rabbit(&prefix).await;
    let q = "manual";
    let reason = "finance system said: account 6602 closed";
    let mut c = park(&own, q, &["evt_a", "evt_b"], reason).await;
    // the bridge connects to RabbitMQ in the background: list only once it has
    t.broker_up().await;
    let text = t.dead_letters(q).await;
    let listed = json_lines(&text);
    assert_eq!(listed.len(), 2, "{text}");
    assert_eq!(listed[0]["reason"], reason);
    let resp = post_json(&format!(
        "http://{}/admin/replay?queue={q}&ids=evt_b",
        t.admin
    ))
    .await;
    assert_eq!(resp["redriven"], 1);
    let d = tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.envelope().id, "evt_b");
    d.ack().await.unwrap();
    let bad = reqwest::Client::new()
        .post(format!("http://{}/admin/replay?queue={q}", t.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "replay needs exactly one selector");
    drop(c);
    remove_queues(own, q).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_replays_dead_letters_of_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["evt_cli_0", "evt_cli_1", "evt_cli_2"];
    let config = embedded_with_dead_letters(dir.path(), "cli_dead", &ids, 3, |id| {
        if id == "evt_cli_1" {
            "mapping error: no cost center"
        } else {
            "target timeout"
        }
    })
    .await;
    // no bridge is running: the CLI opens the store itself
    let cli = |args: &[&str]| run_config(&config, args, dir.path(), &[]);
    let (ok, out, err) = cli(&["dead-letters"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("evt_cli_1") && out.contains("mapping error: no cost center"),
        "{out}"
    );
    // metadata by default; the payload only with --payload
    assert!(!out.contains("<xml>"), "{out}");
    let (ok, out, err) = cli(&["dead-letters", "--json", "--payload"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("<xml><Id>evt_cli_").count(), 3, "{out}");
    let (_, out, _) = cli(&["dead-letters", "--json"]);
    assert!(!out.contains("<xml>"), "{out}");
    let (ok, out, err) = cli(&["replay", "--reason", "timeout"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("replayed 2 of 2"), "{out}");
    let (ok, out, _) = cli(&["dead-letters", "--json"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (ok, out, err) = cli(&["queues"]);
    assert!(ok, "{out}{err}");
    let route = out
        .lines()
        .find(|l| l.starts_with("route"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = route.split_whitespace().collect();
    assert_eq!(
        cols[1..],
        ["2", "0", "0", "1"],
        "ready/unacked/delayed/dead: {out}"
    );
    let (ok, _, err) = cli(&["replay"]);
    assert!(
        !ok && err.contains("required"),
        "replay without a selector must fail: {err}"
    );
}
