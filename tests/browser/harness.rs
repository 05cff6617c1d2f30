//! The browser harness: chromedriver and a headless Chromium, and small page helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::*;

pub const VIEWER_TOKEN: &str = "viewer-token-b7e2d9a4";
pub const OPERATOR_TOKEN: &str = "operator-token-3f8c61e0";

/// Finds a program on the PATH (or at one of the usual Debian paths), or panics saying how
/// to install it.
pub fn program(names: &[&str], package: &str) -> PathBuf {
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
pub struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn start_driver() -> Driver {
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

pub async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
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

pub fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

/// Saves a screenshot of the page as `target/screenshots/<name>.png`, after checking that the
/// page keeps to the strict CSP: no inline script, no `<style>` element, no `style`
/// attribute (they would be blocked, so a page relying on them would look broken).
pub async fn shot(c: &Client, name: &str) {
    let inline = c
        .execute(
            "return [document.querySelectorAll('[style]').length,
                     Array.from(document.scripts).filter(s => !s.src).length,
                     document.querySelectorAll('style').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        inline,
        json!([0, 0, 0]),
        "{name}: inline style or script on the page"
    );
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("save screenshot");
}

/// Opens the console page `path` (with its query) of the bridge at `admin`.
pub async fn goto(c: &Client, admin: SocketAddr, path: &str) {
    c.goto(&format!("http://{admin}{path}")).await.unwrap();
}

/// Clicks the element `css`.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Types `text` into the input `css`.
pub async fn type_into(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

pub async fn sign_in(c: &Client, admin: SocketAddr, token: &str) {
    goto(c, admin, "/console/sign-in").await;
    type_into(c, "#token", token).await;
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
pub async fn wait_for(c: &Client, css: &str) {
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

pub async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The `[[admin.users]]` of the browser tests: `vera` with [`VIEWER_TOKEN`], `otto` with
/// [`OPERATOR_TOKEN`].
pub fn users_section() -> String {
    admin_users(&[
        ("vera", VIEWER_TOKEN, "viewer"),
        ("otto", OPERATOR_TOKEN, "operator"),
    ])
}

/// Signs out and waits for the sign-in page.
pub async fn sign_out(c: &Client) {
    click(c, "#sign-out").await;
    wait_for(c, "#sign-in").await;
}

/// Asserts the page has no element `css` (`why` says what that means).
pub async fn assert_absent(c: &Client, css: &str, why: &str) {
    let found = c.find_all(Locator::Css(css)).await.unwrap();
    assert!(found.is_empty(), "{why}: {} × {css}", found.len());
}

/// Confirms the replay the page asks about and checks that its result says `done`.
pub async fn confirm_replay(c: &Client, done: &str) {
    click(c, "#confirm-replay").await;
    wait_for(c, "#replay-result").await;
    let result = text_of(c, "#replay-result").await;
    assert!(result.contains(done), "the result is on the page: {result}");
}

/// The page's CSRF token (of its first form).
pub async fn csrf_of(c: &Client) -> String {
    let csrf = c
        .execute(
            "return document.querySelector('input[name=csrf]').value;",
            vec![],
        )
        .await
        .unwrap();
    csrf.as_str().unwrap().to_string()
}

/// Posts `fields` as a form from the page (with the page's cookies); returns the status.
pub async fn post_from_page(
    c: &Client,
    path: &str,
    fields: serde_json::Value,
) -> serde_json::Value {
    c.execute_async(
        "const done = arguments[arguments.length - 1];
         fetch(arguments[0], {method: 'POST', body: new URLSearchParams(arguments[1])})
           .then(r => done(r.status), e => done(String(e)));",
        vec![json!(path), fields],
    )
    .await
    .unwrap()
}

/// Asserts that the admin API at `admin` refuses the viewer's "replay all of `queue`" (403).
pub async fn api_refuses_viewer_replay(admin: SocketAddr, queue: &str) {
    let api = reqwest::Client::new()
        .post(format!(
            "http://{admin}/admin/replay?queue={queue}&all=true"
        ))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403, "the admin API refuses a viewer's replay");
}

/// Opens the audit log and asserts that it holds one replay and the refused attempts (a
/// POST without the CSRF token, one by a viewer); answers the log's text.
pub async fn audit_holds_replay_and_refusals(c: &Client, admin: SocketAddr) -> String {
    goto(c, admin, "/console/audit").await;
    let audit = text_of(c, "#audit").await;
    assert!(audit.contains("ok: 1 replayed"), "{audit}");
    assert!(
        audit.contains("refused: missing or wrong CSRF token"),
        "{audit}"
    );
    assert!(audit.contains("refused: role viewer"), "{audit}");
    audit
}
