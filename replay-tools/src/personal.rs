//! Personal data as the log returns it: `$personal` markers whose key still exists, and
//! `$erased` markers whose key was destroyed (`jobboard_eventstore::personal`).
//!
//! Erased data is part of the audit trail, not an error: text output shows it as `[erased]`,
//! JSON output keeps the store's marker, and folding an aggregate sees the marker replaced by a
//! value its types can hold (see `state`). Markers are recognised by the store's own
//! [`Personal`] type, so their shape is defined in one place.

use jobboard_eventstore::personal::Personal;
use serde::Serialize;
use serde_json::{Map, Value};

/// How erased values read in text output.
pub(crate) const ERASED_TEXT: &str = "[erased]";

/// One erased value inside a payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ErasedField {
    /// Where it is, as a JSON pointer (`/content/contact`).
    pub(crate) path: String,
    /// The data subject whose key was destroyed.
    pub(crate) subject: String,
}

/// The personal-data marker `map` is, if it is one.
fn marker(map: &Map<String, Value>) -> Option<Personal<Value>> {
    // Cheap test first: a marker is an object with one `$`-prefixed key.
    let mut keys = map.keys();
    match (keys.next(), keys.next()) {
        (Some(key), None) if key.starts_with('$') => {
            serde_json::from_value(Value::Object(map.clone())).ok()
        }
        _ => None,
    }
}

/// Every erased value of `payload`, in document order.
pub(crate) fn erased_fields(payload: &Value) -> Vec<ErasedField> {
    let mut found = Vec::new();
    walk(payload, &mut String::new(), &mut |path, node| match node {
        Personal::Erased { subject } => found.push(ErasedField {
            path: path.to_owned(),
            subject: subject.clone(),
        }),
        Personal::Known { .. } => {}
    });
    found
}

/// True when `payload` holds a personal-data marker of either kind.
pub(crate) fn has_markers(payload: &Value) -> bool {
    let mut any = false;
    walk(payload, &mut String::new(), &mut |_, _| any = true);
    any
}

/// `payload` for people: every erased value replaced by `[erased]`, known values kept with their
/// marker (so a reader sees what is personal, and whose).
pub(crate) fn for_display(payload: &Value) -> Value {
    rewrite(payload, &mut |marker| match marker {
        Personal::Erased { .. } => Some(Value::String(ERASED_TEXT.to_owned())),
        Personal::Known { .. } => None,
    })
}

/// `payload` as a type without personal-data markers sees it: each known value in place of its
/// marker, and `erased_as` in place of each erased one.
pub(crate) fn plain(payload: &Value, erased_as: &Value) -> Value {
    rewrite(payload, &mut |marker| {
        Some(match marker {
            Personal::Known { value, .. } => value,
            Personal::Erased { .. } => erased_as.clone(),
        })
    })
}

/// Visits every marker with its JSON pointer; does not descend into markers.
fn walk(value: &Value, path: &mut String, visit: &mut impl FnMut(&str, &Personal<Value>)) {
    match value {
        Value::Object(map) => {
            if let Some(found) = marker(map) {
                visit(path, &found);
                return;
            }
            for (key, child) in map {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(child, path, visit);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                walk(child, path, visit);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// A copy of `value` with each marker for which `replace` answers replaced by that answer.
fn rewrite(value: &Value, replace: &mut impl FnMut(Personal<Value>) -> Option<Value>) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(found) = marker(map)
                && let Some(new) = replace(found)
            {
                return new;
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), rewrite(v, replace)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| rewrite(v, replace)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use jobboard_eventstore::personal::mark;
    use serde_json::json;

    use super::*;

    fn erased(subject: &str) -> Value {
        serde_json::to_value(Personal::<Value>::Erased {
            subject: subject.into(),
        })
        .unwrap()
    }

    #[test]
    fn erased_values_are_found_with_their_path_and_subject() {
        let payload = json!({
            "name": erased("seeker-1"),
            "a/b": [ {"x": erased("seeker-2")}, mark("seeker-3", json!("kept")) ],
            "title": "engineer",
        });
        let mut found = erased_fields(&payload);
        // Key order depends on serde_json's features; the set is what matters.
        found.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            found,
            vec![
                ErasedField {
                    path: "/a~1b/0/x".into(),
                    subject: "seeker-2".into()
                },
                ErasedField {
                    path: "/name".into(),
                    subject: "seeker-1".into()
                },
            ]
        );
        assert!(has_markers(&payload));
        assert!(!has_markers(
            &json!({"title": "engineer", "$note": 1, "n": {"$x": 1, "y": 2}})
        ));
    }

    #[test]
    fn display_marks_erased_values_and_keeps_known_ones() {
        let payload = json!({"name": erased("s"), "email": mark("s", json!("a@example.com"))});
        assert_eq!(
            for_display(&payload),
            json!({"name": "[erased]", "email": mark("s", json!("a@example.com"))})
        );
    }

    #[test]
    fn plain_unwraps_known_values_and_substitutes_erased_ones() {
        let payload = json!({"name": erased("s"), "tags": [mark("s", json!(["x"]))], "n": 1});
        assert_eq!(
            plain(&payload, &Value::Null),
            json!({"name": null, "tags": [["x"]], "n": 1})
        );
    }
}
