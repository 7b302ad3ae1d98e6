//! The per-stream hash chain that makes the log tamper-evident.
//!
//! Each event's hash is `SHA-256(previous hash ‖ version as 8 big-endian bytes ‖ content digest)`,
//! with 32 zero bytes before a stream's first event. The content digest covers every stored field
//! of the event (as stored: personal fields as ciphertext, so erasure never breaks the chain). The
//! link step is computed where the previous hash is known: inside the append transaction (the
//! PostgreSQL function `append_batch` computes it with the built-in `sha256`), and again by
//! [`crate::EventStore::verify`] when the log is audited.

use sha2::{Digest, Sha256};

/// The hash before a stream's first event.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// The fields of a stored event that its content digest covers.
#[derive(Debug)]
pub(crate) struct Content<'a> {
    pub(crate) stream_id: &'a str,
    pub(crate) event_id: uuid::Uuid,
    pub(crate) event_type: &'a str,
    pub(crate) schema_version: u32,
    pub(crate) payload: &'a str,
    pub(crate) personal: bool,
    pub(crate) command_id: Option<&'a str>,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) causation_id: Option<&'a str>,
    pub(crate) actor: Option<&'a str>,
    pub(crate) organisation: Option<&'a str>,
    pub(crate) extra: Option<&'a str>,
    pub(crate) recorded_at_micros: i64,
}

impl Content<'_> {
    /// SHA-256 over the fields, each length-prefixed so no two contents share an encoding.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |bytes: Option<&[u8]>| match bytes {
            Some(b) => {
                h.update(u64::try_from(b.len()).unwrap_or(u64::MAX).to_be_bytes());
                h.update(b);
            }
            None => h.update(u64::MAX.to_be_bytes()),
        };
        field(Some(self.stream_id.as_bytes()));
        field(Some(self.event_id.as_bytes()));
        field(Some(self.event_type.as_bytes()));
        field(Some(&self.schema_version.to_be_bytes()));
        field(Some(self.payload.as_bytes()));
        field(Some(&[u8::from(self.personal)]));
        for text in [
            self.command_id,
            self.correlation_id,
            self.causation_id,
            self.actor,
            self.organisation,
            self.extra,
        ] {
            field(text.map(str::as_bytes));
        }
        field(Some(&self.recorded_at_micros.to_be_bytes()));
        h.finalize().into()
    }
}

/// The chain step: the hash of the event at `version` whose content digest is `digest`.
pub(crate) fn link(previous: &[u8; 32], version: u64, digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(version.to_be_bytes());
    h.update(digest);
    h.finalize().into()
}

/// Lower-case hex of a hash, for reports and JSON.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits.
pub(crate) fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Converts a hash read from the database, which must be exactly 32 bytes.
pub(crate) fn from_slice(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(payload: &str) -> Content<'_> {
        Content {
            stream_id: "s-1",
            event_id: uuid::Uuid::nil(),
            event_type: "Happened",
            schema_version: 1,
            payload,
            personal: false,
            command_id: None,
            correlation_id: Some(""),
            causation_id: None,
            actor: None,
            organisation: None,
            extra: None,
            recorded_at_micros: 0,
        }
    }

    #[test]
    fn digest_distinguishes_absent_from_empty_and_changed_payloads() {
        let a = content("{}").digest();
        let mut absent = content("{}");
        absent.correlation_id = None;
        assert_ne!(a, absent.digest());
        assert_ne!(a, content("{ }").digest());
        assert_eq!(a, content("{}").digest());
    }

    #[test]
    fn hex_round_trips() {
        let h = link(&GENESIS, 1, &content("{}").digest());
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }
}
