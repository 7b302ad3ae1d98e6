//! Golden files: every event type at every schema version keeps deserialising, and serialises
//! back to the same JSON (see `tests/golden/posting/README.md`).

use std::collections::BTreeSet;
use std::path::Path;

use jobboard_domain::posting::{PostingEvent, PostingStatus, reads_as_version};
use serde_json::Value;

use crate::support::{history, modification_events, returned};

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/posting");

/// Every golden file as (event type, schema version, JSON).
fn goldens() -> Vec<(String, u32, Value)> {
    let mut goldens = Vec::new();
    for entry in std::fs::read_dir(GOLDEN_DIR).expect("the golden directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let (event_type, version) = parse_name(&path);
        let text = std::fs::read_to_string(&path).expect("a readable golden file");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        goldens.push((event_type, version, json));
    }
    goldens.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    goldens
}

/// `PostingApproved.v1.json` → (`PostingApproved`, 1).
fn parse_name(path: &Path) -> (String, u32) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 name");
    let parsed = name
        .strip_suffix(".json")
        .and_then(|stem| stem.rsplit_once(".v"))
        .and_then(|(event_type, version)| Some((event_type.to_owned(), version.parse().ok()?)));
    parsed.unwrap_or_else(|| panic!("{name}: expected <EventType>.v<version>.json"))
}

#[test]
fn every_golden_deserialises_and_serialises_back_to_the_same_json() {
    let goldens = goldens();
    assert!(!goldens.is_empty());
    for (event_type, version, json) in goldens {
        let event: PostingEvent = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{event_type}.v{version}: does not deserialise: {e}"));
        assert_eq!(event.type_name(), event_type);
        // An older version reads as the current one (its upcast); the payload is unchanged.
        assert_eq!(
            event.schema_version(),
            reads_as_version(&event_type, version),
            "{event_type}.v{version}"
        );
        assert_eq!(json["type"], event_type.as_str(), "the JSON names its type");
        let again = serde_json::to_value(&event).expect("serialise");
        assert_eq!(again, json, "{event_type}.v{version} changed shape");
    }
}

#[test]
fn every_event_type_has_a_golden_at_its_current_version() {
    let have: BTreeSet<(String, u32)> = goldens().into_iter().map(|(t, v, _)| (t, v)).collect();
    let mut samples = history(PostingStatus::Withdrawn);
    for status in [
        PostingStatus::Discarded,
        PostingStatus::RecruitmentStopped,
        PostingStatus::Cancelled,
        PostingStatus::Expired,
    ] {
        samples.extend(history(status));
    }
    samples.extend(modification_events());
    samples.push(returned());
    samples.push(PostingEvent::DraftSaved {
        content: Default::default(),
        draft_version: 2,
    });
    let sampled: BTreeSet<&str> = samples.iter().map(PostingEvent::type_name).collect();
    let listed: BTreeSet<&str> = PostingEvent::TYPES.into_iter().collect();
    assert_eq!(sampled, listed, "PostingEvent::TYPES lists every variant");
    for event in &samples {
        let key = (event.type_name().to_owned(), event.schema_version());
        assert!(have.contains(&key), "no golden file for {key:?}");
    }
}
