//! SIGKILL of the bridge process in the middle of deliveries, then a restart on the same
//! store: every expense voucher reaches the finance system exactly once, none is lost.
//!
//! The real binary runs `serve` (on each broker, the shipped expense mapping and finance
//! connector); the WeCom API and the finance system (with its OAuth token endpoint) are
//! stand-ins in this test process, so they outlive the bridge and count what arrived. A share
//! of the target's answers is slow (committed first, answered later), so the kill lands while
//! requests are in flight: their jobs are in flight in the ledger, are re-sent after the
//! restart with the same keys, and the target's "already exists" settles them.

use std::time::Duration;

use wecom_bridge::standins::finance::Outcome;

use crate::expense::*;
use crate::support::*;

const FORMS: usize = 300;
const CONNECTOR: &str = "kill_fin";
const APP: &str = "killed";
/// The shipped finance connector's concurrency cap: at most this many jobs are in flight
/// in its deliver stage.
const CONCURRENCY: usize = 8;

async fn serve(config: &std::path::Path, dir: &std::path::Path) -> ServeProcess {
    let (config, dir) = (config.to_path_buf(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || ServeProcess::start(&config, &dir))
        .await
        .unwrap()
}

async fn killed_during_delivery(first_sp: u64, broker: &str) {
    let stands = Stands::start().await;
    let (fake, finance) = (&stands.fake, &stands.finance);
    finance.set_seed(11);
    finance.set_slow(30, Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        stands.bridge_toml(dir.path(), APP, CONNECTOR, &[], broker),
    )
    .unwrap();
    let forms = approved_forms(fake, first_sp, FORMS);
    let server = serve(&config, dir.path()).await;
    let app = TestApp::new(APP);
    let xmls = forms
        .iter()
        .map(|sp| approved_callback(CORP_ID, sp))
        .collect();
    post_all(&format!("http://{}/cb/{APP}", server.public), xmls, |x| {
        signed(&app, x)
    })
    .await;
    eventually(60, "a third booked, with requests in flight", || async {
        finance.voucher_count() >= FORMS / 3 && finance.in_flight() >= 2
    })
    .await;
    let in_flight_at_kill = finance.in_flight();
    server.kill9();
    let booked_at_kill = finance.voucher_count();
    assert!(booked_at_kill < FORMS, "killed before the end of the run");

    let server = serve(&config, dir.path()).await;
    eventually(120, "every voucher booked after the restart", || async {
        finance.voucher_count() >= FORMS
    })
    .await;
    ledger_settled(&server.admin, CONNECTOR, FORMS).await;
    assert_eq!(not_exactly_once(finance, &forms), vec![]);
    assert_eq!(finance.duplicate_vouchers(), 0);
    // The jobs in flight at the kill (at most the stage's concurrency; a route event that was
    // not acked may publish one of them again) were re-sent and recognised as duplicates;
    // nothing else was sent twice: a job the ledger has as delivered is not sent again, even
    // when the broker delivers it again after the crash.
    let duplicates = finance.count(Outcome::Duplicate);
    assert!(
        (1..=2 * CONCURRENCY).contains(&duplicates),
        "{duplicates} re-sent documents ({in_flight_at_kill} requests were in flight at the kill)"
    );
    assert_eq!(finance.requests().len(), FORMS + duplicates);
    eprintln!(
        "kill test: killed with {booked_at_kill}/{FORMS} booked and {in_flight_at_kill} requests \
         in flight; {duplicates} re-sent after the restart and answered \"already exists\""
    );
    assert_eq!(server.terminate().code(), Some(0));
    stands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sigkilled_during_delivery_every_voucher_arrives_exactly_once() {
    killed_during_delivery(202_612_040_000, SHORT_TIERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_sigkilled_during_delivery_every_voucher_arrives_exactly_once() {
    // RabbitMQ must stay up: the tests that stop it wait for this one
    let _serial = crate::SERIAL.lock().await;
    let prefix = unique("wbkilldel");
    let _cleanup = crate::DeleteQueuesOnDrop(prefix.clone());
    killed_during_delivery(202_612_060_000, &rabbit_section(&prefix)).await;
}
