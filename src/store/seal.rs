//! Sealing of payloads at rest: AES-256-GCM with a key id, so keys can rotate.
//!
//! Owns the keyed cipher every stored payload goes through (journal entries, embedded queue
//! messages and dead letters, and the ledger's bodies): the journal builds it from its
//! configured keys and hands it to [`super::Store::open`]. It must not read configuration or
//! key files (that is the journal's `JournalCipher::from_config`) and must not know what a
//! payload means; the caller binds a payload to its place with associated data (`aad`), so a
//! sealed value copied under another key of the database does not open.

use std::collections::HashMap;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};

/// Leading bytes of a self-describing sealed value ([`Sealer::seal_bytes`]); bytes that do
/// not start with them were written by a version that stored plain text.
const MAGIC: &[u8; 4] = b"WBS1";

/// Errors of sealing and opening.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The value was sealed with a key id that is not configured.
    #[error(
        "sealed with key `{0}`, which is not configured in journal.keys (keep retired keys configured until nothing uses them)"
    )]
    UnknownKey(String),
    /// The key does not open the value: wrong key material, or the bytes were changed.
    #[error("does not open with key `{0}` (wrong key material, or the stored bytes were changed)")]
    Mismatch(String),
    /// The bytes are not a sealed value.
    #[error("not a sealed value: {0}")]
    Malformed(String),
    /// The active key id has no key.
    #[error("the active key `{0}` has no key")]
    NoActiveKey(String),
}

/// A sealed payload: key id, nonce and ciphertext (with its authentication tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Id of the key it is sealed with.
    pub key_id: String,
    /// The AES-GCM nonce (random per value).
    pub nonce: [u8; 12],
    /// Ciphertext and tag.
    #[serde(with = "byte_string")]
    pub ciphertext: Vec<u8>,
}

/// The keyed cipher for payloads at rest. Seals with the active key, opens with any
/// configured key (rotation: add a new active key, keep the old one until nothing uses it).
pub struct Sealer {
    keys: HashMap<String, Aes256Gcm>,
    active: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Sealer")
            .field("active", &self.active)
            .field("keys", &ids)
            .finish()
    }
}

impl Sealer {
    /// A sealer over 256-bit keys by id; `active` seals new values.
    pub fn new(
        keys: impl IntoIterator<Item = (String, [u8; 32])>,
        active: &str,
    ) -> Result<Self, SealError> {
        let keys: HashMap<String, Aes256Gcm> = keys
            .into_iter()
            .map(|(id, key)| (id, Aes256Gcm::new(&key.into())))
            .collect();
        if !keys.contains_key(active) {
            return Err(SealError::NoActiveKey(active.to_string()));
        }
        Ok(Self {
            keys,
            active: active.to_string(),
        })
    }

    /// A sealer with a single key; for tests, benchmarks and tools.
    pub fn with_key(id: &str, key: [u8; 32]) -> Self {
        Self {
            keys: HashMap::from([(id.to_string(), Aes256Gcm::new(&key.into()))]),
            active: id.to_string(),
        }
    }

    /// The id of the key new values are sealed with.
    pub fn active_key(&self) -> &str {
        &self.active
    }

    /// Seals `plaintext` with the active key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let nonce: [u8; 12] = rand::random();
        let cipher = &self.keys[&self.active];
        let ciphertext = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer below 64 GiB cannot fail");
        Sealed {
            key_id: self.active.clone(),
            nonce,
            ciphertext,
        }
    }

    /// Opens a sealed value that was bound to `aad`.
    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, SealError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| SealError::UnknownKey(sealed.key_id.clone()))?;
        cipher
            .decrypt(
                &sealed.nonce.into(),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| SealError::Mismatch(sealed.key_id.clone()))
    }

    /// Seals into one self-describing byte string (magic, key id, nonce, ciphertext), for
    /// tables that store a payload as bytes.
    pub fn seal_bytes(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let sealed = self.seal(aad, plaintext);
        // Key id, nonce and length prefixes fit in 64 bytes beside the ciphertext.
        let mut out = Vec::with_capacity(MAGIC.len() + 64 + sealed.ciphertext.len());
        out.extend_from_slice(MAGIC);
        // Encoding a struct of a string and byte arrays into a Vec cannot fail.
        postcard::to_extend(&sealed, out).expect("postcard encodes Sealed into a Vec")
    }

    /// Opens bytes written by [`Sealer::seal_bytes`].
    pub fn open_bytes(&self, aad: &[u8], bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| SealError::Malformed("missing the sealed-value header".into()))?;
        let sealed: Sealed =
            postcard::from_bytes(body).map_err(|e| SealError::Malformed(e.to_string()))?;
        self.open(aad, &sealed)
    }

    /// Whether `bytes` look like the output of [`Sealer::seal_bytes`] (as opposed to plain
    /// text written by an older version).
    pub fn is_sealed(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }
}

/// Serde for a `Vec<u8>` field as one byte string rather than a sequence of `u8`s: the
/// same bytes in postcard (a length, then the bytes) and in JSON (an array of numbers), so
/// values stored before read back unchanged, but encoded and decoded with one copy instead
/// of a call per byte (that loop was ~2 % of the bridge's CPU under load, on the broker
/// writer thread that every callback waits for).
pub(crate) mod byte_string {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::Serializer;

    /// Writes `bytes` as a byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    /// Reads a byte string, or a sequence of `u8`s (what a self-describing format such as
    /// JSON hands back for the same value).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Sealed` as it was encoded before `byte_string`: a plain `Vec<u8>` field.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct SealedBefore {
        key_id: String,
        nonce: [u8; 12],
        ciphertext: Vec<u8>,
    }

    #[test]
    fn byte_string_keeps_the_stored_encoding_in_postcard_and_json() {
        let ciphertext: Vec<u8> = (0..=255u8).chain([0, 1, 127, 128]).collect();
        let now = Sealed {
            key_id: "k1".into(),
            nonce: [9; 12],
            ciphertext: ciphertext.clone(),
        };
        let before = SealedBefore {
            key_id: "k1".into(),
            nonce: [9; 12],
            ciphertext,
        };
        let stored = postcard::to_allocvec(&before).unwrap();
        assert_eq!(postcard::to_allocvec(&now).unwrap(), stored);
        assert_eq!(postcard::from_bytes::<Sealed>(&stored).unwrap(), now);
        let json = serde_json::to_string(&before).unwrap();
        assert_eq!(serde_json::to_string(&now).unwrap(), json);
        assert_eq!(serde_json::from_str::<Sealed>(&json).unwrap(), now);
    }

    #[test]
    fn seals_opens_rotates_and_binds_to_aad() {
        let old = Sealer::with_key("k1", [1; 32]);
        let bytes = old.seal_bytes(b"queue/1", b"<xml>secret</xml>");
        assert!(Sealer::is_sealed(&bytes));
        assert!(!bytes.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            old.open_bytes(b"queue/1", &bytes).unwrap(),
            b"<xml>secret</xml>"
        );
        // bound to its place
        assert_eq!(
            old.open_bytes(b"queue/2", &bytes),
            Err(SealError::Mismatch("k1".into()))
        );
        // rotation: a new active key still opens what the old one sealed
        let rotated = Sealer::new([("k1".into(), [1; 32]), ("k2".into(), [2; 32])], "k2").unwrap();
        assert_eq!(
            rotated.open_bytes(b"queue/1", &bytes).unwrap(),
            b"<xml>secret</xml>"
        );
        assert_eq!(rotated.seal(b"", b"x").key_id, "k2");
        // a sealer without the old key says which key is missing
        let other = Sealer::with_key("k2", [2; 32]);
        assert_eq!(
            other.open_bytes(b"queue/1", &bytes),
            Err(SealError::UnknownKey("k1".into()))
        );
        assert!(matches!(
            old.open_bytes(b"", b"{\"plain\":1}"),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            Sealer::new([("a".into(), [0; 32])], "b"),
            Err(SealError::NoActiveKey(_))
        ));
    }
}
