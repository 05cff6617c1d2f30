//! WeCom (企业微信) callback crypto: the `WXBizMsgCrypt` scheme.
//!
//! This module owns exactly the cryptographic layer of WeCom callbacks:
//!
//! * `msg_signature`: SHA-1 over the byte-wise sorted
//!   `[token, timestamp, nonce, encrypt]`, lowercase hex, compared in constant time;
//! * the EncodingAESKey → AES-256 key (IV = first 16 key bytes);
//! * AES-256-CBC without cipher padding, PKCS#7 padding to a **32**-byte block
//!   done by hand, and standard base64;
//! * the plaintext frame `random(16) || msg_len (u32 BE) || msg || receive_id`;
//! * the encrypted passive-reply body.
//!
//! It does no I/O, no HTTP and no XML parsing: callers pass in the already
//! URL-decoded query values and the `Encrypt` text extracted from the envelope,
//! and get back the decrypted message bytes as a `String`. Errors map onto the
//! official `WXBizMsgCrypt` return codes (`-40001` … `-40010`) and never carry
//! any part of the payload.

use core::fmt;

use aes::Aes256;
use aes::cipher::array::Array;
use aes::cipher::consts::U16;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use rand::RngExt as _;
use rand::distr::Alphanumeric;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Length of an EncodingAESKey in characters.
const ENCODING_AES_KEY_LEN: usize = 43;
/// Length of the random prefix of the plaintext frame.
const RANDOM_LEN: usize = 16;
/// Length of the random prefix plus the big-endian `msg_len` field.
const FRAME_HEADER_LEN: usize = RANDOM_LEN + 4;
/// PKCS#7 block size used by WeCom (not the AES block size).
const PAD_BLOCK: usize = 32;
/// AES block size.
const AES_BLOCK: usize = 16;
/// Length of a hex-encoded SHA-1 digest.
const SIGNATURE_HEX_LEN: usize = 40;
/// Lowercase hex alphabet for the signature.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Base64 engine for the EncodingAESKey: standard alphabet, padding optional,
/// and the 2 unused trailing bits of the 43rd character ignored (they are
/// usually non-zero, and the official libraries ignore them).
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type Aes256CbcEnc<'a> = cbc::Encryptor<&'a Aes256>;
type Aes256CbcDec<'a> = cbc::Decryptor<&'a Aes256>;
type AesBlock = Array<u8, U16>;

/// Errors of the callback crypto layer, one per official `WXBizMsgCrypt` code
/// (with finer variants where one code covers several distinct faults).
///
/// Messages say what is wrong and what an operator should check; they never
/// include any part of the request or the decrypted payload.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// `-40001`: the computed signature does not equal `msg_signature`.
    #[error(
        "signature mismatch (-40001): msg_signature does not match sha1(token, timestamp, nonce, \
         encrypt); check that the callback Token in config equals the one in the WeCom console"
    )]
    BadSignature,
    /// `-40004`: the EncodingAESKey is not 43 chars of `[A-Za-z0-9]` decoding to 32 bytes.
    #[error(
        "invalid EncodingAESKey (-40004): it must be exactly 43 characters of [A-Za-z0-9] \
         decoding to 32 bytes; check the configured key (re-copy it from the WeCom console)"
    )]
    BadAesKey,
    /// `-40005`: the receive id in the plaintext is not one of the accepted ones.
    #[error(
        "receive-id mismatch (-40005): the decrypted receive id is not an accepted one; check the \
         app's CorpID/SuiteID in config"
    )]
    ReceiveIdMismatch,
    /// `-40007`: the decoded ciphertext is empty or not a multiple of the AES block size.
    #[error(
        "bad ciphertext length (-40007): decoded ciphertext is empty or not a multiple of 16 \
         bytes; check that the Encrypt/echostr value reaches us untruncated (proxies, body-size limits)"
    )]
    BadCiphertextLength,
    /// `-40007`: the PKCS#7 (block 32) padding after decryption is invalid.
    #[error(
        "bad padding (-40007): decrypted data has invalid PKCS#7 padding; check that the \
         EncodingAESKey in config matches the WeCom console"
    )]
    BadPadding,
    /// `-40008`: the unpadded plaintext is shorter than the 20-byte frame header.
    #[error(
        "frame too short (-40008): decrypted data is shorter than the 20-byte header; check the \
         EncodingAESKey in config"
    )]
    FrameTooShort,
    /// `-40008`: the `msg_len` field points past the end of the plaintext.
    #[error(
        "msg_len out of range (-40008): the length field exceeds the decrypted data; check the \
         EncodingAESKey in config"
    )]
    MsgLenOutOfRange,
    /// `-40008`: the message or the receive id is not valid UTF-8.
    #[error(
        "not UTF-8 (-40008): the decrypted message or receive id is not valid UTF-8; check the \
         EncodingAESKey in config"
    )]
    NotUtf8,
    /// `-40010`: the `Encrypt`/`echostr` value is not valid standard base64.
    #[error(
        "bad base64 (-40010): Encrypt/echostr is not valid standard base64; check that the query \
         string was percent-decoded exactly once"
    )]
    BadBase64,
}

impl CryptoError {
    /// The official `WXBizMsgCrypt` return code for this error
    /// (`-40001`, `-40004`, `-40005`, `-40007`, `-40008` or `-40010`).
    #[must_use]
    pub fn code(&self) -> i32 {
        match self {
            Self::BadSignature => -40001,
            Self::BadAesKey => -40004,
            Self::ReceiveIdMismatch => -40005,
            Self::BadCiphertextLength | Self::BadPadding => -40007,
            Self::FrameTooShort | Self::MsgLenOutOfRange | Self::NotUtf8 => -40008,
            Self::BadBase64 => -40010,
        }
    }

    /// Short `snake_case` label for metrics and structured logs.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::BadAesKey => "bad_aes_key",
            Self::ReceiveIdMismatch => "receive_id_mismatch",
            Self::BadCiphertextLength => "bad_length",
            Self::BadPadding => "bad_padding",
            Self::FrameTooShort => "frame_too_short",
            Self::MsgLenOutOfRange => "msg_len_out_of_range",
            Self::NotUtf8 => "not_utf8",
            Self::BadBase64 => "bad_base64",
        }
    }
}

/// A decrypted callback frame.
///
/// `Debug` prints only the message length (the message is business data).
#[derive(Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The decrypted message (business XML, or the echostr reply body for URL verification).
    pub msg: String,
    /// The receive id found after the message (CorpID, SuiteID, or empty).
    pub receive_id: String,
    /// The 16-byte random prefix of the frame (arbitrary bytes; never interpret it).
    pub random: [u8; 16],
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("msg", &format_args!("<{} bytes>", self.msg.len()))
            .field("receive_id", &self.receive_id)
            .field("random", &format_args!("***"))
            .finish()
    }
}

/// Callback crypto for one WeCom callback endpoint (one Token + EncodingAESKey).
///
/// Holds the token, the IV (first 16 key bytes) and the AES-256 key, the
/// latter already expanded into its key schedule once in
/// [`CallbackCrypto::new`]. Cheap to share (`&self` everywhere, no interior
/// mutability). `Debug` prints the token and key material as `***`.
#[derive(Clone)]
pub struct CallbackCrypto {
    token: String,
    iv: [u8; 16],
    /// AES-256 keyed with the 32-byte key decoded from the EncodingAESKey.
    cipher: Aes256,
}

impl fmt::Debug for CallbackCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackCrypto")
            .field("token", &format_args!("***"))
            .field("aes_key", &format_args!("***"))
            .field("iv", &format_args!("***"))
            .finish()
    }
}

impl CallbackCrypto {
    /// Creates the crypto for `token` and `encoding_aes_key`.
    ///
    /// `encoding_aes_key` must be exactly 43 characters of `[A-Za-z0-9]`; it is
    /// base64-decoded (trailing bits of the last character allowed) to the
    /// 32-byte AES key, whose first 16 bytes are the IV.
    ///
    /// # Errors
    /// [`CryptoError::BadAesKey`] (`-40004`) if the key is malformed.
    pub fn new(token: &str, encoding_aes_key: &str) -> Result<Self, CryptoError> {
        let aes_key = decode_encoding_aes_key(encoding_aes_key)?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&aes_key[..16]);
        let cipher = Aes256::new(&aes_key.into());
        Ok(Self {
            token: token.to_owned(),
            iv,
            cipher,
        })
    }

    /// Computes `msg_signature`: lowercase hex SHA-1 over the byte-wise sorted
    /// `[token, timestamp, nonce, encrypted]` concatenated without separator.
    ///
    /// `encrypted` is the `Encrypt` value (POST) or the URL-decoded `echostr` (GET).
    #[must_use]
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let hex = self.signature_hex(timestamp, nonce, encrypted);
        hex.iter().map(|&b| char::from(b)).collect()
    }

    /// Checks `msg_signature` against the computed signature in constant time.
    ///
    /// # Errors
    /// [`CryptoError::BadSignature`] (`-40001`) on mismatch, including a wrong
    /// length or non-lowercase hex.
    pub fn verify_signature(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.signature_hex(timestamp, nonce, encrypted);
        // `ct_eq` on slices of different lengths is false.
        if bool::from(expected[..].ct_eq(msg_signature.as_bytes())) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }

    /// Decrypts an `Encrypt`/`echostr` value **without** checking the signature
    /// or the receive id (use [`CallbackCrypto::open`] for requests).
    ///
    /// Steps: standard base64 decode; length must be a non-zero multiple of 16;
    /// AES-256-CBC decrypt (IV = key\[..16\]); strict PKCS#7 with block 32
    /// (pad `n` in `1..=32`, all `n` bytes equal `n`); frame of at least 20
    /// bytes with `20 + msg_len <= len`; message and receive id must be UTF-8.
    ///
    /// # Errors
    /// [`CryptoError::BadBase64`] (`-40010`), [`CryptoError::BadCiphertextLength`]
    /// / [`CryptoError::BadPadding`] (`-40007`), [`CryptoError::FrameTooShort`] /
    /// [`CryptoError::MsgLenOutOfRange`] / [`CryptoError::NotUtf8`] (`-40008`).
    pub fn decrypt(&self, encrypted_b64: &str) -> Result<Decrypted, CryptoError> {
        let mut buf = STANDARD
            .decode(encrypted_b64)
            .map_err(|_| CryptoError::BadBase64)?;
        if buf.is_empty() || buf.len() % AES_BLOCK != 0 {
            return Err(CryptoError::BadCiphertextLength);
        }
        {
            let (blocks, tail) = AesBlock::slice_as_chunks_mut(&mut buf);
            if !tail.is_empty() {
                return Err(CryptoError::BadCiphertextLength);
            }
            Aes256CbcDec::inner_iv_init(&self.cipher, &self.iv.into()).decrypt_blocks(blocks);
        }

        let content_len = pkcs7_unpad_len(&buf)?;
        if content_len < FRAME_HEADER_LEN {
            return Err(CryptoError::FrameTooShort);
        }
        let (random, rest) = buf
            .split_first_chunk::<RANDOM_LEN>()
            .ok_or(CryptoError::FrameTooShort)?;
        let random = *random;
        let len_bytes = rest.first_chunk::<4>().ok_or(CryptoError::FrameTooShort)?;
        let msg_len = usize::try_from(u32::from_be_bytes(*len_bytes))
            .map_err(|_| CryptoError::MsgLenOutOfRange)?;
        let msg_end = FRAME_HEADER_LEN
            .checked_add(msg_len)
            .filter(|&end| end <= content_len)
            .ok_or(CryptoError::MsgLenOutOfRange)?;

        let receive_id = buf
            .get(msg_end..content_len)
            .ok_or(CryptoError::MsgLenOutOfRange)
            .and_then(|b| core::str::from_utf8(b).map_err(|_| CryptoError::NotUtf8))?
            .to_owned();

        // Reuse the decode buffer for the message: drop padding + receive id,
        // then shift the message to the front.
        buf.truncate(msg_end);
        buf.drain(..FRAME_HEADER_LEN);
        let msg = String::from_utf8(buf).map_err(|_| CryptoError::NotUtf8)?;

        Ok(Decrypted {
            msg,
            receive_id,
            random,
        })
    }

    /// Opens a callback: verifies the signature **first**, then decrypts, then
    /// requires the receive id to be one of `accepted_receive_ids` (exact match;
    /// an empty list accepts nothing). Never decrypts when the signature is wrong.
    ///
    /// For URL verification pass the URL-decoded `echostr` as `encrypted_b64`
    /// and answer with the returned `msg`.
    ///
    /// # Errors
    /// [`CryptoError::BadSignature`] first, then any [`CallbackCrypto::decrypt`]
    /// error, then [`CryptoError::ReceiveIdMismatch`] (`-40005`).
    pub fn open(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted_b64: &str,
        accepted_receive_ids: &[String],
    ) -> Result<Decrypted, CryptoError> {
        self.verify_signature(msg_signature, timestamp, nonce, encrypted_b64)?;
        let decrypted = self.decrypt(encrypted_b64)?;
        if accepted_receive_ids
            .iter()
            .any(|id| id.as_str() == decrypted.receive_id)
        {
            Ok(decrypted)
        } else {
            Err(CryptoError::ReceiveIdMismatch)
        }
    }

    /// Encrypts `random || msg_len || msg || receive_id` with PKCS#7(32)
    /// padding and returns standard base64. `random` is explicit so output is
    /// byte-reproducible (tests, vectors); use [`CallbackCrypto::encrypt`] otherwise.
    ///
    /// `msg` longer than `u32::MAX` bytes cannot be framed: the length field
    /// saturates and the result will not decrypt to `msg`.
    #[must_use]
    pub fn encrypt_with_random(&self, msg: &str, receive_id: &str, random: [u8; 16]) -> String {
        let framed_len = FRAME_HEADER_LEN
            .saturating_add(msg.len())
            .saturating_add(receive_id.len());
        let pad = PAD_BLOCK - framed_len % PAD_BLOCK;
        let mut buf = Vec::with_capacity(framed_len.saturating_add(pad));
        buf.extend_from_slice(&random);
        let msg_len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&msg_len.to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(receive_id.as_bytes());
        // `pad` is in 1..=32, so the cast is lossless.
        buf.resize(buf.len() + pad, pad as u8);
        self.encrypt_padded_frame(buf)
    }

    /// Like [`CallbackCrypto::encrypt_with_random`] with 16 random alphanumeric
    /// bytes from the thread-local CSPRNG (as the official libraries do).
    #[must_use]
    pub fn encrypt(&self, msg: &str, receive_id: &str) -> String {
        let mut rng = rand::rng();
        let mut random = [0u8; RANDOM_LEN];
        for b in &mut random {
            *b = rng.sample(Alphanumeric);
        }
        self.encrypt_with_random(msg, receive_id, random)
    }

    /// Builds the encrypted passive-reply HTTP body for `reply_xml`:
    ///
    /// ```text
    /// <xml>
    /// <Encrypt><![CDATA[..]]></Encrypt>
    /// <MsgSignature><![CDATA[..]]></MsgSignature>
    /// <TimeStamp>..</TimeStamp>
    /// <Nonce><![CDATA[..]]></Nonce>
    /// </xml>
    /// ```
    ///
    /// `timestamp` and `nonce` are chosen by the caller (usually digits) and are
    /// inserted verbatim, not XML-escaped.
    #[must_use]
    pub fn passive_reply_with_random(
        &self,
        reply_xml: &str,
        receive_id: &str,
        timestamp: &str,
        nonce: &str,
        random: [u8; 16],
    ) -> String {
        let encrypted = self.encrypt_with_random(reply_xml, receive_id, random);
        let signature = self.signature_hex(timestamp, nonce, &encrypted);
        let mut out = String::with_capacity(encrypted.len() + timestamp.len() + nonce.len() + 160);
        out.push_str("<xml>\n<Encrypt><![CDATA[");
        out.push_str(&encrypted);
        out.push_str("]]></Encrypt>\n<MsgSignature><![CDATA[");
        out.extend(signature.iter().map(|&b| char::from(b)));
        out.push_str("]]></MsgSignature>\n<TimeStamp>");
        out.push_str(timestamp);
        out.push_str("</TimeStamp>\n<Nonce><![CDATA[");
        out.push_str(nonce);
        out.push_str("]]></Nonce>\n</xml>");
        out
    }

    /// SHA-1 of the sorted parts, hex-encoded into a stack buffer.
    fn signature_hex(
        &self,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> [u8; SIGNATURE_HEX_LEN] {
        let mut parts = [
            self.token.as_bytes(),
            timestamp.as_bytes(),
            nonce.as_bytes(),
            encrypted.as_bytes(),
        ];
        parts.sort_unstable();
        let mut hasher = Sha1::new();
        for part in parts {
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut out = [0u8; SIGNATURE_HEX_LEN];
        for (pair, &byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
            if let [hi, lo] = pair {
                // Nibbles are < 16, so the table lookups are in bounds.
                *hi = HEX_DIGITS[usize::from(byte >> 4)];
                *lo = HEX_DIGITS[usize::from(byte & 0x0f)];
            }
        }
        out
    }

    /// Encrypts an already padded frame (length a multiple of 32) in place and
    /// base64-encodes it.
    fn encrypt_padded_frame(&self, mut buf: Vec<u8>) -> String {
        let (blocks, _tail) = AesBlock::slice_as_chunks_mut(&mut buf);
        // `_tail` is empty: callers pad to a multiple of 32.
        Aes256CbcEnc::inner_iv_init(&self.cipher, &self.iv.into()).encrypt_blocks(blocks);
        STANDARD.encode(&buf)
    }
}

/// Decodes a 43-character `[A-Za-z0-9]` EncodingAESKey to the 32-byte AES key.
fn decode_encoding_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    let k = encoding_aes_key.as_bytes();
    if k.len() != ENCODING_AES_KEY_LEN || !k.iter().all(u8::is_ascii_alphanumeric) {
        return Err(CryptoError::BadAesKey);
    }
    let decoded = KEY_ENGINE.decode(k).map_err(|_| CryptoError::BadAesKey)?;
    decoded
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::BadAesKey)
}

/// Validates strict PKCS#7 padding with block size 32 and returns the
/// unpadded length. Checks every pad byte without an early exit.
fn pkcs7_unpad_len(buf: &[u8]) -> Result<usize, CryptoError> {
    let &last = buf.last().ok_or(CryptoError::BadPadding)?;
    let n = usize::from(last);
    if n == 0 || n > PAD_BLOCK {
        return Err(CryptoError::BadPadding);
    }
    let start = buf.len().checked_sub(n).ok_or(CryptoError::BadPadding)?;
    let pad = buf.get(start..).ok_or(CryptoError::BadPadding)?;
    let diff = pad.iter().fold(0u8, |acc, &b| acc | (b ^ last));
    if diff != 0 {
        return Err(CryptoError::BadPadding);
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn huge_msg_len_is_out_of_range() {
        let c = bridge();
        for msg_len in [u32::MAX, u32::MAX - 19, 0x8000_0000, 1_000_000] {
            let enc = encrypt_frame(&c, msg_len, b"abc", BRIDGE_CORP.as_bytes());
            let err = c.decrypt(&enc).expect_err("msg_len out of range");
            assert_eq!(err, CryptoError::MsgLenOutOfRange);
            assert_eq!(err.code(), -40008);
        }
    }

    #[test]
    fn msg_len_one_past_end_is_out_of_range() {
        let c = bridge();
        let enc = encrypt_frame(&c, 4, b"abc", b"");
        assert_eq!(c.decrypt(&enc), Err(CryptoError::MsgLenOutOfRange));
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
    fn non_utf8_msg_is_rejected() {
        let c = bridge();
        let enc = encrypt_frame(&c, 3, b"a\xffb", BRIDGE_CORP.as_bytes());
        let err = c.decrypt(&enc).expect_err("non-UTF-8 msg");
        assert_eq!(err, CryptoError::NotUtf8);
        assert_eq!(err.code(), -40008);
    }

    #[test]
    fn non_utf8_receive_id_is_rejected() {
        let c = bridge();
        let enc = encrypt_frame(&c, 3, b"abc", b"ww\xc3");
        assert_eq!(c.decrypt(&enc), Err(CryptoError::NotUtf8));
    }

    #[test]
    fn wrong_key_fails_without_panicking() {
        let c = bridge();
        let other =
            CallbackCrypto::new(BRIDGE_TOKEN, "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")
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
}
