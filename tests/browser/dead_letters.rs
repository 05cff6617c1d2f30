//! The dead-letter page with RabbitMQ: an operator replays a parked message after a
//! confirmation (a form without the CSRF token is refused); a viewer finds no replay button
//! and is refused by the console and the admin API; the audit log holds all of it.

use std::time::Duration;

use serde_json::json;
use wecom_bridge::broker::Delivery;

use crate::harness::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_replays_a_dead_letter_and_a_viewer_cannot() {
    let prefix = unique("wbbrowse");
    let extra = format!("{}{}", users_section(), rabbit_section(&prefix));
    let app = TestApp::new("browser");
    let t = TestBridge::start_with(std::slice::from_ref(&app), &extra).await;
    // one journaled callback, for the events page
    let xml =
        include_str!("../../samples/approval-approved.xml").replace("wx5823bf96d3bd56c7", CORP_ID);
    let (q, body) = signed(&app, &xml);
    let (status, _) = post(&t.url(&app.path), &q, body).await;
    assert_eq!(status, 200);
    // a dead letter, parked the way a stage parks one
    let queue = "manual";
    let own = own_rabbit(&prefix).await;
    let mut consumer = park(
        &own,
        queue,
        &["evt_browser1"],
        "erp said: cost center 6602 closed",
    )
    .await;

    t.broker_up().await;
    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    let admin = t.admin;
    let dead_letters = format!("/console/dead-letters?queue={queue}");

    // the operator signs in and sees the overview
    sign_in(&c, admin, OPERATOR_TOKEN).await;
    assert!(text_of(&c, "header .who").await.contains("otto"));
    let journaled = text_of(&c, "#card-journal .value").await;
    assert_eq!(
        journaled.trim(),
        "1",
        "the overview counts the journaled callback"
    );
    assert!(
        text_of(&c, "#queues").await.contains("route"),
        "queue depths are shown"
    );
    shot(&c, "overview-rabbitmq").await;
    goto(&c, admin, "/console/events").await;
    assert!(
        text_of(&c, "#events").await.contains("202506050012"),
        "the callback is journaled"
    );
    shot(&c, "events").await;

    // a replay whose form lost its CSRF token is refused
    goto(&c, admin, &dead_letters).await;
    assert!(text_of(&c, "#dead-letters").await.contains("evt_browser1"));
    shot(&c, "dead-letters").await;
    c.execute(
        "document.querySelector('#dead-letters input[name=csrf]').remove()",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#dead-letters button.replay").await;
    wait_for(&c, "p.flash.error").await;
    assert!(
        text_of(&c, "main").await.contains("This form expired"),
        "refused without the CSRF token"
    );
    shot(&c, "csrf-refused").await;

    // with it: a confirmation, then the result on the page
    goto(&c, admin, &dead_letters).await;
    click(&c, "#dead-letters button.replay").await;
    wait_for(&c, "#confirm-replay").await;
    shot(&c, "replay-confirm").await;
    confirm_replay(&c, "Replayed 1 message(s)").await;
    assert!(
        text_of(&c, "#dead-letters")
            .await
            .contains("no parked messages")
    );
    shot(&c, "replay-done").await;
    let replayed = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        replayed.envelope().id,
        "evt_browser1",
        "the message is back in its queue"
    );
    replayed
        .dead_letter("erp said: still closed")
        .await
        .unwrap();
    sign_out(&c).await;

    // the viewer finds no replay button; the API refuses a forged attempt
    sign_in(&c, admin, VIEWER_TOKEN).await;
    goto(&c, admin, &dead_letters).await;
    assert!(text_of(&c, "#dead-letters").await.contains("evt_browser1"));
    assert_absent(&c, "button.replay", "no replay button for a viewer").await;
    assert_absent(&c, "#replay-all", "no replay-all button for a viewer").await;
    shot(&c, "dead-letters-viewer").await;
    let csrf = csrf_of(&c).await;
    let status = post_from_page(
        &c,
        "/console/dead-letters/replay",
        json!({"csrf": csrf, "queue": queue, "ids": "evt_browser1", "confirm": "yes"}),
    )
    .await;
    assert_eq!(status, json!(403), "the console refuses a viewer's replay");
    api_refuses_viewer_replay(admin, queue).await;

    // the audit log holds the replay and the refused attempts
    audit_holds_replay_and_refusals(&c, admin).await;
    shot(&c, "audit").await;

    c.close().await.unwrap();
    drop(driver);
    drop(consumer);
    remove_queues(own, queue).await;
    t.stop().await;
}
