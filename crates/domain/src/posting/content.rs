//! What a posting says (R-POST-1), its value types, and the checks for saving and submitting it.
//!
//! Content is plain data so that every event that ever carried it keeps deserialising: the
//! checks run when a command arrives ([`PostingContent::draft_violations`],
//! [`PostingContent::submission_violations`]), never on replay. Nothing is trimmed or otherwise
//! rewritten: what the employer typed is what the log keeps. "Blank" means empty after trimming
//! Unicode white space (which includes the ideographic space U+3000).

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Size limits of posting content, in characters (Unicode scalar values), not bytes, so that
/// Japanese and English text get the same room.
pub mod limits {
    /// `name` (internal posting name).
    pub const NAME: usize = 200;
    /// `title` (public title).
    pub const TITLE: usize = 200;
    /// `description` (free text).
    pub const DESCRIPTION: usize = 20_000;
    /// Number of additional items.
    pub const ADDITIONAL_ITEMS: usize = 50;
    /// An additional item's `title`.
    pub const ADDITIONAL_ITEM_TITLE: usize = 200;
    /// An additional item's `detail`.
    pub const ADDITIONAL_ITEM_DETAIL: usize = 5_000;
    /// `employment_terms`.
    pub const EMPLOYMENT_TERMS: usize = 2_000;
    /// `location`.
    pub const LOCATION: usize = 2_000;
    /// Number of reasons an operator gives when returning a posting.
    pub const RETURN_REASONS: usize = 50;
    /// One return reason.
    pub const RETURN_REASON: usize = 2_000;
}

/// Identifies a posting; also its aggregate id (stream `posting-{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PostingId(Uuid);

/// Identifies the employer organisation that owns a posting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrganisationId(Uuid);

macro_rules! uuid_id {
    ($name:ident) => {
        impl $name {
            /// Wraps an id chosen by the caller (the domain never generates ids).
            pub const fn new(id: Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            /// Parses the hyphenated (or any other uuid-accepted) text form.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

uuid_id!(PostingId);
uuid_id!(OrganisationId);

/// The language a posting is written in (R-POST-1): chosen at creation, never changed, so it is
/// not part of the editable content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// Japanese.
    Ja,
    /// English.
    En,
}

impl Language {
    /// The stable code, as in the JSON form: `ja` or `en`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ja => "ja",
            Self::En => "en",
        }
    }
}

/// What kind of institution offers the position (R-POST-1; filterable in search, R-SRCH-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstitutionType {
    /// A university.
    University,
    /// A public research institute.
    PublicResearchInstitute,
    /// A company.
    Company,
    /// Anything else.
    Other,
}

impl InstitutionType {
    /// The stable code, as in the JSON form (`public_research_institute`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::University => "university",
            Self::PublicResearchInstitute => "public_research_institute",
            Self::Company => "company",
            Self::Other => "other",
        }
    }
}

/// The kind of employment a posting offers (R-POST-1 employment terms; filterable in search,
/// R-SRCH-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmploymentType {
    /// Permanent, full-time.
    FullTime,
    /// Part-time.
    PartTime,
    /// For a fixed term (任期付き, contract).
    FixedTerm,
    /// Anything else.
    Other,
}

impl EmploymentType {
    /// The stable code, as in the JSON form (`full_time`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FullTime => "full_time",
            Self::PartTime => "part_time",
            Self::FixedTerm => "fixed_term",
            Self::Other => "other",
        }
    }
}

/// One extra titled section of a posting (R-POST-1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdditionalItem {
    /// The section's heading.
    pub title: String,
    /// The section's text.
    pub detail: String,
}

/// The dates between which applications are recruited, both inclusive (R-POST-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecruitmentPeriod {
    /// First day of recruitment.
    pub start: NaiveDate,
    /// Last day of recruitment; not before `start`.
    pub end: NaiveDate,
}

/// Everything an employer edits in a posting (R-POST-1).
///
/// Optional fields may stay empty in a draft (R-POST-2) and must be filled to submit it for
/// review (R-POST-3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingContent {
    /// Internal name (求人名), seen by the employer and the operator only.
    pub name: String,
    /// Public title (求人タイトル).
    pub title: String,
    /// Free-text description.
    pub description: String,
    /// Extra titled sections, in display order.
    pub additional_items: Vec<AdditionalItem>,
    /// Employment terms (conditions, pay, hours, …).
    pub employment_terms: String,
    /// Place of work.
    pub location: String,
    /// Kind of institution offering the position.
    pub institution_type: Option<InstitutionType>,
    /// Recruitment period.
    pub recruitment_period: Option<RecruitmentPeriod>,
    /// Last day on which referrals may be made (紹介期限).
    pub referral_period_end: Option<NaiveDate>,
    /// Whether web applications are accepted (Web応募 可/不可).
    pub web_application: bool,
    /// Whether direct online applications are accepted (オンライン自主応募).
    pub direct_application: bool,
    /// The kind of employment; optional (the terms themselves are free text). Absent from
    /// events recorded before it existed, which read as unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employment_type: Option<EmploymentType>,
    /// Whether this is a new-graduate posting (学卒求人), which the monthly referral-period
    /// notice leaves out (R-POST-9). Absent from older events, which read as false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_graduate: bool,
}

impl PostingContent {
    /// Every problem that stops this content from being saved as a draft (R-POST-2): `name` or
    /// `title` blank, a size limit exceeded, a recruitment period that ends before it starts.
    /// Empty when the draft may be saved.
    pub fn draft_violations(&self) -> Vec<FieldViolation> {
        self.violations(Stage::Draft)
    }

    /// Every problem that stops this content from being submitted for review: the draft checks
    /// (R-POST-2) plus the fields a registration request must have (R-POST-3). Empty when it may
    /// be submitted.
    pub fn submission_violations(&self) -> Vec<FieldViolation> {
        self.violations(Stage::Submission)
    }

    /// The checks of both stages in one pass, in field order, so callers read violations in the
    /// order the fields appear on the form.
    fn violations(&self, stage: Stage) -> Vec<FieldViolation> {
        // R-POST-3: a registration request is a complete posting; a draft need not be.
        let submit = stage == Stage::Submission;
        let mut v = Violations::default();
        // R-POST-2: a draft needs at least its name and title.
        v.required("content.name", &self.name);
        v.max_chars("content.name", &self.name, limits::NAME);
        v.required("content.title", &self.title);
        v.max_chars("content.title", &self.title, limits::TITLE);
        if submit {
            v.required("content.description", &self.description);
        }
        v.max_chars(
            "content.description",
            &self.description,
            limits::DESCRIPTION,
        );
        if self.additional_items.len() > limits::ADDITIONAL_ITEMS {
            v.push(
                "content.additional_items",
                format!(
                    "must have at most {} items (has {})",
                    limits::ADDITIONAL_ITEMS,
                    self.additional_items.len()
                ),
            );
        }
        for (i, item) in self.additional_items.iter().enumerate() {
            v.max_chars(
                &format!("content.additional_items[{i}].title"),
                &item.title,
                limits::ADDITIONAL_ITEM_TITLE,
            );
            v.max_chars(
                &format!("content.additional_items[{i}].detail"),
                &item.detail,
                limits::ADDITIONAL_ITEM_DETAIL,
            );
        }
        if submit {
            v.required("content.employment_terms", &self.employment_terms);
        }
        v.max_chars(
            "content.employment_terms",
            &self.employment_terms,
            limits::EMPLOYMENT_TERMS,
        );
        if submit {
            v.required("content.location", &self.location);
        }
        v.max_chars("content.location", &self.location, limits::LOCATION);
        if submit && self.institution_type.is_none() {
            v.push("content.institution_type", MUST_BE_SET.to_owned());
        }
        match self.recruitment_period {
            Some(period) if period.start > period.end => v.push(
                "content.recruitment_period",
                format!("start {} is after end {}", period.start, period.end),
            ),
            None if submit => v.push("content.recruitment_period", MUST_BE_SET.to_owned()),
            _ => {}
        }
        if submit && self.referral_period_end.is_none() {
            v.push("content.referral_period_end", MUST_BE_SET.to_owned());
        }
        v.0
    }
}

/// Which checks apply: saving a draft, or submitting it for review.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Draft,
    Submission,
}

/// What a missing field needs, in the words a client shows.
const MUST_BE_SET: &str = "must be set";

/// Every problem with the reasons an operator gives for returning a posting: at least one, none
/// blank, within the size limits. Empty when they are acceptable.
pub(crate) fn return_reason_violations(reasons: &[String]) -> Vec<FieldViolation> {
    let mut v = Violations::default();
    if reasons.is_empty() {
        v.push("reasons", "must give at least one reason".to_owned());
    }
    if reasons.len() > limits::RETURN_REASONS {
        v.push(
            "reasons",
            format!(
                "must have at most {} reasons (has {})",
                limits::RETURN_REASONS,
                reasons.len()
            ),
        );
    }
    for (i, reason) in reasons.iter().enumerate() {
        let field = format!("reasons[{i}]");
        v.required(&field, reason);
        v.max_chars(&field, reason, limits::RETURN_REASON);
    }
    v.0
}

/// One problem with one field of a command, as the gRPC layer reports it (INVALID_ARGUMENT with
/// field violations).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    /// Path of the field, e.g. `content.title` or `content.additional_items[2].detail`.
    pub field: String,
    /// What is wrong, lowercase, e.g. `must not be blank`.
    pub description: String,
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Collects violations so a caller learns every problem in one answer, not one per round trip.
#[derive(Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn push(&mut self, field: &str, description: String) {
        self.0.push(FieldViolation {
            field: field.to_owned(),
            description,
        });
    }

    fn required(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.push(field, "must not be blank".to_owned());
        }
    }

    fn max_chars(&mut self, field: &str, value: &str, limit: usize) {
        // Cheap first: a string of at most `limit` bytes has at most `limit` characters.
        if value.len() <= limit {
            return;
        }
        let chars = value.chars().count();
        if chars > limit {
            self.push(
                field,
                format!("must be at most {limit} characters (has {chars})"),
            );
        }
    }
}
