//! Fixtures: ids, content, instants written in Tokyo time, histories that lead to each status,
//! and a test framework standing on a fixed clock.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::{AggregateResultValidator, TestFramework};
use jobboard_domain::FixedClock;
use jobboard_domain::posting::{
    AdditionalItem, EmploymentType, InstitutionType, Language, OrganisationId, Posting,
    PostingContent, PostingError, PostingEvent, PostingId, PostingServices, PostingStatus,
    RecruitmentPeriod,
};
use uuid::Uuid;

pub(crate) const POSTING_ID: PostingId =
    PostingId::new(Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_0001));
pub(crate) const ORGANISATION_ID: OrganisationId =
    OrganisationId::new(Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_00aa));

/// Every status, for tests that go through all of them.
pub(crate) const ALL_STATUSES: [PostingStatus; 11] = PostingStatus::ALL;

/// The instant of a Tokyo wall-clock time, written `2026-01-31T22:00:00`.
pub(crate) fn jst(local: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{local}+09:00"))
        .unwrap_or_else(|e| panic!("{local}: {e}"))
        .with_timezone(&Utc)
}

pub(crate) fn date(s: &str) -> NaiveDate {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The aggregate's test framework with the clock standing at `now`.
pub(crate) fn at(now: DateTime<Utc>) -> TestFramework<Posting> {
    TestFramework::with(PostingServices::new(Arc::new(FixedClock::at(now))))
}

/// The error a command was refused with.
pub(crate) fn refusal(validator: AggregateResultValidator<Posting>) -> PostingError {
    match validator.inspect_result() {
        Ok(events) => panic!("expected a refusal, got {events:?}"),
        Err(error) => error,
    }
}

/// Asserts the command was refused by `rule` and returns the message.
pub(crate) fn refused_by(validator: AggregateResultValidator<Posting>, rule: &str) -> String {
    match refusal(validator) {
        PostingError::Rule { rule: got, message } => {
            assert_eq!(got, rule, "refused by the wrong rule: {message}");
            message
        }
        other => panic!("expected a refusal by {rule}, got {other:?}"),
    }
}

/// The smallest content a draft may have (R-POST-2).
pub(crate) fn minimal_content() -> PostingContent {
    PostingContent {
        name: "2026 postdoc, materials lab".to_owned(),
        title: "博士研究員（材料科学）".to_owned(),
        ..PostingContent::default()
    }
}

/// Content complete enough to submit (R-POST-3).
pub(crate) fn complete_content() -> PostingContent {
    PostingContent {
        name: "2026 postdoc, materials lab".to_owned(),
        title: "博士研究員（材料科学）".to_owned(),
        description: "薄膜材料の合成と評価に従事していただきます。".to_owned(),
        additional_items: vec![AdditionalItem {
            title: "応募書類".to_owned(),
            detail: "履歴書、研究業績リスト".to_owned(),
        }],
        employment_terms: "任期2年、年俸制".to_owned(),
        location: "茨城県つくば市".to_owned(),
        institution_type: Some(InstitutionType::PublicResearchInstitute),
        recruitment_period: Some(RecruitmentPeriod {
            start: date("2026-02-01"),
            end: date("2026-03-31"),
        }),
        referral_period_end: Some(date("2026-03-31")),
        web_application: true,
        direct_application: false,
        employment_type: Some(EmploymentType::FixedTerm),
        new_graduate: false,
    }
}

pub(crate) fn drafted(content: PostingContent) -> PostingEvent {
    PostingEvent::PostingDrafted {
        posting_id: POSTING_ID,
        organisation_id: ORGANISATION_ID,
        language: Language::Ja,
        content,
        draft_version: 1,
        reused_from: None,
    }
}

pub(crate) fn submitted() -> PostingEvent {
    PostingEvent::PostingSubmitted {
        content: complete_content(),
        draft_version: 1,
    }
}

pub(crate) fn returned() -> PostingEvent {
    PostingEvent::PostingReturned {
        reasons: vec!["勤務地を具体的に記載してください".to_owned()],
    }
}

/// The fixture's approval: on 2026-01-31 for 2026-02-01, so public from 00:00 JST on 02-01.
pub(crate) fn approved() -> PostingEvent {
    PostingEvent::PostingApproved {
        publish_date: date("2026-02-01"),
        publishes_at: jst("2026-02-01T00:00:00"),
    }
}

/// The fixture's publication: at 00:00 JST on 2026-02-01; the recruitment period ends on
/// 2026-03-31, so it expires at 00:00 on 04-01 and modifications close at 00:00 on 04-15.
pub(crate) fn published() -> PostingEvent {
    published_at(jst("2026-02-01T00:00:00"))
}

/// The fixture's publication, recorded at `instant`.
pub(crate) fn published_at(instant: DateTime<Utc>) -> PostingEvent {
    PostingEvent::PostingPublished {
        published_at: instant,
        content: Some(complete_content()),
        expires_at: Some(jst("2026-04-01T00:00:00")),
        modifiable_until: Some(jst("2026-04-15T00:00:00")),
    }
}

/// The fixture's expiry, when the timer fires on time.
pub(crate) fn expired() -> PostingEvent {
    PostingEvent::PostingExpired {
        expired_at: jst("2026-04-01T00:00:00"),
    }
}

/// The fixture's withdrawal: asked on 2026-02-10 at 10:00, effective at 22:00.
pub(crate) fn withdrawal_requested() -> PostingEvent {
    PostingEvent::WithdrawalRequested {
        requested_at: jst("2026-02-10T10:00:00"),
        effective_at: jst("2026-02-10T22:00:00"),
    }
}

pub(crate) fn withdrawn() -> PostingEvent {
    PostingEvent::PostingWithdrawn {
        withdrawn_at: jst("2026-02-10T22:00:00"),
    }
}

/// Events that lead a posting with complete content to `status`.
pub(crate) fn history(status: PostingStatus) -> Vec<PostingEvent> {
    let mut events = vec![drafted(complete_content())];
    let path = match status {
        PostingStatus::Draft => vec![],
        PostingStatus::PendingReview => vec![submitted()],
        PostingStatus::Returned => vec![submitted(), returned()],
        PostingStatus::Approved => vec![submitted(), approved()],
        PostingStatus::Published => vec![submitted(), approved(), published()],
        PostingStatus::WithdrawalPending => {
            vec![submitted(), approved(), published(), withdrawal_requested()]
        }
        PostingStatus::Withdrawn => vec![
            submitted(),
            approved(),
            published(),
            withdrawal_requested(),
            withdrawn(),
        ],
        PostingStatus::Discarded => vec![PostingEvent::DraftDiscarded],
        PostingStatus::RecruitmentStopped => vec![
            submitted(),
            approved(),
            published(),
            PostingEvent::RecruitmentStopped {
                stopped_at: jst("2026-02-12T09:00:00"),
            },
        ],
        PostingStatus::Cancelled => vec![
            submitted(),
            approved(),
            published(),
            PostingEvent::PostingCancelled {
                cancelled_at: jst("2026-02-12T09:00:00"),
            },
        ],
        PostingStatus::Expired => vec![submitted(), approved(), published(), expired()],
    };
    events.extend(path);
    events
}

/// The aggregate rebuilt from `events`, as the store would load it.
pub(crate) fn replay(events: impl IntoIterator<Item = PostingEvent>) -> Posting {
    let mut posting = Posting::default();
    for event in events {
        posting.apply(event);
    }
    posting
}

/// The fixture's proposed change: a new title and a recruitment period ending on 2026-04-30.
pub(crate) fn modified_content() -> PostingContent {
    PostingContent {
        title: "博士研究員（材料科学・薄膜）".to_owned(),
        recruitment_period: Some(RecruitmentPeriod {
            start: date("2026-02-01"),
            end: date("2026-04-30"),
        }),
        ..complete_content()
    }
}

/// The fixture's modification request: asked on 2026-02-05 at 10:00.
pub(crate) fn modification_requested() -> PostingEvent {
    PostingEvent::ModificationRequested {
        content: modified_content(),
        requested_at: jst("2026-02-05T10:00:00"),
    }
}

/// The fixture's modification approval: on 2026-02-06 for 2026-02-08, effective at 00:00.
pub(crate) fn modification_approved() -> PostingEvent {
    PostingEvent::ModificationApproved {
        publish_date: date("2026-02-08"),
        effective_at: jst("2026-02-08T00:00:00"),
    }
}

/// The fixture's change taking effect on time; the new end moves expiry to 05-01 and the end of
/// modifications to 05-15.
pub(crate) fn modification_published() -> PostingEvent {
    PostingEvent::ModificationPublished {
        content: modified_content(),
        published_at: jst("2026-02-08T00:00:00"),
        expires_at: Some(jst("2026-05-01T00:00:00")),
        modifiable_until: Some(jst("2026-05-15T00:00:00")),
    }
}

/// One event of every modification type, for the golden checks.
pub(crate) fn modification_events() -> Vec<PostingEvent> {
    vec![
        modification_requested(),
        PostingEvent::ModificationReturned {
            reasons: vec!["給与の記載を確認してください".to_owned()],
        },
        modification_approved(),
        modification_published(),
        PostingEvent::ModificationDiscarded,
        PostingEvent::ModificationsLocked {
            locked_at: jst("2026-04-15T00:00:00"),
        },
    ]
}

/// A published posting with `events` after its publication.
pub(crate) fn published_then(events: impl IntoIterator<Item = PostingEvent>) -> Vec<PostingEvent> {
    let mut history = history(PostingStatus::Published);
    history.extend(events);
    history
}
