//! A full disk heals: with the store on a small tmpfs, filling it turns callbacks into 503
//! and `/readyz` into "not ready" with the reason; freeing space brings 200 back without a
//! restart, and every acknowledged callback is in the journal.
//!
//! Mounting needs root (the CI runs as root). Where it is not allowed the test fails, unless
//! `WECOM_BRIDGE_TEST_NO_TMPFS=1` is set: then it prints a loud skip line.

use std::io::Write;
use std::path::PathBuf;

use wecom_bridge::store::{JournalFilter, Store};
use wecom_bridge::telemetry::names;

use crate::support::*;

/// A tmpfs mounted on a temporary folder; unmounted on drop.
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        if !ok {
            let why = match &out {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            if std::env::var("WECOM_BRIDGE_TEST_NO_TMPFS").as_deref() == Ok("1") {
                eprintln!(
                    "\n!!!!! SKIPPED store_faults: cannot mount a tmpfs ({}); WECOM_BRIDGE_TEST_NO_TMPFS=1 is set, so the full-disk test did NOT run !!!!!\n",
                    why.trim()
                );
                return None;
            }
            panic!(
                "cannot mount a tmpfs for the full-disk test ({}): run the tests as root, or set WECOM_BRIDGE_TEST_NO_TMPFS=1 to skip it knowingly",
                why.trim()
            );
        }
        Some(Tmpfs { mnt, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .status();
    }
}

/// Writes `path` until the file system is full, then gives `leave` bytes back, so that a few
/// callbacks still fit before the store runs out of space.
fn fill(path: &std::path::Path, leave: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
}

fn approval(n: usize) -> (String, String) {
    let sp_no = format!("2025113{n:05}");
    let xml = include_str!("../../samples/approval-approved.xml")
        .replace("wx5823bf96d3bd56c7", CORP_ID)
        .replace("202506050012", &sp_no)
        .replace("同意，按差旅标准报销", &"x".repeat(8 * 1024));
    (format!("{sp_no}:2"), xml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_503_and_not_ready_then_heals_without_a_restart() {
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let store_path = fs.mnt.join("bridge.redb");
    let t = TestBridge::start_edited(&[TestApp::new("full_disk")], |dir, toml| {
        let toml = toml.replace(
            &format!("path = \"{}\"", dir.join("bridge.redb").display()),
            &format!("path = \"{}\"", store_path.display()),
        );
        assert!(toml.contains(&store_path.display().to_string()));
        toml
    })
    .await;
    let app = TestApp::new("full_disk");
    let readyz = format!("http://{}/readyz", t.admin);
    assert_eq!(get(&readyz).await.0, 200);

    let filler = fs.mnt.join("filler");
    fill(&filler, 256 * 1024);
    let mut acked = Vec::new();
    let mut n = 0;
    let refused = loop {
        let (key, xml) = approval(n);
        n += 1;
        let (q, body) = signed(&app, &xml);
        match post(&t.url(&app.path), &q, body).await.0 {
            200 => acked.push(key),
            503 => break key,
            other => panic!("callback {n} answered {other}: only 200 or 503 are right"),
        }
        assert!(n < 5_000, "the store never ran out of space");
    };

    // Faulted: callbacks get 503 (never 200), readiness says why, a metric counts it.
    let (status, body) = get(&readyz).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not ready"), "{body}");
    // The reason names the disk error (at once, or after the healer's first attempt when a
    // concurrent write only saw redb's "Previous I/O error").
    eventually(10, "readiness names the full disk", || async {
        let (status, body) = get(&readyz).await;
        status == 503 && body.contains("No space left on device")
    })
    .await;
    let (q, body) = signed(&app, &approval(n).1);
    assert_eq!(post(&t.url(&app.path), &q, body).await.0, 503);
    let metrics = get(&format!("http://{}/metrics", t.admin)).await.1;
    assert!(metrics.contains(names::STORE_FAULTS), "{metrics}");

    // Space comes back: the store reopens by itself.
    std::fs::remove_file(&filler).unwrap();
    let freed = std::time::Instant::now();
    eventually(30, "ready again after space was freed", || async {
        get(&readyz).await.0 == 200
    })
    .await;
    eprintln!(
        "full disk: ready again {} ms after space was freed",
        freed.elapsed().as_millis()
    );
    let (key, xml) = approval(n + 1);
    t.post_callback(&app, &xml).await;
    acked.push(key);
    // The refused one is taken when WeCom retries it.
    t.post_callback(&app, &approval(n - 1).1).await;
    acked.push(refused);

    let dir = t.stop().await;
    let store = Store::open(&store_path, test_sealer()).unwrap();
    let journaled: std::collections::HashSet<String> = store
        .journal_entries(&JournalFilter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.record.business_key)
        .collect();
    let missing: Vec<_> = acked.iter().filter(|k| !journaled.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not journaled: {missing:?}"
    );
    eprintln!(
        "full disk: {} callback(s) acknowledged before the first 503, all journaled",
        acked.len() - 2
    );
    drop(store);
    drop(dir);
}
