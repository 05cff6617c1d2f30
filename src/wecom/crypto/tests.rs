//! Tests of the callback crypto: key decoding, signatures, framing and padding edge cases
//! against hand-built frames, and property tests that encryption round-trips.

use super::*;
use proptest::prelude::*;

const BRIDGE_TOKEN: &str = "Qz7vN8wPq3LkT5rYb2Hc";
const BRIDGE_KEY: &str = "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZrh";
const BRIDGE_CORP: &str = "ww7a3c1e5b9d2f4a68";

fn bridge() -> CallbackCrypto {
    CallbackCrypto::new(BRIDGE_TOKEN, BRIDGE_KEY).expect("valid test key")
}

/// Pads `frame` with `pad` copies of `pad_byte`, encrypts, base64-encodes.
fn encrypt_raw(c: &CallbackCrypto, frame: &[u8], pad: usize, pad_byte: u8) -> String {
    let mut buf = frame.to_vec();
    buf.resize(buf.len() + pad, pad_byte);
    assert_eq!(buf.len() % AES_BLOCK, 0, "test frame must be block aligned");
    c.encrypt_padded_frame(buf)
}

/// random || msg_len || msg || rid, with an explicit msg_len field.
fn frame(msg_len: u32, msg: &[u8], rid: &[u8]) -> Vec<u8> {
    let mut f = vec![b'r'; RANDOM_LEN];
    f.extend_from_slice(&msg_len.to_be_bytes());
    f.extend_from_slice(msg);
    f.extend_from_slice(rid);
    f
}

fn pad_for(len: usize) -> usize {
    PAD_BLOCK - len % PAD_BLOCK
}

/// Encrypts [`frame`]`(msg_len, msg, rid)` with correct padding.
fn encrypt_frame(c: &CallbackCrypto, msg_len: u32, msg: &[u8], rid: &[u8]) -> String {
    let f = frame(msg_len, msg, rid);
    let pad = pad_for(f.len());
    let pad_byte = u8::try_from(pad).expect("a pad is at most 32 bytes");
    encrypt_raw(c, &f, pad, pad_byte)
}

#[test]
fn key_decode_matches_config_vectors() {
    let cases = [
        (
            "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
            "eaa91d32babaf274ca76ece72583b5037ed6da8120a64314be4b6d453a2a854b",
        ),
        (
            "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            "8d69989bbaabe67328014c194631ad0719b3dca035b64023df292447aab60760",
        ),
        (
            BRIDGE_KEY,
            "2eae244f3f56991db155becd718e691ecf1d25fde051ae9e2b0d685e2d2d66b8",
        ),
    ];
    for (key, hex_key) in cases {
        let aes_key = decode_encoding_aes_key(key).expect("config key must decode");
        assert_eq!(hex::encode(aes_key), hex_key);
        let c = CallbackCrypto::new("t", key).expect("config key must be accepted");
        assert_eq!(hex::encode(c.iv), hex_key[..32]);
    }
}

#[test]
fn malformed_keys_are_rejected() {
    let bad = [
        "",
        &BRIDGE_KEY[..42],
        &format!("{BRIDGE_KEY}A"),
        &format!("{BRIDGE_KEY}="),
        "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZr+",
        "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZr/",
        "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZr=",
        "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZr ",
        "Lq4kTz9WmR2xVb7NcY5pHs8dJf3gUa6eKw1oXi0tZré",
    ];
    for key in bad {
        let err = CallbackCrypto::new("t", key).expect_err(key);
        assert_eq!(err, CryptoError::BadAesKey);
        assert_eq!(err.code(), -40004);
    }
}

#[test]
fn doc_sample_signature() {
    let c = CallbackCrypto::new("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")
        .expect("doc key");
    let encrypt = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
    let sig = "477715d11cdb4164915debcba66cb864d751f3e6";
    assert_eq!(c.signature("1409659813", "1372623149", encrypt), sig);
    assert_eq!(
        c.verify_signature(sig, "1409659813", "1372623149", encrypt),
        Ok(())
    );
    let d = c
        .open(
            sig,
            "1409659813",
            "1372623149",
            encrypt,
            &["wx5823bf96d3bd56c7".to_owned()],
        )
        .expect("doc sample opens");
    assert_eq!(d.receive_id, "wx5823bf96d3bd56c7");
    assert!(d.msg.contains("<Content><![CDATA[hello]]></Content>"));
    // Uppercase, truncated, extended and empty signatures are all rejected.
    let upper = sig.to_ascii_uppercase();
    for wrong in [upper.as_str(), &sig[..39], &format!("{sig}0"), ""] {
        assert_eq!(
            c.verify_signature(wrong, "1409659813", "1372623149", encrypt),
            Err(CryptoError::BadSignature)
        );
    }
}

#[test]
fn open_checks_signature_before_decrypting() {
    let c = bridge();
    // Garbage that would fail base64 / length / padding: signature must win.
    for garbage in ["!!!not base64!!!", "", "AAAA", "QUJD"] {
        let err = c
            .open(
                &"0".repeat(40),
                "1",
                "2",
                garbage,
                &[BRIDGE_CORP.to_owned()],
            )
            .expect_err("must fail");
        assert_eq!(err, CryptoError::BadSignature);
        assert_eq!(err.code(), -40001);
    }
}

#[test]
fn open_rejects_other_receive_ids() {
    let c = bridge();
    let enc = c.encrypt("<xml/>", "ww0000000000000000");
    let sig = c.signature("1", "2", &enc);
    let err = c
        .open(&sig, "1", "2", &enc, &[BRIDGE_CORP.to_owned()])
        .expect_err("wrong receive id");
    assert_eq!(err, CryptoError::ReceiveIdMismatch);
    assert_eq!(err.code(), -40005);
    assert_eq!(
        c.open(&sig, "1", "2", &enc, &[]),
        Err(CryptoError::ReceiveIdMismatch)
    );
    let ok = c
        .open(
            &sig,
            "1",
            "2",
            &enc,
            &[BRIDGE_CORP.to_owned(), "ww0000000000000000".to_owned()],
        )
        .expect("second accepted id matches");
    assert_eq!(ok.msg, "<xml/>");
}

#[test]
fn pad_zero_is_bad_padding() {
    let c = bridge();
    let f = frame(3, b"abc", BRIDGE_CORP.as_bytes());
    let pad = pad_for(f.len());
    let mut enc_frame = f.clone();
    enc_frame.resize(f.len() + pad - 1, pad as u8);
    let enc = encrypt_raw(&c, &enc_frame, 1, 0);
    assert_eq!(c.decrypt(&enc), Err(CryptoError::BadPadding));
}

#[test]
fn pad_33_is_bad_padding() {
    let c = bridge();
    // 64 bytes ending in 33 x 0x21: a valid pad for block 64 but not for 32.
    let f = frame(3, b"abc", b"");
    assert!(f.len() < 64 - 33);
    let enc = encrypt_raw(&c, &f, 64 - f.len(), 33);
    assert_eq!(c.decrypt(&enc), Err(CryptoError::BadPadding));
}

#[test]
fn pad_larger_than_buffer_is_bad_padding() {
    let c = bridge();
    let enc = encrypt_raw(&c, &[], 16, 32);
    assert_eq!(c.decrypt(&enc), Err(CryptoError::BadPadding));
}

#[test]
fn unequal_pad_bytes_are_bad_padding() {
    let c = bridge();
    let f = frame(3, b"abc", BRIDGE_CORP.as_bytes());
    let pad = pad_for(f.len());
    assert!(pad >= 2);
    let mut padded = f.clone();
    padded.resize(f.len() + pad, pad as u8);
    let first_pad = f.len();
    padded[first_pad] = (pad - 1) as u8;
    let enc = encrypt_raw(&c, &padded, 0, 0);
    let err = c.decrypt(&enc).expect_err("unequal pad");
    assert_eq!(err, CryptoError::BadPadding);
    assert_eq!(err.code(), -40007);
}

#[test]
fn ciphertext_not_multiple_of_16_is_bad_length() {
    let c = bridge();
    for n in [1usize, 15, 17, 31, 33] {
        let enc = STANDARD.encode(vec![0u8; n]);
        let err = c.decrypt(&enc).expect_err("bad length");
        assert_eq!(err, CryptoError::BadCiphertextLength);
        assert_eq!(err.code(), -40007);
    }
}

#[test]
fn empty_ciphertext_is_bad_length() {
    assert_eq!(bridge().decrypt(""), Err(CryptoError::BadCiphertextLength));
}

#[test]
fn bad_base64_is_rejected() {
    let c = bridge();
    for s in ["!!!!", "AAA", "AAAA=", "AA==AA==", " QUJD", "QUJD\n"] {
        let err = c.decrypt(s).expect_err(s);
        assert_eq!(err, CryptoError::BadBase64, "{s:?}");
        assert_eq!(err.code(), -40010);
    }
}

#[test]
fn frame_shorter_than_header_is_rejected() {
    let c = bridge();
    // 19 content bytes + 13 pad bytes of 13 = 32.
    let enc = encrypt_raw(&c, &[b'x'; 19], 13, 13);
    let err = c.decrypt(&enc).expect_err("short frame");
    assert_eq!(err, CryptoError::FrameTooShort);
    assert_eq!(err.code(), -40008);
    // A whole pad block and nothing else.
    let enc = encrypt_raw(&c, &[], 32, 32);
    assert_eq!(c.decrypt(&enc), Err(CryptoError::FrameTooShort));
}

/// A case of [`bad_msg_len_or_non_utf8_text_in_the_frame_is_rejected`]: its name, the
/// frame's msg_len field, msg and receive id, and the error they give.
type BadFrame = (&'static str, u32, &'static [u8], &'static [u8], CryptoError);

#[test]
fn bad_msg_len_or_non_utf8_text_in_the_frame_is_rejected() {
    use CryptoError::{MsgLenOutOfRange, NotUtf8};
    let c = bridge();
    let corp = BRIDGE_CORP.as_bytes();
    // every one is a frame error, -40008
    let cases: [BadFrame; 7] = [
        ("msg_len u32::MAX", u32::MAX, b"abc", corp, MsgLenOutOfRange),
        (
            "msg_len MAX - 19",
            u32::MAX - 19,
            b"abc",
            corp,
            MsgLenOutOfRange,
        ),
        ("msg_len 2^31", 0x8000_0000, b"abc", corp, MsgLenOutOfRange),
        ("msg_len 10^6", 1_000_000, b"abc", corp, MsgLenOutOfRange),
        ("msg_len one past the end", 4, b"abc", b"", MsgLenOutOfRange),
        ("non-UTF-8 msg", 3, b"a\xffb", corp, NotUtf8),
        ("non-UTF-8 receive id", 3, b"abc", b"ww\xc3", NotUtf8),
    ];
    for (case, msg_len, msg, rid, want) in cases {
        let enc = encrypt_frame(&c, msg_len, msg, rid);
        let err = c.decrypt(&enc).expect_err(case);
        assert_eq!(err, want, "{case}");
        assert_eq!(err.code(), -40008, "{case}");
    }
}

#[test]
fn msg_len_exactly_filling_gives_empty_receive_id() {
    let c = bridge();
    // 20 + 12 = 32 bytes of content, then a full pad block.
    let f = frame(12, b"hello world!", b"");
    assert_eq!(f.len(), 32);
    let enc = encrypt_raw(&c, &f, 32, 32);
    let d = c.decrypt(&enc).expect("exact fill decrypts");
    assert_eq!(d.msg, "hello world!");
    assert_eq!(d.receive_id, "");
    assert_eq!(d.random, [b'r'; 16]);
    // Same thing through the public encoder.
    assert_eq!(c.encrypt_with_random("hello world!", "", [b'r'; 16]), enc);
}

#[test]
fn wrong_key_fails_without_panicking() {
    let c = bridge();
    let other = CallbackCrypto::new(BRIDGE_TOKEN, "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")
        .expect("doc key");
    let enc = c.encrypt("<xml>payload</xml>", BRIDGE_CORP);
    let err = other.decrypt(&enc).expect_err("wrong key");
    assert!(matches!(err.code(), -40007 | -40008), "{err:?}");
}

#[test]
fn codes_and_reasons() {
    let all = [
        (CryptoError::BadSignature, -40001, "bad_signature"),
        (CryptoError::BadAesKey, -40004, "bad_aes_key"),
        (
            CryptoError::ReceiveIdMismatch,
            -40005,
            "receive_id_mismatch",
        ),
        (CryptoError::BadCiphertextLength, -40007, "bad_length"),
        (CryptoError::BadPadding, -40007, "bad_padding"),
        (CryptoError::FrameTooShort, -40008, "frame_too_short"),
        (
            CryptoError::MsgLenOutOfRange,
            -40008,
            "msg_len_out_of_range",
        ),
        (CryptoError::NotUtf8, -40008, "not_utf8"),
        (CryptoError::BadBase64, -40010, "bad_base64"),
    ];
    for (err, code, reason) in all {
        assert_eq!(err.code(), code);
        assert_eq!(err.reason(), reason);
        let msg = err.to_string();
        assert!(msg.contains(&code.to_string()), "{msg}");
        assert!(
            msg.contains("check"),
            "message should tell the operator what to check: {msg}"
        );
    }
    assert!(
        CryptoError::ReceiveIdMismatch
            .to_string()
            .contains("check the app's CorpID/SuiteID in config")
    );
}

#[test]
fn debug_does_not_leak_secrets() {
    let c = bridge();
    let dbg = format!("{c:?} {c:#?}");
    assert!(!dbg.contains(BRIDGE_TOKEN), "{dbg}");
    assert!(!dbg.contains(BRIDGE_KEY), "{dbg}");
    assert!(!dbg.contains("2eae244f"), "{dbg}");
    assert!(!dbg.to_lowercase().contains("46, 174"), "{dbg}");
    assert!(dbg.contains("***"), "{dbg}");

    let d = c
        .decrypt(&c.encrypt("<secret>PII</secret>", BRIDGE_CORP))
        .expect("round trip");
    let dbg = format!("{d:?}");
    assert!(!dbg.contains("PII"), "{dbg}");
}

#[test]
fn encrypt_uses_alphanumeric_random_and_pads_to_32() {
    let c = bridge();
    for len in 0..70 {
        let msg = "x".repeat(len);
        let enc = c.encrypt(&msg, BRIDGE_CORP);
        let raw = STANDARD.decode(&enc).expect("base64");
        assert_eq!(raw.len() % PAD_BLOCK, 0);
        let d = c.decrypt(&enc).expect("round trip");
        assert_eq!(d.msg, msg);
        assert!(d.random.iter().all(u8::is_ascii_alphanumeric));
    }
}

#[test]
fn passive_reply_format() {
    let c = bridge();
    let body = c.passive_reply_with_random("<xml>hi</xml>", BRIDGE_CORP, "123", "456", [7; 16]);
    let enc = c.encrypt_with_random("<xml>hi</xml>", BRIDGE_CORP, [7; 16]);
    let sig = c.signature("123", "456", &enc);
    assert_eq!(
        body,
        format!(
            "<xml>\n<Encrypt><![CDATA[{enc}]]></Encrypt>\n<MsgSignature><![CDATA[{sig}]]></MsgSignature>\n<TimeStamp>123</TimeStamp>\n<Nonce><![CDATA[456]]></Nonce>\n</xml>"
        )
    );
}

proptest! {
    #[test]
    fn prop_encrypt_open_round_trip(
        msg in any::<String>(),
        rid in any::<String>(),
        random in any::<[u8; 16]>(),
        ts in "[0-9]{1,12}",
        nonce in "[0-9A-Za-z]{1,16}",
    ) {
        let c = bridge();
        let enc = c.encrypt_with_random(&msg, &rid, random);
        let sig = c.signature(&ts, &nonce, &enc);
        let d = c.open(&sig, &ts, &nonce, &enc, std::slice::from_ref(&rid))
            .expect("round trip opens");
        prop_assert_eq!(&d.msg, &msg);
        prop_assert_eq!(&d.receive_id, &rid);
        prop_assert_eq!(d.random, random);

        let d2 = c.decrypt(&c.encrypt(&msg, &rid)).expect("random round trip");
        prop_assert_eq!(d2.msg, msg);
        prop_assert_eq!(d2.receive_id, rid);
    }

    #[test]
    fn prop_decrypt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let c = bridge();
        // Arbitrary ciphertext bytes: must give Ok or a decrypt-stage error.
        let b64 = STANDARD.encode(&data);
        if let Err(e) = c.decrypt(&b64) {
            prop_assert!(matches!(e.code(), -40007 | -40008));
        }
    }

    #[test]
    fn prop_arbitrary_text_never_panics(s in any::<String>(), sig in any::<String>()) {
        let c = bridge();
        let _ = c.decrypt(&s);
        let _ = c.open(&sig, "1", "2", &s, &[BRIDGE_CORP.to_owned()]);
        let _ = CallbackCrypto::new(&s, &s);
    }
}
