//! Content checks (R-POST-1 to R-POST-3): field paths, limits counted in characters, blank
//! meaning empty after trimming, and every problem reported at once.

use jobboard_domain::posting::{
    AdditionalItem, FieldViolation, PostingContent, RecruitmentPeriod, limits,
};

use crate::support::{complete_content, date, minimal_content};

/// Violations as `field: description` lines, so an expectation reads at a glance.
fn lines(violations: &[FieldViolation]) -> Vec<String> {
    violations.iter().map(ToString::to_string).collect()
}

fn item(title: &str, detail: &str) -> AdditionalItem {
    AdditionalItem {
        title: title.to_owned(),
        detail: detail.to_owned(),
    }
}

#[test]
fn minimal_and_complete_content_pass_their_stages() {
    // R-POST-2, R-POST-3
    assert_eq!(minimal_content().draft_violations(), []);
    assert_eq!(complete_content().draft_violations(), []);
    assert_eq!(complete_content().submission_violations(), []);
}

#[test]
fn a_draft_reports_every_problem_at_once_with_field_paths() {
    // R-POST-2
    let content = PostingContent {
        name: String::new(),
        title: "t".repeat(201),
        description: "d".repeat(20_001),
        additional_items: vec![
            item("ok", "ok"),
            item("ok", "ok"),
            item("x".repeat(201).as_str(), "y".repeat(5_001).as_str()),
        ],
        employment_terms: "e".repeat(2_001),
        location: "l".repeat(2_001),
        recruitment_period: Some(RecruitmentPeriod {
            start: date("2026-04-01"),
            end: date("2026-03-31"),
        }),
        ..PostingContent::default()
    };
    assert_eq!(
        lines(&content.draft_violations()),
        [
            "content.name: must not be blank",
            "content.title: must be at most 200 characters (has 201)",
            "content.description: must be at most 20000 characters (has 20001)",
            "content.additional_items[2].title: must be at most 200 characters (has 201)",
            "content.additional_items[2].detail: must be at most 5000 characters (has 5001)",
            "content.employment_terms: must be at most 2000 characters (has 2001)",
            "content.location: must be at most 2000 characters (has 2001)",
            "content.recruitment_period: start 2026-04-01 is after end 2026-03-31",
        ]
    );
}

#[test]
fn limits_count_characters_not_bytes() {
    // R-POST-2: 200 kanji are 600 bytes and still fit a 200-character title.
    let fits = PostingContent {
        title: "研".repeat(limits::TITLE),
        ..minimal_content()
    };
    assert!(fits.title.len() > limits::TITLE);
    assert_eq!(fits.draft_violations(), []);
    let over = PostingContent {
        title: "研".repeat(limits::TITLE + 1),
        ..minimal_content()
    };
    assert_eq!(
        lines(&over.draft_violations()),
        ["content.title: must be at most 200 characters (has 201)"]
    );
}

#[test]
fn every_limit_accepts_its_size_and_refuses_one_more() {
    // R-POST-2
    type Setter = fn(&mut PostingContent, String);
    let cases: [(&str, usize, Setter); 7] = [
        ("content.name", limits::NAME, |c, s| c.name = s),
        ("content.title", limits::TITLE, |c, s| c.title = s),
        ("content.description", limits::DESCRIPTION, |c, s| {
            c.description = s;
        }),
        (
            "content.additional_items[0].title",
            limits::ADDITIONAL_ITEM_TITLE,
            |c, s| {
                c.additional_items = vec![item(&s, "")];
            },
        ),
        (
            "content.additional_items[0].detail",
            limits::ADDITIONAL_ITEM_DETAIL,
            |c, s| {
                c.additional_items = vec![item("", &s)];
            },
        ),
        (
            "content.employment_terms",
            limits::EMPLOYMENT_TERMS,
            |c, s| {
                c.employment_terms = s;
            },
        ),
        ("content.location", limits::LOCATION, |c, s| c.location = s),
    ];
    for (field, limit, set) in cases {
        let mut content = minimal_content();
        set(&mut content, "あ".repeat(limit));
        assert_eq!(content.draft_violations(), [], "{field} at {limit}");
        set(&mut content, "あ".repeat(limit + 1));
        let violations = content.draft_violations();
        assert_eq!(violations.len(), 1, "{field}: {violations:?}");
        assert_eq!(violations[0].field, field);
    }
}

#[test]
fn at_most_50_additional_items() {
    // R-POST-2
    let mut content = minimal_content();
    content.additional_items = vec![item("a", "b"); limits::ADDITIONAL_ITEMS];
    assert_eq!(content.draft_violations(), []);
    content.additional_items.push(item("a", "b"));
    assert_eq!(
        lines(&content.draft_violations()),
        ["content.additional_items: must have at most 50 items (has 51)"]
    );
}

#[test]
fn blank_means_empty_after_trimming_unicode_white_space() {
    // R-POST-2: a title of spaces, tabs or ideographic spaces (U+3000) is blank.
    for blank in ["", " ", "\t\n", "\u{3000}\u{3000}"] {
        let content = PostingContent {
            title: blank.to_owned(),
            ..minimal_content()
        };
        assert_eq!(
            lines(&content.draft_violations()),
            ["content.title: must not be blank"],
            "{blank:?}"
        );
    }
}

#[test]
fn a_one_day_recruitment_period_is_fine() {
    // R-POST-1: start and end are inclusive, so start == end is one day.
    let content = PostingContent {
        recruitment_period: Some(RecruitmentPeriod {
            start: date("2026-03-31"),
            end: date("2026-03-31"),
        }),
        ..minimal_content()
    };
    assert_eq!(content.draft_violations(), []);
}

#[test]
fn submission_adds_the_required_fields_to_the_draft_checks_in_field_order() {
    // R-POST-2, R-POST-3
    let content = PostingContent {
        title: String::new(),
        description: " ".to_owned(),
        location: "l".repeat(2_001),
        ..minimal_content()
    };
    assert_eq!(
        lines(&content.submission_violations()),
        [
            "content.title: must not be blank",
            "content.description: must not be blank",
            "content.employment_terms: must not be blank",
            "content.location: must be at most 2000 characters (has 2001)",
            "content.institution_type: must be set",
            "content.recruitment_period: must be set",
            "content.referral_period_end: must be set",
        ]
    );
}

#[test]
fn submission_does_not_require_additional_items_or_application_channels() {
    // R-POST-1, R-POST-3: additional items are optional; the two flags are plain yes/no.
    let content = PostingContent {
        additional_items: vec![],
        web_application: false,
        direct_application: false,
        ..complete_content()
    };
    assert_eq!(content.submission_violations(), []);
}
