//! Crypto-shredding of personal data: fields marked as personal are encrypted with their data
//! subject's key before they reach the log, and read back as erased once the key is destroyed —
//! how erasure (R-RET-1 to R-RET-3) leaves the audit trail replayable (R-RET-4).
//!
//! A producer marks a personal value inside the payload as
//! `{"$personal": {"subject": "<subject id>", "value": <any JSON>}}` (see [`mark`] and
//! [`Personal`]). The store seals it as `{"$sealed": {"subject", "nonce", "data"}}` with
//! AES-256-GCM under the subject's key, the subject id as associated data. On read a sealed value
//! becomes the `$personal` marker again, or `{"$erased": {"subject": "<subject id>"}}` when the key
//! was destroyed: never an error, never garbage. Hashes cover the sealed form, so erasure leaves
//! the hash chain intact. Keys live in their own table (`subject_keys`) and never enter the log.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Nonce, Payload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::types::MAX_NAME_LEN;

const PERSONAL: &str = "$personal";
const SEALED: &str = "$sealed";
const ERASED: &str = "$erased";

/// Marks `value` as personal data of `subject` inside an event payload.
pub fn mark(subject: &str, value: Value) -> Value {
    json!({ PERSONAL: { "subject": subject, "value": value } })
}

/// True when `value` is the marker of personal data whose key was destroyed.
pub fn is_erased(value: &Value) -> bool {
    value.get(ERASED).is_some()
}

/// A personal value as producers write it and readers get it back.
///
/// Serialises to the `$personal` marker; deserialises from it or from the `$erased` marker, so a
/// projection or aggregate that folds old events after an erasure sees `Erased` instead of failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Personal<T> {
    Known { subject: String, value: T },
    Erased { subject: String },
}

impl<T> Personal<T> {
    /// A known value of `subject`.
    pub fn new(subject: impl Into<String>, value: T) -> Self {
        Self::Known {
            subject: subject.into(),
            value,
        }
    }

    /// The value, unless it was erased.
    pub fn value(&self) -> Option<&T> {
        match self {
            Self::Known { value, .. } => Some(value),
            Self::Erased { .. } => None,
        }
    }

    /// The data subject the value belongs to.
    pub fn subject(&self) -> &str {
        match self {
            Self::Known { subject, .. } | Self::Erased { subject } => subject,
        }
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Known { subject, value } => {
                #[derive(Serialize)]
                struct Inner<'a, T> {
                    subject: &'a str,
                    value: &'a T,
                }
                let mut map = std::collections::BTreeMap::new();
                map.insert(PERSONAL, Inner { subject, value });
                map.serialize(s)
            }
            Self::Erased { subject } => json!({ ERASED: { "subject": subject } }).serialize(s),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let subject_of = |inner: &Value| {
            inner
                .get("subject")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| de::Error::custom("personal marker without a subject"))
        };
        if let Some(inner) = value.get(PERSONAL) {
            let subject = subject_of(inner)?;
            let value = inner.get("value").cloned().unwrap_or(Value::Null);
            let value = serde_json::from_value(value).map_err(de::Error::custom)?;
            Ok(Self::Known { subject, value })
        } else if let Some(inner) = value.get(ERASED) {
            Ok(Self::Erased {
                subject: subject_of(inner)?,
            })
        } else {
            Err(de::Error::custom("expected a $personal or $erased marker"))
        }
    }
}

/// A subject's data key.
#[derive(Clone)]
pub(crate) struct SubjectKey(Key<Aes256Gcm>);

impl SubjectKey {
    pub(crate) fn generate() -> Self {
        Self(Key::<Aes256Gcm>::generate())
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Key::<Aes256Gcm>::try_from(bytes).ok().map(Self)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

/// Keys by subject; `None` for a subject whose key was destroyed.
pub(crate) type KeyRing = HashMap<String, Option<SubjectKey>>;

/// The subjects of the `$personal` markers in a payload (to seal), checking each marker's shape.
pub(crate) fn subjects_to_seal(payload: &Value) -> Result<BTreeSet<String>, String> {
    let mut subjects = BTreeSet::new();
    let mut error = None;
    walk(payload, &mut |node| {
        if let Some(inner) = node.get(PERSONAL) {
            match inner.get("subject").and_then(Value::as_str) {
                Some(s) if !s.is_empty() && s.len() <= MAX_NAME_LEN => {
                    subjects.insert(s.to_owned());
                }
                _ => {
                    error = Some(format!(
                        "{PERSONAL} marker needs a subject of 1 to {MAX_NAME_LEN} bytes"
                    ))
                }
            }
            true
        } else {
            false
        }
    });
    error.map_or(Ok(subjects), Err)
}

/// The subjects of the `$sealed` values in a stored payload (to unseal).
pub(crate) fn sealed_subjects(payload: &Value, into: &mut BTreeSet<String>) {
    walk(payload, &mut |node| match node.get(SEALED) {
        Some(inner) => {
            if let Some(s) = inner.get("subject").and_then(Value::as_str) {
                into.insert(s.to_owned());
            }
            true
        }
        None => false,
    });
}

/// Replaces every `$personal` marker with its sealed form. Every subject must be in `keys`.
pub(crate) fn seal(payload: &mut Value, keys: &HashMap<String, SubjectKey>) {
    rewrite(payload, &mut |node| {
        let inner = node.get(PERSONAL)?;
        let subject = inner.get("subject")?.as_str()?;
        let key = keys.get(subject)?;
        let plaintext = inner.get("value").unwrap_or(&Value::Null).to_string();
        let nonce = Nonce::<Aes256Gcm>::generate();
        let data = Aes256Gcm::new(&key.0)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: subject.as_bytes(),
                },
            )
            .ok()?;
        Some(json!({ SEALED: {
            "subject": subject,
            "nonce": BASE64.encode(nonce.as_slice()),
            "data": BASE64.encode(data),
        }}))
    })
}

/// Replaces every `$sealed` value with the `$personal` marker, or `$erased` when its key is gone.
///
/// A sealed value that does not decrypt although its key exists means the row was altered.
pub(crate) fn unseal(payload: &mut Value, keys: &KeyRing) -> Result<(), String> {
    let mut failure = None;
    rewrite(payload, &mut |node| {
        let inner = node.get(SEALED)?;
        let subject = inner.get("subject").and_then(Value::as_str).unwrap_or("");
        match keys.get(subject) {
            Some(Some(key)) => match open(inner, subject, key) {
                Some(value) => Some(json!({ PERSONAL: { "subject": subject, "value": value } })),
                None => {
                    failure = Some(format!(
                        "sealed value of subject {subject} does not decrypt"
                    ));
                    None
                }
            },
            // No key row at all is as good as a destroyed key: the value cannot be recovered.
            _ => Some(json!({ ERASED: { "subject": subject } })),
        }
    });
    failure.map_or(Ok(()), Err)
}

fn open(inner: &Value, subject: &str, key: &SubjectKey) -> Option<Value> {
    let nonce = BASE64.decode(inner.get("nonce")?.as_str()?).ok()?;
    let data = BASE64.decode(inner.get("data")?.as_str()?).ok()?;
    let nonce = Nonce::<Aes256Gcm>::try_from(nonce.as_slice()).ok()?;
    let plaintext = Aes256Gcm::new(&key.0)
        .decrypt(
            &nonce,
            Payload {
                msg: &data,
                aad: subject.as_bytes(),
            },
        )
        .ok()?;
    serde_json::from_slice(&plaintext).ok()
}

/// Visits objects depth-first; `visit` returns true to skip an object's children.
fn walk(value: &Value, visit: &mut impl FnMut(&Map<String, Value>) -> bool) {
    match value {
        Value::Object(map) if !visit(map) => map.values().for_each(|v| walk(v, visit)),
        Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
        _ => {}
    }
}

/// Replaces objects for which `replace` returns a value; descends into the others.
fn rewrite(value: &mut Value, replace: &mut impl FnMut(&Map<String, Value>) -> Option<Value>) {
    match value {
        Value::Object(map) => match replace(map) {
            Some(new) => *value = new,
            None => map.values_mut().for_each(|v| rewrite(v, replace)),
        },
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, replace)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_their_key_and_read_as_erased_without_it() {
        let key = SubjectKey::generate();
        let mut payload =
            json!({ "name": mark("seeker-1", json!("山田 太郎")), "title": "engineer" });
        assert_eq!(
            subjects_to_seal(&payload).unwrap(),
            BTreeSet::from(["seeker-1".to_owned()])
        );
        let original = payload.clone();
        seal(
            &mut payload,
            &HashMap::from([("seeker-1".to_owned(), key.clone())]),
        );
        assert!(!payload.to_string().contains("山田"));
        let mut subjects = BTreeSet::new();
        sealed_subjects(&payload, &mut subjects);
        assert_eq!(subjects.len(), 1);

        let mut readable = payload.clone();
        unseal(
            &mut readable,
            &KeyRing::from([("seeker-1".to_owned(), Some(key))]),
        )
        .unwrap();
        assert_eq!(readable, original);

        let mut erased = payload;
        unseal(&mut erased, &KeyRing::from([("seeker-1".to_owned(), None)])).unwrap();
        assert!(is_erased(&erased["name"]));
        assert_eq!(erased["title"], "engineer");
        let typed: Personal<String> = serde_json::from_value(erased["name"].clone()).unwrap();
        assert_eq!(
            typed,
            Personal::Erased {
                subject: "seeker-1".into()
            }
        );
    }

    #[test]
    fn a_tampered_ciphertext_is_reported_not_returned() {
        let key = SubjectKey::generate();
        let mut payload = json!({ "email": mark("s", json!("a@example.com")) });
        seal(
            &mut payload,
            &HashMap::from([("s".to_owned(), key.clone())]),
        );
        payload["email"][SEALED]["data"] = json!(BASE64.encode(b"not the ciphertext at all"));
        assert!(unseal(&mut payload, &KeyRing::from([("s".to_owned(), Some(key))])).is_err());
    }

    #[test]
    fn personal_round_trips_through_serde() {
        let p = Personal::new("s", 42u32);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v, mark("s", json!(42)));
        assert_eq!(serde_json::from_value::<Personal<u32>>(v).unwrap(), p);
    }
}
