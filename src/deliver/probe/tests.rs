//! Unit tests of the probe: answers read by type, report lines, clock skew.

use super::*;

fn answer(status: u16, body: &str) -> ProbeAnswer {
    ProbeAnswer {
        status,
        body: body.as_bytes().to_vec(),
        skew_secs: None,
    }
}

#[test]
fn oauth2_answers_are_read_by_type() {
    assert!(oauth2_answer(&answer(200, r#"{"access_token":"t","expires_in":60}"#)).is_ok());
    let refused = oauth2_answer(&answer(
        401,
        r#"{"error":"invalid_client","error_description":"no"}"#,
    ))
    .unwrap_err();
    assert!(
        matches!(&refused, Problem::Credentials { fix, .. } if fix.contains("auth.client_secret")),
        "{refused:?}"
    );
    assert!(matches!(
        oauth2_answer(&answer(403, "<html>denied</html>")),
        Err(Problem::IpNotAllowed { .. })
    ));
    assert!(matches!(
        oauth2_answer(&answer(503, "")),
        Err(Problem::Unavailable { status: 503, .. })
    ));
    assert!(matches!(
        oauth2_answer(&answer(200, "<html>login</html>")),
        Err(Problem::Unexpected { status: 200, .. })
    ));
}

#[test]
fn a_refusal_from_a_target_whose_clock_is_far_from_ours_is_clock_skew() {
    let mut a = answer(401, r#"{"error":"invalid_client"}"#);
    a.skew_secs = Some(-3600);
    let r = clocked(&a, oauth2_answer(&a));
    assert!(
        matches!(&r, Err(Problem::ClockSkew { detail }) if detail.contains("-3600 s")),
        "{r:?}"
    );
    a.skew_secs = Some(2);
    assert!(matches!(
        clocked(&a, oauth2_answer(&a)),
        Err(Problem::Credentials { .. })
    ));
    // a success is a success whatever the clocks say
    let mut ok = answer(200, r#"{"access_token":"t"}"#);
    ok.skew_secs = Some(9999);
    assert!(clocked(&ok, oauth2_answer(&ok)).is_ok());
}

#[test]
fn lines_name_the_connector_the_problem_and_the_fix() {
    let r = ProbeReport {
        connector: "crm".into(),
        probed: "OAuth2 token request to http://x/oauth/token".into(),
        result: ProbeResult::Failed {
            problem: Problem::ConnectionRefused {
                addr: "127.0.0.1:9".into(),
            },
        },
    };
    assert!(!r.passed());
    let line = r.line();
    assert!(line.starts_with("crm "), "{line}");
    assert!(line.contains("connection refused at 127.0.0.1:9"), "{line}");
    assert!(line.contains("fix: check the host and port"), "{line}");
}

#[test]
fn shown_urls_carry_no_credentials_or_query() {
    let u = url::Url::parse("https://u:p@h.example/t?access_token=s").unwrap();
    assert_eq!(shown(&u), "https://h.example/t");
}
