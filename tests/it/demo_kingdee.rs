//! `wecom-bridge demo --target kingdee`, in-process on a temporary data folder and loopback
//! port 0: the sample claims must really arrive at the Kingdee stand-in as GL_VOUCHER Saves
//! in Kingdee's shape, the unknown category must really be parked, and the printout must
//! show the voucher as Kingdee received it.

use std::path::Path;

use wecom_bridge::cli::demo;
use wecom_bridge::config::Config;
use wecom_bridge::deliver::vendor::kingdee::Op;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_target_kingdee_saves_the_sample_vouchers_in_kingdee_shape() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bridge.toml");
    let mut config = Config::load(&shipped).unwrap();
    config.server.listen = "127.0.0.1:0".into();
    config.admin.listen = "127.0.0.1:0".into();
    let d = demo::kingdee::start(config, dir.path()).await.unwrap();

    let save = Op::Save.path("/k3cloud");
    let saves: Vec<serde_json::Value> = d
        .kingdee
        .recorded()
        .iter()
        .filter(|r| r.path == save)
        .filter_map(|r| r.json())
        .collect();
    // three claims with known categories; the fourth (礼品费) is refused by the mapping
    assert_eq!(saves.len(), 3, "{}", d.summary);
    for (sp, _) in &d.sent[..3] {
        let no = format!("EXP-{sp}");
        let (status, model) = d
            .kingdee
            .with(|s| s.bill("GL_VOUCHER", &no))
            .unwrap_or_else(|| panic!("{no} saved: {}", d.summary));
        assert_eq!(status, 'A');
        assert!(model["FEntity"].as_array().is_some_and(|l| l.len() >= 2));
        assert!(
            d.summary.contains(&format!("GL_VOUCHER {no}")),
            "{}",
            d.summary
        );
    }
    let first = &saves[0];
    assert_eq!(first["formid"], "GL_VOUCHER");
    assert!(first["data"]["Model"]["FEntity"].is_array(), "{first}");
    assert!(
        d.summary.contains("\"formid\": \"GL_VOUCHER\""),
        "{}",
        d.summary
    );
    assert!(d.summary.contains("2241.01"), "{}", d.summary);
    assert!(d.summary.contains(" bill EXP-"), "{}", d.summary);
    assert!(d.summary.contains("unknown_category"), "{}", d.summary);
    d.stop().await;
}
