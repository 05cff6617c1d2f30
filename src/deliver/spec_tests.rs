use super::*;
use crate::deliver::auth::AuthSpec;
use crate::deliver::encode::Encoding;

fn parse_str(text: &str) -> Result<ConnectorSpec, Vec<String>> {
    parse(Path::new("connectors/t.toml"), text, "t")
        .map_err(|d| d.iter().map(ToString::to_string).collect())
}

#[test]
fn the_shipped_finance_connector_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors/finance.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let spec = parse(&path, &text, "finance").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(spec.name, "finance");
    assert_eq!(spec.kind, ConnectorKind::Http);
    assert_eq!(spec.url, SecretRef::Env("FINANCE_VOUCHER_URL".into()));
    assert_eq!(spec.idempotency.header.as_deref(), Some("Idempotency-Key"));
    assert_eq!(spec.idempotency.field.as_deref(), Some("/document_no"));
    assert_eq!(spec.concurrency, 8);
    assert_eq!(spec.timeouts.total, Duration::from_secs(10));
    assert!(matches!(
        spec.auth,
        AuthSpec::Oauth2ClientCredentials { .. }
    ));
    assert!(
        spec.capture
            .iter()
            .any(|(n, l)| n == "voucher_no" && *l == Locator::Pointer("/data/voucher_no".into()))
    );
    assert_eq!(spec.retry.max_attempts, 8);
    assert!(check_retry_tiers(&[spec], &[5, 30, 120, 600, 3600]).is_empty());
}

#[test]
fn a_minimal_connector_gets_safe_defaults() {
    let spec = parse_str("kind = \"http\"\nurl = \"https://erp.example/api\"\n").unwrap();
    assert_eq!(spec.name, "t");
    assert_eq!(spec.method, Method::Post);
    assert_eq!(spec.body, BodySpec::json());
    assert_eq!(spec.auth, AuthSpec::None);
    assert_eq!(spec.concurrency, DEFAULT_CONCURRENCY);
    assert_eq!(
        spec.answers.success,
        Predicate::Status(vec![StatusRange {
            low: 200,
            high: 299
        }])
    );
    assert!(!spec.dry_run);
    assert_eq!(spec.retry.delay_after(1), Some(Duration::from_secs(5)));
    assert_eq!(spec.retry.delay_after(5), Some(Duration::from_secs(3600)));
    assert_eq!(spec.retry.delay_after(6), None);
}

#[test]
fn a_u8_eai_xml_connector_parses() {
    let spec = parse_str(
        r#"kind = "http"
url = "env:U8_EAI_URL"
message = ["//item/@dsc"]
[body]
encoding = "xml"
root = "ufinterface"
attributes = { roottag = "voucher", billtype = "gl", proc = "add" }
[success]
xpath = "//item/@succeed"
eq = "0"
[duplicate]
xpath = "//item/@succeed"
eq = "101"
[capture]
voucher_id = "//item/@u8voucher_id"
"#,
    )
    .unwrap();
    assert_eq!(spec.body.encoding, Encoding::Xml);
    assert_eq!(spec.body.attributes[0], ("billtype".into(), "gl".into()));
    assert!(
        spec.capture
            .iter()
            .any(|(n, l)| n == "voucher_id" && matches!(l, Locator::Xml(_)))
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_position() {
    let text = r#"kind = "http"
url = "ftp://files.example/in"
concurrency = 0
[headers]
Authorization = "Basic dTpw"
[auth]
kind = "bearer"
token = "literal-token"
[success]
pointer = "data/code"
eq = 0
[duplicate]
status = 999
[capture]
voucher_no = "data.voucher_no"
[retry]
schedule_secs = []
"#;
    let errs = parse_str(text).unwrap_err();
    let all = errs.join("\n");
    for want in [
        "t.toml:2:7: url `ftp://files.example/in` must be http or https",
        "t.toml:3:15: concurrency must be between 1 and 1024",
        "t.toml:5:17: do not write `Authorization` as a static header",
        "t.toml:6:1: auth.token is written in the file",
        "must start with `/` (RFC 6901)",
        "status `999` is not an HTTP status",
        "t.toml:15:14: capture path `data.voucher_no` must be a JSON pointer",
        "retry.schedule_secs must list delays above 0 s",
    ] {
        assert!(all.contains(want), "missing `{want}` in:\n{all}");
    }
    assert_eq!(errs.len(), 8, "{all}");
}

#[test]
fn unknown_keys_and_kinds_are_refused_with_a_position() {
    let e =
        parse_str("kind = \"http\"\nurl = \"https://x.example\"\ntimeout_ms = 5\n").unwrap_err();
    assert!(
        e[0].starts_with("connectors/t.toml:3:1: unknown field `timeout_ms`"),
        "{e:?}"
    );
    let e = parse_str("kind = \"soap\"\nurl = \"https://x.example\"\n").unwrap_err();
    assert!(
        e[0].contains("1:8: unknown variant `soap`, expected one of `http`, `kingdee`"),
        "{e:?}"
    );
    let e = parse_str("kind = \"http\"\nurl = \"https://x.example\"\n[auth]\nkind = \"basic\"\nusername = \"u\"\npassword = \"env:P\"\npasword = \"x\"\n").unwrap_err();
    assert!(e[0].contains("unknown field `pasword`"), "{e:?}");
}

#[test]
fn retry_delays_must_be_broker_tiers() {
    let spec = parse_str(
        "kind = \"http\"\nurl = \"https://x.example\"\n\n[retry]\nschedule_secs = [5, 45]\n",
    )
    .unwrap();
    let d = check_retry_tiers(&[spec], &[5, 30, 120]);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].to_string(),
        "connectors/t.toml:4:1: retry delay 45 s is not a broker retry tier (broker.retry_tiers_secs = [5, 30, 120]); use one of those or add the tier"
    );
}
