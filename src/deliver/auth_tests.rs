use super::*;

fn signer(
    secret: &str,
    canonical: &str,
    timestamp: TimestampUnit,
    nonce: NonceSource,
    encoding: SignatureEncoding,
) -> HmacSigner {
    let spec = AuthSpec::HmacSha256 {
        secret: SecretRef::Literal(secret.into()),
        key_id: None,
        canonical: canonical.into(),
        timestamp,
        nonce,
        encoding,
        signature_header: "X-Api-Signature".into(),
        signature_prefix: String::new(),
        timestamp_header: "x-api-timestamp".into(),
        nonce_header: "x-api-nonce".into(),
        key_id_header: "X-Key-Id".into(),
    };
    match Auth::build(&spec).unwrap() {
        Auth::Hmac(s) => s,
        other => panic!("{other:?}"),
    }
}

/// The headers `s` adds to a `method` request to `url` carrying `body`.
fn sign(
    s: &HmacSigner,
    method: &str,
    url: &str,
    body: &[u8],
    now_ms: i64,
    random_nonce: &str,
) -> Vec<(String, String)> {
    let url = url::Url::parse(url).unwrap();
    s.headers(&input(method, &url, body, now_ms, random_nonce))
}

/// What is signed: a `method` request to `url` carrying `body`, at `now_ms`.
fn input<'a>(
    method: &'a str,
    url: &'a url::Url,
    body: &'a [u8],
    now_ms: i64,
    random_nonce: &'a str,
) -> SigningInput<'a> {
    SigningInput {
        method,
        url,
        body,
        now_ms,
        random_nonce,
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    &h.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn rfc4231_case_2() {
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// PROTOCOLS.md §1.2: Kingdee's X-Api-Signature, computed by the SDK's own functions.
#[test]
fn kingdee_api_signature_vector() {
    let s = signer(
        "cXJ2cCN1fn8qfHl/eX14aDNiajc0YTNr",
        "POST\n{path_encoded}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n",
        TimestampUnit::UnixSeconds,
        NonceSource::Timestamp,
        SignatureEncoding::HexBase64,
    );
    let url = url::Url::parse("https://erp.example/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save.common.kdsvc").unwrap();
    let input = input("POST", &url, b"{}", 1_700_000_000_123, "unused");
    let (canonical, ts, nonce) = s.canonical_string(&input);
    assert!(canonical.starts_with("POST\n%2Fk3cloud%2FKingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save.common.kdsvc\n\n"));
    assert_eq!((ts.as_str(), nonce.as_str()), ("1700000000", "1700000000"));
    let h = s.headers(&input);
    assert_eq!(
        header(&h, "X-Api-Signature"),
        "YzQ1YjFmZTY4MmNmMTU5ZjlkMTY1ZGE5ZmUwZWUwZTQ1ZmM3YjI5M2VkMTgzNWZjYTQzNTgxMTQxYjI0MmE2MQ=="
    );
    assert_eq!(header(&h, "x-api-timestamp"), "1700000000");
}

/// Known signatures: PROTOCOLS.md §1.2 X-Kd-Signature = HmacHex64(AppID + app_data,
/// AppSecret), and §2.1 the YonBIP token signature (milliseconds, Base64 of the raw digest).
#[test]
fn signature_vectors() {
    struct Case {
        name: &'static str,
        secret: &'static str,
        canonical: &'static str,
        timestamp: TimestampUnit,
        encoding: SignatureEncoding,
        method: &'static str,
        url: &'static str,
        now_ms: i64,
        signature: &'static str,
    }
    let cases = [
        Case {
            name: "kingdee X-Kd-Signature",
            secret: "0123456789abcdef0123456789abcdef",
            canonical: "224248_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY62f1e4b0a1b2c3,integration,2052,0",
            timestamp: TimestampUnit::UnixSeconds,
            encoding: SignatureEncoding::HexBase64,
            method: "POST",
            url: "https://erp.example/x",
            now_ms: 0,
            signature: "ZGM4NGJhZGM1ZGYwNGVkODNmMjgwZDVmODNiY2E3ZTQwNGJlNDU1ZDcyMjhmNDRiYjI2ODFkMTJiNDgwN2I0MA==",
        },
        Case {
            name: "yonbip token signature",
            secret: "test-app-secret",
            canonical: "appKey41832a3d2df94989b500da6a22268747timestamp{timestamp}",
            timestamp: TimestampUnit::UnixMillis,
            encoding: SignatureEncoding::Base64,
            method: "GET",
            url: "https://api.example/open-auth/selfAppAuth/base/v1/getAccessToken",
            now_ms: 1_568_098_531_823,
            signature: "5wMIzQQCPZ0a55Kq3YEDr1Vd5wf0Ycx9MpKFF975uEg=",
        },
    ];
    for c in cases {
        let s = signer(
            c.secret,
            c.canonical,
            c.timestamp,
            NonceSource::Random,
            c.encoding,
        );
        let h = sign(&s, c.method, c.url, b"", c.now_ms, "n");
        assert_eq!(header(&h, "X-Api-Signature"), c.signature, "{}", c.name);
    }
}

#[test]
fn every_placeholder_is_filled_and_hex_is_lower_case() {
    let s = signer(
        "k",
        "{method}|{path}|{query}|{host}|{timestamp}|{nonce}|{body_sha256}|{body_sha256_base64}|{key_id}|{{literal}}",
        TimestampUnit::UnixMillis,
        NonceSource::Random,
        SignatureEncoding::Hex,
    );
    let url = url::Url::parse("http://t.example:8080/v1/vouchers?b=2&a=1").unwrap();
    let input = input("POST", &url, b"abc", 42, "r4nd");
    let (canonical, _, _) = s.canonical_string(&input);
    assert_eq!(
        canonical,
        "POST|/v1/vouchers|b=2&a=1|t.example|42|r4nd|ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad|ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=||{literal}"
    );
    let sig = s.headers(&input)[0].1.clone();
    assert_eq!(sig, hex::encode(hmac_sha256(b"k", canonical.as_bytes())));
}

#[test]
fn literal_secrets_and_bad_templates_are_refused_at_load() {
    let bearer = AuthSpec::Bearer {
        token: SecretRef::Literal("abc".into()),
    };
    assert!(bearer.problems()[0].contains("by reference"));
    let ok = AuthSpec::Bearer {
        token: SecretRef::Env("FINANCE_TOKEN".into()),
    };
    assert!(ok.problems().is_empty());
    let hmac = AuthSpec::HmacSha256 {
        secret: SecretRef::Env("K".into()),
        key_id: None,
        canonical: "{method}\n{bodyhash}".into(),
        timestamp: TimestampUnit::UnixSeconds,
        nonce: NonceSource::Random,
        encoding: SignatureEncoding::Hex,
        signature_header: "bad header".into(),
        signature_prefix: String::new(),
        timestamp_header: default_timestamp_header(),
        nonce_header: default_nonce_header(),
        key_id_header: default_key_id_header(),
    };
    let p = hmac.problems().join("\n");
    assert!(p.contains("unknown placeholder `{bodyhash}`"), "{p}");
    assert!(p.contains("`bad header` is not a valid header name"), "{p}");
}

#[test]
fn debug_never_prints_secrets() {
    let basic = Auth::build(&AuthSpec::Basic {
        username: "u".into(),
        password: SecretRef::Literal("hunter2".into()),
    })
    .unwrap();
    let text = format!("{basic:?}");
    assert!(
        !text.contains("hunter2") && !text.contains(&BASE64.encode("u:hunter2")),
        "{text}"
    );
    assert!(basic.static_secrets().contains(&BASE64.encode("u:hunter2")));
    let s = signer(
        "s3cret-key",
        "{method}",
        TimestampUnit::UnixSeconds,
        NonceSource::Random,
        SignatureEncoding::Hex,
    );
    assert!(!format!("{s:?}").contains("s3cret-key"));
}
