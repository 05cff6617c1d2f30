use std::path::Path;

use crate::deliver::spec::{ConnectorKind, ConnectorSpec, parse};
use crate::deliver::{BuildError, Connector};

use super::VendorSpec;

fn parse_str(text: &str) -> Result<ConnectorSpec, Vec<String>> {
    parse(Path::new("connectors/k.toml"), text, "k")
        .map_err(|d| d.iter().map(ToString::to_string).collect())
}

const APP_ID: &str = "224248_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY";

fn kingdee(extra: &str) -> String {
    format!(
        "kind = \"kingdee\"\nurl = \"http://erp.example/k3cloud\"\n[kingdee]\nform_id = \"GL_VOUCHER\"\nacct_id = \"62f1e4b0a1b2c3\"\nuser = \"integration\"\n{extra}"
    )
}

#[test]
fn a_kingdee_connector_parses_with_its_secret_by_reference() {
    let spec = parse_str(&kingdee(&format!(
        "app_id = \"{APP_ID}\"\napp_secret = \"env:KD_SECRET\"\n"
    )))
    .unwrap();
    assert_eq!(spec.kind, ConnectorKind::Kingdee);
    let Some(VendorSpec::Kingdee(k)) = &spec.vendor else {
        panic!("{:?}", spec.vendor)
    };
    assert_eq!(k.form_id, "GL_VOUCHER");
    assert_eq!(k.lcid, 2052);
}

#[test]
fn vendor_tables_are_checked_with_positions() {
    let errs = parse_str(&kingdee(&format!(
        "app_id = \"{APP_ID}\"\napp_secret = \"0123456789abcdef\"\n"
    )))
    .unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("connectors/k.toml:8:14: kingdee.app_secret is written in the file"),
        "{errs:?}"
    );

    let errs = parse_str(&kingdee(
        "app_id = \"224248_short\"\napp_secret = \"env:S\"\n",
    ))
    .unwrap_err();
    assert!(errs[0].contains("connectors/k.toml:7:10"), "{errs:?}");
    assert!(
        errs[0].contains("is not <clientId>_<32 characters>"),
        "{errs:?}"
    );

    let errs = parse_str(&kingdee("")).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("kingdee.app_id is required")),
        "{errs:?}"
    );

    let errs = parse_str("kind = \"kingdee\"\nurl = \"http://e/k3cloud\"\n").unwrap_err();
    assert!(errs[0].contains("needs a [kingdee] table"), "{errs:?}");

    let errs = parse_str(&format!(
        "{}[auth]\nkind = \"bearer\"\ntoken = \"env:T\"\n",
        kingdee(&format!("app_id = \"{APP_ID}\"\napp_secret = \"env:S\"\n"))
    ))
    .unwrap_err();
    assert!(
        errs[0].contains("[auth] does not apply to kind = \"kingdee\""),
        "{errs:?}"
    );

    let errs = parse_str(
        "kind = \"http\"\nurl = \"http://e/\"\n[u8_eai]\nroottag = \"voucher\"\nbilltype = \"gl\"\nsender = \"999\"\n",
    )
    .unwrap_err();
    assert!(
        errs[0].contains("[u8_eai] does not apply to kind = \"http\""),
        "{errs:?}"
    );

    let errs = parse_str("kind = \"beisen\"\nurl = \"http://e/\"\n").unwrap_err();
    assert!(errs[0].contains("needs a [beisen] table"), "{errs:?}");
}

#[test]
fn yonbip_and_u8_tables_parse_and_refuse_bad_values() {
    let spec = parse_str(
        "kind = \"yonbip\"\nurl = \"https://api.diwork.com\"\n[yonbip]\napp_key = \"41832a3d\"\napp_secret = \"file:/run/secrets/yonbip\"\n",
    )
    .unwrap();
    let Some(VendorSpec::Yonbip(y)) = &spec.vendor else {
        panic!()
    };
    assert_eq!(y.path, crate::deliver::vendor::yonbip::ADD_VOUCHER_PATH);
    assert_eq!(y.business_key, "/businessId");

    let errs = parse_str(
        "kind = \"yonbip\"\nurl = \"https://api.diwork.com\"\n[yonbip]\napp_key = \"k\"\napp_secret = \"plain\"\npath = \"nope\"\n",
    )
    .unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");

    let spec = parse_str(
        "kind = \"u8_eai\"\nurl = \"http://u8.lan/eai\"\n[u8_eai]\nroottag = \"po\"\nbilltype = \"purchaseorder\"\nsender = \"999\"\n",
    )
    .unwrap();
    assert!(matches!(spec.vendor, Some(VendorSpec::U8Eai(_))));
    let errs = parse_str(
        "kind = \"u8_eai\"\nurl = \"http://u8.lan/eai\"\n[u8_eai]\nroottag = \"po\"\nbilltype = \"a b\"\nsender = \"999\"\n",
    )
    .unwrap_err();
    assert!(errs[0].contains("u8_eai.billtype"), "{errs:?}");
}

#[test]
fn a_missing_or_malformed_secret_fails_the_build_not_the_first_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank");
    std::fs::write(&blank, "\n").unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "0123456789abcdef0123456789abcdef\n").unwrap();
    let bad_id = dir.path().join("bad_id");
    std::fs::write(&bad_id, "224248_tooshort\n").unwrap();
    let build = |app_id: &str, secret: &std::path::Path| {
        let text = kingdee(&format!(
            "app_id = \"{app_id}\"\napp_secret = \"file:{}\"\n",
            secret.display()
        ));
        Connector::build(parse_str(&text).unwrap())
    };
    let missing = build(APP_ID, &dir.path().join("absent")).unwrap_err();
    assert!(
        matches!(&missing, BuildError::Vendor { detail, .. } if detail.starts_with("kingdee.app_secret: secret could not be read")),
        "{missing}"
    );
    let empty = build(APP_ID, &blank).unwrap_err();
    assert!(
        empty.to_string().contains("kingdee.app_secret is empty"),
        "{empty}"
    );
    let wrong_id = build(&format!("file:{}", bad_id.display()), &good).unwrap_err();
    assert!(
        wrong_id
            .to_string()
            .contains("kingdee.app_id: Kingdee AppID"),
        "{wrong_id}"
    );
    let ok = build(APP_ID, &good).unwrap();
    assert!(!format!("{ok:?}").contains("0123456789abcdef0123456789abcdef"));
}
