//! A mapping's `[match] condition` decides per form, in the route stage, whether a job is made:
//! a false condition sends nothing, an undecidable one parks the event with the mapping's name.

use std::time::Duration;

use crate::route::{broker_of, callback, detail, jobs, one_mapping_catalog, start_bridge};
use crate::support::*;
use wecom_bridge::standins::wecom::FakeWeCom;

const MATCH: &str =
    "event = \"approval\"\ntemplate_names = [\"费用报销\"]\nactions = [\"approved\"]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_forms_whose_condition_holds_become_jobs() {
    let fake = FakeWeCom::start().await;
    let (_catalog, section) = one_mapping_catalog(
        "audit",
        "big-claims",
        &format!("{MATCH}\ncondition = \"input.sp_no.endsWith('12')\""),
    );
    let (t, app) = start_bridge("cond_true", &fake, &section).await;
    let broker = broker_of(&t).await;
    for sp in ["202506050012", "202506050013", "202506050112"] {
        fake.add_approval(detail(sp, 2));
        t.post_callback(&app, &callback(sp, 2, 2)).await;
    }
    let got = jobs(&broker, "audit", 3, Duration::from_secs(10)).await;
    let mut keys: Vec<&str> = got.iter().map(|j| j.business_key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["202506050012", "202506050112"],
        "the form ending 13 is not sent"
    );
    assert_eq!(
        fake.calls("getapprovaldetail"),
        3,
        "every form was fetched to decide"
    );
    t.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecidable_condition_parks_the_event_naming_the_mapping() {
    let fake = FakeWeCom::start().await;
    let (_catalog, section) = one_mapping_catalog(
        "audit",
        "odd-claims",
        &format!("{MATCH}\ncondition = \"input.sp_no\""),
    );
    let (t, app) = start_bridge("cond_err", &fake, &section).await;
    let broker = broker_of(&t).await;
    fake.add_approval(detail("202506050014", 2));
    t.post_callback(&app, &callback("202506050014", 2, 2)).await;
    eventually(30, "the event parked as a dead letter", || async {
        let (status, text) = get(&format!(
            "http://{}/admin/dead-letters?queue=route",
            t.admin
        ))
        .await;
        status == 200
            && text.contains("mapping `odd-claims`: its [match] condition cannot be decided")
            && text.contains("condition_not_bool")
    })
    .await;
    assert!(
        jobs(&broker, "audit", 1, Duration::from_millis(500))
            .await
            .is_empty(),
        "nothing is sent while the condition is undecided"
    );
    t.stop().await;
    fake.stop().await;
}
