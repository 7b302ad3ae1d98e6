//! Hand-written conversions between protobuf messages and the values of the store, the domain
//! and the read models, at the edge.
//!
//! Requests are parsed into domain values here, and every problem of a request is collected in
//! [`Violations`] so one INVALID_ARGUMENT names every bad field by its proto path (the paths the
//! domain uses, `content.title`, are the same). Nothing invalid gets past this module: unknown
//! enum values, impossible dates and malformed ids are refused before the command layer runs.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use jobboard_app::{Caller, CommandContext, CommandOutcome, command_id_violations};
use jobboard_domain::PostingStatus;
use jobboard_domain::posting::{
    AdditionalItem, EmploymentType, FieldViolation as DomainViolation, InstitutionType, Language,
    ModificationStatus, PostingContent, PostingId, RecruitmentPeriod,
};
use jobboard_eventstore::{Checkpoint, RecordedEvent};
use jobboard_projections::postings::{DraftVersionRow, ModificationRow, PostingRow};
use jobboard_proto::v1 as pb;
use prost_types::Timestamp;
use tonic::metadata::MetadataMap;
use tonic_types::FieldViolation;

use crate::status::Failure;

/// Every problem found in one request, each with the proto path of its field.
#[derive(Debug, Default)]
pub(crate) struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records a problem with `field`.
    pub(crate) fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the domain's violations (their field paths are the proto's).
    pub(crate) fn extend(&mut self, violations: Vec<DomainViolation>) {
        for v in violations {
            self.add(v.field, v.description);
        }
    }

    /// Whether no problem was found so far.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` if the request had no problem, else INVALID_ARGUMENT listing them all.
    pub(crate) fn finish(self) -> Result<(), Failure> {
        if self.0.is_empty() {
            return Ok(());
        }
        let summary = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Failure::InvalidArgument {
            message: format!("invalid request: {summary}"),
            violations: self.0,
        })
    }
}

/// The command context of a request: its caller, command id and expected version.
///
/// The command id is checked here (with the command layer's own rule) too, so that a request
/// with a bad id and bad content learns of both at once.
pub(crate) fn command_context(
    caller: &Caller,
    command_id: String,
    expected_version: Option<u64>,
    violations: &mut Violations,
) -> CommandContext {
    for violation in command_id_violations(&command_id) {
        violations.add(&violation.field, violation.description);
    }
    let mut ctx = CommandContext::new(caller.clone(), command_id);
    ctx.expected_version = expected_version;
    ctx
}

/// A posting id from its text form; `None` when it is empty (and not `required`) or bad.
pub(crate) fn posting_id(
    field: &str,
    text: &str,
    required: bool,
    violations: &mut Violations,
) -> Option<PostingId> {
    if text.is_empty() {
        if required {
            violations.add(field, "must be set");
        }
        return None;
    }
    match text.parse::<PostingId>() {
        Ok(id) if id.as_uuid().is_nil() => {
            violations.add(field, "must not be the nil uuid");
            None
        }
        Ok(id) => Some(id),
        Err(_) => {
            violations.add(field, "must be a uuid");
            None
        }
    }
}

/// The language of a request; UNSPECIFIED and unknown values are violations of `language`.
pub(crate) fn language(value: i32, violations: &mut Violations) -> Option<Language> {
    language_in("language", value, violations)
}

/// A language of a request held by `field`; UNSPECIFIED and unknown values are violations.
pub(crate) fn language_in(
    field: &str,
    value: i32,
    violations: &mut Violations,
) -> Option<Language> {
    match pb::Language::try_from(value) {
        Ok(pb::Language::Ja) => Some(Language::Ja),
        Ok(pb::Language::En) => Some(Language::En),
        Ok(pb::Language::Unspecified) => {
            violations.add(field, "must be set (LANGUAGE_JA or LANGUAGE_EN)");
            None
        }
        Err(_) => {
            violations.add(field, format!("{value} is not a known language"));
            None
        }
    }
}

/// An institution type of a request: UNSPECIFIED is none; unknown values are violations of
/// `field`.
pub(crate) fn institution_type(
    field: &str,
    value: i32,
    violations: &mut Violations,
) -> Option<InstitutionType> {
    match pb::InstitutionType::try_from(value) {
        Ok(pb::InstitutionType::Unspecified) => None,
        Ok(pb::InstitutionType::University) => Some(InstitutionType::University),
        Ok(pb::InstitutionType::PublicResearchInstitute) => {
            Some(InstitutionType::PublicResearchInstitute)
        }
        Ok(pb::InstitutionType::Company) => Some(InstitutionType::Company),
        Ok(pb::InstitutionType::Other) => Some(InstitutionType::Other),
        Err(_) => {
            violations.add(field, format!("{value} is not a known institution type"));
            None
        }
    }
}

/// An employment type of a request: UNSPECIFIED is none; unknown values are violations of
/// `field`.
pub(crate) fn employment_type(
    field: &str,
    value: i32,
    violations: &mut Violations,
) -> Option<EmploymentType> {
    match pb::EmploymentType::try_from(value) {
        Ok(pb::EmploymentType::Unspecified) => None,
        Ok(pb::EmploymentType::FullTime) => Some(EmploymentType::FullTime),
        Ok(pb::EmploymentType::PartTime) => Some(EmploymentType::PartTime),
        Ok(pb::EmploymentType::FixedTerm) => Some(EmploymentType::FixedTerm),
        Ok(pb::EmploymentType::Other) => Some(EmploymentType::Other),
        Err(_) => {
            violations.add(field, format!("{value} is not a known employment type"));
            None
        }
    }
}

/// The content of a request; an unset message is empty content (which the domain then finds
/// lacking). Bad dates and enum values are violations, and are left unset in the result.
pub(crate) fn content(
    content: Option<pb::PostingContent>,
    violations: &mut Violations,
) -> PostingContent {
    let content = content.unwrap_or_default();
    let institution_type = institution_type(
        "content.institution_type",
        content.institution_type,
        violations,
    );
    let employment_type = employment_type(
        "content.employment_type",
        content.employment_type,
        violations,
    );
    let recruitment_period = content.recruitment_period.and_then(|period| {
        let start = required_date(
            "content.recruitment_period.start",
            period.start.as_ref(),
            violations,
        );
        let end = required_date(
            "content.recruitment_period.end",
            period.end.as_ref(),
            violations,
        );
        Some(RecruitmentPeriod {
            start: start?,
            end: end?,
        })
    });
    let referral_period_end = content
        .referral_period_end
        .as_ref()
        .and_then(|d| checked_date("content.referral_period_end", d, violations));
    PostingContent {
        name: content.name,
        title: content.title,
        description: content.description,
        additional_items: content
            .additional_items
            .into_iter()
            .map(|item| AdditionalItem {
                title: item.title,
                detail: item.detail,
            })
            .collect(),
        employment_terms: content.employment_terms,
        location: content.location,
        institution_type,
        recruitment_period,
        referral_period_end,
        web_application: content.web_application,
        direct_application: content.direct_application,
        employment_type,
        new_graduate: content.new_graduate,
    }
}

/// A date that must be set; violations of `field` if it is unset or impossible.
pub(crate) fn required_date(
    field: &str,
    date: Option<&pb::Date>,
    violations: &mut Violations,
) -> Option<NaiveDate> {
    match date {
        Some(date) => checked_date(field, date, violations),
        None => {
            violations.add(field, "must be set");
            None
        }
    }
}

pub(crate) fn checked_date(
    field: &str,
    date: &pb::Date,
    violations: &mut Violations,
) -> Option<NaiveDate> {
    let parsed = u32::try_from(date.month)
        .ok()
        .zip(u32::try_from(date.day).ok())
        .and_then(|(month, day)| NaiveDate::from_ymd_opt(date.year, month, day));
    if parsed.is_none() {
        violations.add(
            field,
            format!(
                "{:04}-{:02}-{:02} is not a valid date",
                date.year, date.month, date.day
            ),
        );
    }
    parsed
}

/// The wire form of a business date.
pub(crate) fn to_date(date: NaiveDate) -> pb::Date {
    use chrono::Datelike as _;
    pb::Date {
        year: date.year(),
        // Month and day are at most 12 and 31: they always fit.
        month: i32::try_from(date.month()).unwrap_or_default(),
        day: i32::try_from(date.day()).unwrap_or_default(),
    }
}

/// A status filter: unset or UNSPECIFIED means none; unknown values are violations of `field`.
pub(crate) fn status_filter(
    field: &str,
    status: Option<i32>,
    violations: &mut Violations,
) -> Option<PostingStatus> {
    use pb::PostingStatus as P;
    let value = status?;
    let status = match P::try_from(value) {
        Ok(P::Unspecified) => return None,
        Ok(P::Draft) => PostingStatus::Draft,
        Ok(P::PendingReview) => PostingStatus::PendingReview,
        Ok(P::Returned) => PostingStatus::Returned,
        Ok(P::Approved) => PostingStatus::Approved,
        Ok(P::Published) => PostingStatus::Published,
        Ok(P::WithdrawalPending) => PostingStatus::WithdrawalPending,
        Ok(P::Withdrawn) => PostingStatus::Withdrawn,
        Ok(P::Discarded) => PostingStatus::Discarded,
        Ok(P::RecruitmentStopped) => PostingStatus::RecruitmentStopped,
        Ok(P::Cancelled) => PostingStatus::Cancelled,
        Ok(P::Expired) => PostingStatus::Expired,
        Err(_) => {
            violations.add(field, format!("{value} is not a known posting status"));
            return None;
        }
    };
    Some(status)
}

pub(crate) fn to_status_code(status: PostingStatus) -> pb::PostingStatus {
    use pb::PostingStatus as P;
    match status {
        PostingStatus::Draft => P::Draft,
        PostingStatus::PendingReview => P::PendingReview,
        PostingStatus::Returned => P::Returned,
        PostingStatus::Approved => P::Approved,
        PostingStatus::Published => P::Published,
        PostingStatus::WithdrawalPending => P::WithdrawalPending,
        PostingStatus::Withdrawn => P::Withdrawn,
        PostingStatus::Discarded => P::Discarded,
        PostingStatus::RecruitmentStopped => P::RecruitmentStopped,
        PostingStatus::Cancelled => P::Cancelled,
        PostingStatus::Expired => P::Expired,
    }
}

fn to_modification(row: ModificationRow) -> pb::Modification {
    let status = match row.status {
        ModificationStatus::PendingReview => pb::ModificationStatus::PendingReview,
        ModificationStatus::Returned => pb::ModificationStatus::Returned,
        ModificationStatus::Approved => pb::ModificationStatus::Approved,
    };
    pb::Modification {
        status: status.into(),
        content: Some(to_content(row.content)),
        requested_at: Some(to_timestamp(row.requested_at)),
        return_reasons: row.return_reasons,
        effective_at: row.effective_at.map(to_timestamp),
    }
}

/// The wire form of a saved draft version.
pub(crate) fn to_draft_version(row: DraftVersionRow) -> pb::DraftVersion {
    pb::DraftVersion {
        draft_version: row.draft_version,
        content: Some(to_content(row.content)),
        saved_at: Some(to_timestamp(row.saved_at)),
    }
}

/// The wire form of a language.
pub(crate) fn to_language(language: Language) -> pb::Language {
    match language {
        Language::Ja => pb::Language::Ja,
        Language::En => pb::Language::En,
    }
}

/// The wire form of a posting as the view holds it.
pub(crate) fn to_posting(row: PostingRow) -> pb::Posting {
    let language = to_language(row.language);
    pb::Posting {
        posting_id: row.posting_id.to_string(),
        organisation_id: row.organisation_id.to_string(),
        status: to_status_code(row.status).into(),
        language: language.into(),
        content: Some(to_content(row.content)),
        draft_version: row.draft_version,
        version: row.version,
        publishes_at: row.publishes_at.map(to_timestamp),
        published_at: row.published_at.map(to_timestamp),
        withdrawal_effective_at: row.withdrawal_effective_at.map(to_timestamp),
        withdrawn_at: row.withdrawn_at.map(to_timestamp),
        return_reasons: row.return_reasons,
        created_at: Some(to_timestamp(row.created_at)),
        updated_at: Some(to_timestamp(row.updated_at)),
        reused_from: row.reused_from.map(|id| id.to_string()).unwrap_or_default(),
        expires_at: row.expires_at.map(to_timestamp),
        modifiable_until: row.modifiable_until.map(to_timestamp),
        modifications_locked: row.modifications_locked,
        ended_at: row.ended_at.map(to_timestamp),
        review_requested_at: row.review_requested_at.map(to_timestamp),
        modification: row.modification.map(to_modification),
    }
}

pub(crate) fn to_content(content: PostingContent) -> pb::PostingContent {
    let institution_type = match content.institution_type {
        None => pb::InstitutionType::Unspecified,
        Some(InstitutionType::University) => pb::InstitutionType::University,
        Some(InstitutionType::PublicResearchInstitute) => {
            pb::InstitutionType::PublicResearchInstitute
        }
        Some(InstitutionType::Company) => pb::InstitutionType::Company,
        Some(InstitutionType::Other) => pb::InstitutionType::Other,
    };
    let employment_type = match content.employment_type {
        None => pb::EmploymentType::Unspecified,
        Some(EmploymentType::FullTime) => pb::EmploymentType::FullTime,
        Some(EmploymentType::PartTime) => pb::EmploymentType::PartTime,
        Some(EmploymentType::FixedTerm) => pb::EmploymentType::FixedTerm,
        Some(EmploymentType::Other) => pb::EmploymentType::Other,
    };
    pb::PostingContent {
        name: content.name,
        title: content.title,
        description: content.description,
        additional_items: content
            .additional_items
            .into_iter()
            .map(|item| pb::AdditionalItem {
                title: item.title,
                detail: item.detail,
            })
            .collect(),
        employment_terms: content.employment_terms,
        location: content.location,
        institution_type: institution_type.into(),
        recruitment_period: content
            .recruitment_period
            .map(|period| pb::RecruitmentPeriod {
                start: Some(to_date(period.start)),
                end: Some(to_date(period.end)),
            }),
        referral_period_end: content.referral_period_end.map(to_date),
        web_application: content.web_application,
        direct_application: content.direct_application,
        employment_type: employment_type.into(),
        new_graduate: content.new_graduate,
    }
}

/// The wire form of a command's outcome.
pub(crate) fn to_command_result(outcome: &CommandOutcome) -> pb::CommandResult {
    pb::CommandResult {
        stream_id: outcome.stream_id.clone(),
        version: outcome.version,
        position: Some(to_log_position(outcome.checkpoint)),
        duplicate: outcome.duplicate,
    }
}

/// The call's deadline from its `grpc-timeout` metadata, if it has a valid one.
///
/// The format is at most eight digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), as in the gRPC
/// over HTTP/2 protocol; anything else counts as no deadline, as the transport treats it.
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// A protobuf timestamp for `at`.
pub(crate) fn to_timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        // Below 2e9 even during a leap second, so it always fits; the fallback is unreachable.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
    }
}

/// The instant of a protobuf timestamp; INVALID_ARGUMENT naming `field` if it is out of range.
pub(crate) fn from_timestamp(field: &str, at: &Timestamp) -> Result<DateTime<Utc>, Failure> {
    u32::try_from(at.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(at.seconds, nanos))
        .ok_or_else(|| Failure::invalid_field(field, "is not a valid timestamp"))
}

/// The log position of a checkpoint.
pub(crate) fn to_log_position(checkpoint: Checkpoint) -> pb::LogPosition {
    pb::LogPosition {
        tx_id: checkpoint.tx,
        position: checkpoint.position,
    }
}

/// The checkpoint a request's optional position names; unset means the start of the log.
pub(crate) fn from_log_position(position: Option<&pb::LogPosition>) -> Checkpoint {
    position.map_or(Checkpoint::START, |p| Checkpoint {
        tx: p.tx_id,
        position: p.position,
    })
}

/// The wire form of a recorded event.
pub(crate) fn to_event(event: RecordedEvent) -> pb::Event {
    let checkpoint = event.checkpoint();
    let command = event.metadata.command;
    pb::Event {
        position: Some(to_log_position(checkpoint)),
        stream_id: event.stream_id,
        version: event.version,
        event_type: event.event_type,
        schema_version: event.schema_version,
        // `Value`'s Display is compact JSON.
        payload_json: event.payload.to_string(),
        metadata: Some(pb::EventMetadata {
            event_id: event.metadata.event_id.to_string(),
            command_id: command.command_id.unwrap_or_default(),
            correlation_id: command.correlation_id.unwrap_or_default(),
            causation_id: command.causation_id.unwrap_or_default(),
            actor: command.actor.unwrap_or_default(),
            organisation: command.organisation.unwrap_or_default(),
            recorded_at: Some(to_timestamp(event.metadata.recorded_at)),
            extra: command.extra.into_iter().collect(),
        }),
        hash: event.hash.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_bad_ones_name_the_field() {
        let at = DateTime::from_timestamp(1_790_000_000, 123_456_000).unwrap();
        assert_eq!(from_timestamp("as_of", &to_timestamp(at)).unwrap(), at);
        let bad = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        let Failure::InvalidArgument { violations, .. } =
            from_timestamp("as_of", &bad).unwrap_err()
        else {
            panic!("expected INVALID_ARGUMENT");
        };
        assert_eq!(violations[0].field, "as_of");
    }

    fn date(year: i32, month: i32, day: i32) -> pb::Date {
        pb::Date { year, month, day }
    }

    fn fields(violations: Violations) -> Vec<String> {
        match violations.finish() {
            Ok(()) => Vec::new(),
            Err(Failure::InvalidArgument { violations, .. }) => {
                violations.into_iter().map(|v| v.field).collect()
            }
            Err(other) => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_field_of_a_content_is_reported_at_once() {
        let mut violations = Violations::default();
        let content = content(
            Some(pb::PostingContent {
                institution_type: 42,
                recruitment_period: Some(pb::RecruitmentPeriod {
                    start: Some(date(2026, 2, 30)),
                    end: None,
                }),
                referral_period_end: Some(date(2026, 13, 1)),
                ..pb::PostingContent::default()
            }),
            &mut violations,
        );
        language(0, &mut violations);
        posting_id("posting_id", "not-a-uuid", true, &mut violations);
        assert_eq!(content.recruitment_period, None);
        assert_eq!(content.referral_period_end, None);
        assert_eq!(
            fields(violations),
            [
                "content.institution_type",
                "content.recruitment_period.start",
                "content.recruitment_period.end",
                "content.referral_period_end",
                "language",
                "posting_id",
            ]
        );
    }

    #[test]
    fn a_valid_content_converts_both_ways() {
        let wire = pb::PostingContent {
            name: "研究員".into(),
            title: "Postdoc".into(),
            additional_items: vec![pb::AdditionalItem {
                title: "Lab".into(),
                detail: "Kyoto".into(),
            }],
            institution_type: pb::InstitutionType::PublicResearchInstitute.into(),
            recruitment_period: Some(pb::RecruitmentPeriod {
                start: Some(date(2026, 2, 1)),
                end: Some(date(2026, 3, 31)),
            }),
            referral_period_end: Some(date(2024, 2, 29)),
            web_application: true,
            ..pb::PostingContent::default()
        };
        let mut violations = Violations::default();
        let domain = content(Some(wire.clone()), &mut violations);
        assert!(violations.is_empty());
        assert_eq!(to_content(domain), wire);
    }

    #[test]
    fn command_ids_are_checked_at_the_edge_too() {
        let caller = Caller::new("e", jobboard_app::Role::Employer, "org");
        for (id, bad) in [
            ("c-1".to_owned(), false),
            (String::new(), true),
            ("x".repeat(jobboard_app::MAX_COMMAND_ID_CHARS + 1), true),
            ("a\nb".to_owned(), true),
        ] {
            let mut violations = Violations::default();
            let ctx = command_context(&caller, id.clone(), Some(3), &mut violations);
            assert_eq!(ctx.expected_version, Some(3));
            assert_eq!(!violations.is_empty(), bad, "{id:?}");
        }
    }

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_spells_them() {
        let timeout = |text: &str| {
            let mut metadata = MetadataMap::new();
            metadata.insert("grpc-timeout", text.parse().unwrap());
            grpc_timeout(&metadata)
        };
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout("300000u"), Some(Duration::from_millis(300)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "123456789S", "5s", "-5S", "5"] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }

    /// The field paths the domain reports must name fields of the request messages, so clients
    /// can point at the right input. Every path is resolved against the contract's descriptors.
    #[test]
    fn domain_field_paths_are_the_proto_paths() {
        use std::collections::HashMap;

        use prost::Message as _;
        use prost_types::{DescriptorProto, FileDescriptorSet};

        let set = FileDescriptorSet::decode(jobboard_proto::FILE_DESCRIPTOR_SET).unwrap();
        let messages: HashMap<String, DescriptorProto> = set
            .file
            .iter()
            .flat_map(|file| {
                file.message_type
                    .iter()
                    .map(move |m| (format!(".{}.{}", file.package(), m.name()), m.clone()))
            })
            .collect();
        let resolves = |request: &str, path: &str| {
            let mut message = &messages[&format!(".jobboard.v1.{request}")];
            let segments: Vec<_> = path.split('.').collect();
            for (i, segment) in segments.iter().enumerate() {
                let name = segment.split('[').next().unwrap();
                let Some(field) = message.field.iter().find(|f| f.name() == name) else {
                    return false;
                };
                if i + 1 < segments.len() {
                    message = &messages[field.type_name()];
                }
            }
            true
        };

        let long = "x".repeat(30_000);
        let oversized = PostingContent {
            name: long.clone(),
            title: long.clone(),
            description: long.clone(),
            additional_items: vec![
                AdditionalItem {
                    title: long.clone(),
                    detail: long.clone(),
                };
                60
            ],
            employment_terms: long.clone(),
            location: long,
            recruitment_period: Some(RecruitmentPeriod {
                start: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
                end: NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
            }),
            ..PostingContent::default()
        };
        let domain_paths: Vec<String> = oversized
            .submission_violations()
            .into_iter()
            .chain(PostingContent::default().submission_violations())
            .map(|v| v.field)
            .collect();
        assert!(domain_paths.len() > 10, "{domain_paths:?}");
        for path in &domain_paths {
            for request in ["CreateDraftRequest", "SaveDraftRequest"] {
                assert!(resolves(request, path), "{request} has no field {path}");
            }
        }
        // The return reasons (domain) and the fields this module names.
        for (request, path) in [
            ("ReturnPostingRequest", "reasons[0]"),
            ("CreateDraftRequest", "content.recruitment_period.start"),
            ("CreateDraftRequest", "content.referral_period_end"),
            ("CreateDraftRequest", "language"),
            ("CreateDraftRequest", "command_id"),
            ("SaveDraftRequest", "posting_id"),
            ("ApprovePostingRequest", "publish_date"),
            ("ListPostingsRequest", "organisation_id"),
            ("ListPostingsRequest", "status"),
            ("ListPostingsRequest", "page_token"),
        ] {
            assert!(resolves(request, path), "{request} has no field {path}");
        }
    }

    #[test]
    fn an_unset_position_is_the_start_of_the_log() {
        assert_eq!(from_log_position(None), Checkpoint::START);
        let checkpoint = Checkpoint { tx: 7, position: 3 };
        assert_eq!(
            from_log_position(Some(&to_log_position(checkpoint))),
            checkpoint
        );
    }
}
