//! Browser tests of the operator console in a real headless Chromium, driven over
//! chromedriver with fantoccini. They FAIL (never skip) when `chromium` or
//! `chromedriver` is missing: install Debian's `chromium` and `chromium-driver` packages.
//!
//! Screenshots of the pages are saved under `target/screenshots/` for reviewers.
//!
//! The bridge runs in this process (listeners on port 0, a real store in a temporary
//! folder) with RabbitMQ as its broker, under a unique prefix that the test deletes.

#[path = "../it/support.rs"]
mod support;
mod wecom_login;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use wecom_bridge::broker::Delivery;

use support::*;

const VIEWER_TOKEN: &str = "viewer-token-b7e2d9a4";
const OPERATOR_TOKEN: &str = "operator-token-3f8c61e0";

/// Finds a program on the PATH (or at one of the usual Debian paths), or panics saying how
/// to install it.
fn program(names: &[&str], package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ]) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "browser tests need {} on the PATH: install the Debian package `{package}` (apt-get install -y chromium chromium-driver)",
        names.join(" or ")
    );
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let exe = program(&["chromedriver"], "chromium-driver");
    let port = free_port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    // wait until it listens (readiness, not the passing of time)
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let chromium = program(&["chromium", "chromium-browser"], "chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                "--disable-dev-shm-usage", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::rustls()
        .expect("rustls connector")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("start a Chromium session through chromedriver")
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("save screenshot");
}

/// Opens the console page `path` (with its query) of the bridge at `admin`.
async fn goto(c: &Client, admin: SocketAddr, path: &str) {
    c.goto(&format!("http://{admin}{path}")).await.unwrap();
}

/// Clicks the element `css`.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn sign_in(c: &Client, admin: SocketAddr, token: &str) {
    goto(c, admin, "/console/sign-in").await;
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(c, "#sign-in").await;
    wait_for(c, "header .who").await;
    let url = c.current_url().await.unwrap();
    assert_eq!(
        url.path(),
        "/console/overview",
        "signed in and sent to the overview"
    );
}

/// Waits until the page (after a click that navigates) shows `css`.
async fn wait_for(c: &Client, css: &str) {
    let found = c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await;
    if let Err(e) = found {
        let url = c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let page = c.source().await.unwrap_or_default();
        panic!("waiting for {css} on {url}: {e}\n{page}");
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_replays_a_dead_letter_and_a_viewer_cannot() {
    let prefix = format!("wbbrowse-{:08x}", rand::random::<u32>());
    let extra = format!(
        "[[admin.users]]\nname = \"vera\"\ntoken = \"{VIEWER_TOKEN}\"\nrole = \"viewer\"\n\
         [[admin.users]]\nname = \"otto\"\ntoken = \"{OPERATOR_TOKEN}\"\nrole = \"operator\"\n{}",
        rabbit_section(&prefix)
    );
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
    shot(&c, "overview").await;
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
    click(&c, "#confirm-replay").await;
    wait_for(&c, "#replay-result").await;
    assert!(
        text_of(&c, "#replay-result")
            .await
            .contains("Replayed 1 message(s)")
    );
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
    click(&c, "#sign-out").await;
    wait_for(&c, "#sign-in").await;

    // the viewer finds no replay button; the API refuses a forged attempt
    sign_in(&c, admin, VIEWER_TOKEN).await;
    goto(&c, admin, &dead_letters).await;
    assert!(text_of(&c, "#dead-letters").await.contains("evt_browser1"));
    assert!(
        c.find_all(Locator::Css("button.replay"))
            .await
            .unwrap()
            .is_empty(),
        "no replay button for a viewer"
    );
    assert!(
        c.find_all(Locator::Css("#replay-all"))
            .await
            .unwrap()
            .is_empty()
    );
    shot(&c, "dead-letters-viewer").await;
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const csrf = document.querySelector('input[name=csrf]').value;
             const body = new URLSearchParams({csrf, queue: arguments[0], ids: 'evt_browser1', confirm: 'yes'});
             fetch('/console/dead-letters/replay', {method: 'POST', body}).then(r => done(r.status), e => done(String(e)));",
            vec![json!(queue)],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403), "the console refuses a viewer's replay");
    let api = reqwest::Client::new()
        .post(format!(
            "http://{admin}/admin/replay?queue={queue}&all=true"
        ))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403, "the admin API refuses a viewer's replay");

    // the audit log holds the replay and the refused attempts
    goto(&c, admin, "/console/audit").await;
    let audit = text_of(&c, "#audit").await;
    assert!(audit.contains("ok: 1 replayed"), "{audit}");
    assert!(
        audit.contains("refused: missing or wrong CSRF token"),
        "{audit}"
    );
    assert!(audit.contains("refused: role viewer"), "{audit}");
    shot(&c, "audit").await;

    c.close().await.unwrap();
    drop(driver);
    drop(consumer);
    remove_queues(own, queue).await;
    t.stop().await;
}
