//! Upcasters: functions that lift a stored event's payload from one schema version to the next,
//! applied on read so that stored events are never rewritten.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// Lifts payloads of `event_type` at `from_version` to `from_version + 1`.
pub trait Upcaster: Send + Sync {
    fn event_type(&self) -> &str;
    fn source_version(&self) -> u32;
    fn upcast(&self, payload: Value) -> Value;
}

/// An upcaster made of a closure.
pub struct FnUpcaster<F> {
    event_type: String,
    from_version: u32,
    upcast: F,
}

impl<F: Fn(Value) -> Value + Send + Sync> FnUpcaster<F> {
    /// Upcasts `event_type` from `from_version` to the next version with `upcast`.
    pub fn new(event_type: impl Into<String>, from_version: u32, upcast: F) -> Self {
        Self {
            event_type: event_type.into(),
            from_version,
            upcast,
        }
    }
}

impl<F> fmt::Debug for FnUpcaster<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnUpcaster")
            .field("event_type", &self.event_type)
            .field("from_version", &self.from_version)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(Value) -> Value + Send + Sync> Upcaster for FnUpcaster<F> {
    fn event_type(&self) -> &str {
        &self.event_type
    }
    fn source_version(&self) -> u32 {
        self.from_version
    }
    fn upcast(&self, payload: Value) -> Value {
        (self.upcast)(payload)
    }
}

/// The upcasters of a store, keyed by (event type, schema version).
#[derive(Clone, Default)]
pub struct Upcasters {
    by_key: HashMap<(String, u32), Arc<dyn Upcaster>>,
}

impl Upcasters {
    /// Adds an upcaster; a later one for the same (type, version) replaces the earlier.
    pub fn with(mut self, upcaster: impl Upcaster + 'static) -> Self {
        let key = (upcaster.event_type().to_owned(), upcaster.source_version());
        self.by_key.insert(key, Arc::new(upcaster));
        self
    }

    /// Applies the chain of upcasters for `event_type` starting at `version`; returns the payload
    /// and the version it now conforms to.
    pub fn apply(&self, event_type: &str, mut version: u32, mut payload: Value) -> (u32, Value) {
        if self.by_key.is_empty() {
            return (version, payload);
        }
        while let Some(up) = self.by_key.get(&(event_type.to_owned(), version)) {
            payload = up.upcast(payload);
            version += 1;
        }
        (version, payload)
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_key.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chains_apply_in_version_order_and_stop_at_the_current_version() {
        let ups = Upcasters::default()
            .with(FnUpcaster::new("Renamed", 1, |mut p| {
                p["b"] = p["a"].take();
                p
            }))
            .with(FnUpcaster::new("Renamed", 2, |mut p| {
                p["c"] = json!(true);
                p
            }));
        let (v, p) = ups.apply("Renamed", 1, json!({"a": 1}));
        assert_eq!(v, 3);
        assert_eq!(p, json!({"a": null, "b": 1, "c": true}));
        assert_eq!(ups.apply("Other", 1, json!({})).0, 1);
    }
}
