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
mod tests;
