//! Sealing of attempt payloads (headers and bodies) at rest: the one place the ledger calls
//! the store's [`Sealer`] (the journal keys). AES-256-GCM with the journal's active key; the associated data binds
//! each ciphertext to its (job key, attempt number) so a payload cannot be moved to another
//! attempt unnoticed.

use crate::store::{Sealed, Sealer};

use super::LedgerError;
use super::types::{AttemptPayload, SealedPayload};

/// Largest body kept per request or response, in bytes. The deliver stage caps bodies
/// already; this is the ledger's own bound so one odd answer cannot bloat the store.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

fn aad(key: &str, number: u32) -> Vec<u8> {
    format!("ledger:{key}:{number}").into_bytes()
}

/// Cuts `body` to [`MAX_BODY_BYTES`] on a character boundary, saying how much was cut.
pub fn cap_body(body: &mut Option<String>) {
    if let Some(b) = body
        && b.len() > MAX_BODY_BYTES
    {
        let mut end = MAX_BODY_BYTES;
        while !b.is_char_boundary(end) {
            end -= 1;
        }
        let cut = b.len() - end;
        b.truncate(end);
        b.push_str(&format!("…[{cut} bytes cut by the ledger]"));
    }
}

/// Seals a payload for attempt `number` of job `key`.
pub(super) fn seal(
    cipher: &Sealer,
    key: &str,
    number: u32,
    payload: &AttemptPayload,
) -> Result<SealedPayload, LedgerError> {
    let plain = postcard::to_allocvec(payload)
        .map_err(|e| LedgerError::Seal(format!("encode attempt payload: {e}")))?;
    let Sealed {
        key_id,
        nonce,
        ciphertext,
    } = cipher.seal(&aad(key, number), &plain);
    Ok(SealedPayload {
        key_id,
        nonce,
        ciphertext,
    })
}

/// Opens what [`seal`] sealed.
pub(super) fn open(
    cipher: &Sealer,
    key: &str,
    number: u32,
    sealed: &SealedPayload,
) -> Result<AttemptPayload, LedgerError> {
    let as_stored = Sealed {
        key_id: sealed.key_id.clone(),
        nonce: sealed.nonce,
        ciphertext: sealed.ciphertext.clone(),
    };
    let plain = cipher
        .open(&aad(key, number), &as_stored)
        .map_err(|e| LedgerError::Seal(format!("attempt {number} of {key}: {e}")))?;
    postcard::from_bytes(&plain)
        .map_err(|e| LedgerError::Seal(format!("attempt {number} of {key}: decode payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_bound_to_its_attempt() {
        let c = Sealer::with_key("k", [3; 32]);
        let p = AttemptPayload {
            request_body: Some("{\"amount\":\"12.30\"}".into()),
            ..Default::default()
        };
        let s = seal(&c, "job_a", 1, &p).unwrap();
        assert_eq!(open(&c, "job_a", 1, &s).unwrap(), p);
        assert!(open(&c, "job_a", 2, &s).is_err());
        assert!(open(&c, "job_b", 1, &s).is_err());
    }

    #[test]
    fn caps_on_a_char_boundary() {
        let mut b = Some("é".repeat(MAX_BODY_BYTES));
        cap_body(&mut b);
        let b = b.unwrap();
        assert!(b.len() < MAX_BODY_BYTES + 64);
        assert!(b.contains("bytes cut by the ledger"));
        let mut small = Some("ok".to_string());
        cap_body(&mut small);
        assert_eq!(small.as_deref(), Some("ok"));
    }
}
