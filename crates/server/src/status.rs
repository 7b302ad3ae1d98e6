//! The one mapping from errors to gRPC statuses, with google.rpc rich error details.
//!
//! Every layer's error converts into a [`Failure`] (the error model of `common.proto`), and
//! [`to_status`] turns a failure into a `tonic::Status`: the event store's, the command layer's
//! (with the domain's refusals inside it), the projections'. Adding a layer means writing one
//! `From<its::Error> for Failure`; nothing else changes.
//!
//! Database and internal details never reach callers: an internal error answers with an opaque
//! reference, and the full error chain is logged under that reference.

use std::error::Error as StdError;

use jobboard_domain::PostingError;
use jobboard_domain::posting::FieldViolation as DomainViolation;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt as _};
use uuid::Uuid;

/// The `ErrorInfo.domain` of every rule violation.
pub const ERROR_DOMAIN: &str = "jobboard";

/// A failed call, in the terms of the gRPC contract.
#[derive(Debug)]
pub enum Failure {
    /// INVALID_ARGUMENT: the request is malformed; one violation per bad field, named by its
    /// proto path.
    InvalidArgument {
        /// A summary for humans.
        message: String,
        /// The bad fields.
        violations: Vec<FieldViolation>,
    },
    /// FAILED_PRECONDITION: a business rule forbids the call in the current state.
    FailedPrecondition {
        /// The rule id from DOMAIN.md, e.g. `R-POST-3`; becomes `ErrorInfo.reason`.
        rule: String,
        /// A summary for humans.
        message: String,
        /// What exactly failed, if the rule concerns particular fields or subjects.
        violations: Vec<PreconditionViolation>,
    },
    /// FAILED_PRECONDITION that is not a business rule (the state of the service, such as a
    /// projection that cannot be rebuilt): `reason` becomes `ErrorInfo.reason`, the message is
    /// left as it is.
    Precondition {
        /// A stable, upper-case reason, e.g. `PROJECTION_SUPERSEDED`.
        reason: &'static str,
        /// A summary for humans.
        message: String,
    },
    /// NOT_FOUND: the entity does not exist or the caller may not see it.
    NotFound(String),
    /// ALREADY_EXISTS: a create names an id that is taken.
    AlreadyExists(String),
    /// ABORTED: a version conflict; reload and decide again.
    Conflict(String),
    /// PERMISSION_DENIED: the caller is known but may not do this.
    PermissionDenied(String),
    /// UNAUTHENTICATED: no valid credentials.
    Unauthenticated(String),
    /// UNAVAILABLE: a dependency (the database) is down or the service is stopping; retry later.
    /// The source, if any, is logged and not shown.
    Unavailable {
        /// What the caller sees.
        message: String,
        /// The underlying error, for the log.
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// DEADLINE_EXCEEDED: the call's deadline or a bounded wait ran out.
    DeadlineExceeded(String),
    /// INTERNAL: a bug or a broken invariant. The caller sees only a reference.
    Internal(Box<dyn StdError + Send + Sync>),
}

impl Failure {
    /// INVALID_ARGUMENT for one field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let violation = FieldViolation::new(field, description);
        Self::InvalidArgument {
            message: format!("invalid {}: {}", violation.field, violation.description),
            violations: vec![violation],
        }
    }

    /// UNAVAILABLE with nothing to log (the service is stopping, say).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// FAILED_PRECONDITION for a rule, without field details.
    pub fn rule(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            rule: rule.into(),
            message: message.into(),
            violations: Vec::new(),
        }
    }
}

/// Turns any error of the service's layers into the status the caller receives.
pub fn to_status(error: impl Into<Failure>) -> Status {
    match error.into() {
        Failure::InvalidArgument {
            message,
            violations,
        } => Status::with_error_details(
            Code::InvalidArgument,
            message,
            ErrorDetails::with_bad_request(violations),
        ),
        Failure::FailedPrecondition {
            rule,
            message,
            violations,
        } => {
            // The rule id leads the message too, for people reading a log or a CLI client
            // that does not decode the details.
            let message = format!("{rule}: {message}");
            let mut details =
                ErrorDetails::with_error_info(rule, ERROR_DOMAIN, std::collections::HashMap::new());
            if !violations.is_empty() {
                details.set_precondition_failure(violations);
            }
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        Failure::Precondition { reason, message } => Status::with_error_details(
            Code::FailedPrecondition,
            message,
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new()),
        ),
        Failure::NotFound(message) => Status::not_found(message),
        Failure::AlreadyExists(message) => Status::already_exists(message),
        Failure::Conflict(message) => Status::aborted(message),
        Failure::PermissionDenied(message) => Status::permission_denied(message),
        Failure::Unauthenticated(message) => Status::unauthenticated(message),
        Failure::Unavailable { message, source } => {
            if let Some(source) = source {
                tracing::warn!(error = %chain(source.as_ref()), "answering UNAVAILABLE");
            }
            Status::unavailable(message)
        }
        Failure::DeadlineExceeded(message) => Status::deadline_exceeded(message),
        Failure::Internal(source) => {
            let reference = Uuid::new_v4();
            tracing::error!(%reference, error = %chain(source.as_ref()), "internal error");
            Status::internal(format!("internal error; reference {reference}"))
        }
    }
}

/// The error and all its sources, `outer: inner: innermost`.
pub(crate) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<jobboard_eventstore::Error> for Failure {
    fn from(error: jobboard_eventstore::Error) -> Self {
        use jobboard_eventstore::Error as E;
        match error {
            E::Conflict { .. } => Self::Conflict(error.to_string()),
            // The store's own bounded retries gave up; to the caller that is a conflict to
            // reload and retry, which is what ABORTED means in the contract.
            E::Contended { .. } => Self::Conflict(error.to_string()),
            E::InvalidStreamId { reason, .. } => Self::invalid_field("stream_id", reason),
            E::EmptyAppend => Self::invalid_field("events", "must hold at least one event"),
            E::PayloadTooLarge { index, size, limit } => Self::invalid_field(
                format!("events[{index}].payload"),
                format!("is {size} bytes, over the limit of {limit}"),
            ),
            E::InvalidEvent { index, reason } => {
                Self::invalid_field(format!("events[{index}]"), reason)
            }
            // The other stream's id is not the caller's business.
            E::CommandIdReused { .. } => Self::invalid_field(
                "command_id",
                "was already used for a different stream; choose a new command id",
            ),
            E::SubjectErased { .. } => Self::FailedPrecondition {
                rule: "R-RET-1".into(),
                message: "the data subject was erased; no new personal data can be stored for it"
                    .into(),
                violations: vec![PreconditionViolation::new(
                    "ERASED",
                    "data subject",
                    "the subject's personal data was erased",
                )],
            },
            E::Closed => Self::Unavailable {
                message: "the service is shutting down; retry on another instance".into(),
                source: None,
            },
            error if error.is_unavailable() => Self::Unavailable {
                message: "the event store is unavailable; retry later".into(),
                source: Some(Box::new(error)),
            },
            error => Self::Internal(Box::new(error)),
        }
    }
}

impl From<jobboard_app::Error> for Failure {
    fn from(error: jobboard_app::Error) -> Self {
        use jobboard_app::Error as E;
        match error {
            E::Invalid(violations) => invalid_arguments(&violations),
            E::Domain(refusal) => refusal.into(),
            E::PermissionDenied(message) => Self::PermissionDenied(message),
            // The message says which version was expected and which was found: what the client
            // needs to reload and decide again.
            conflict @ E::Conflict { .. } => Self::Conflict(conflict.to_string()),
            E::CommandIdReused => Self::invalid_field(
                "command_id",
                "was already used for another command; choose a new command id",
            ),
            E::Unavailable(jobboard_eventstore::Error::Closed) => Self::Unavailable {
                message: "the service is shutting down; retry with the same command id".into(),
                source: None,
            },
            E::Unavailable(source) => Self::Unavailable {
                message: "the event store is unavailable; retry later with the same command id"
                    .into(),
                source: Some(Box::new(source)),
            },
            internal @ E::Internal { .. } => Self::Internal(Box::new(internal)),
        }
    }
}

impl From<PostingError> for Failure {
    fn from(error: PostingError) -> Self {
        match error {
            PostingError::InvalidContent(violations) => invalid_arguments(&violations),
            // R-POST-3: the request was well formed; the saved draft is what lacks the fields,
            // so each gap is a precondition, not a bad field of this request.
            PostingError::Incomplete(gaps) => Self::FailedPrecondition {
                rule: "R-POST-3".into(),
                message: format!(
                    "the saved draft is incomplete for a registration request: {}",
                    join(&gaps)
                ),
                violations: gaps
                    .iter()
                    .map(|gap| PreconditionViolation::new(INCOMPLETE, &gap.field, &gap.description))
                    .collect(),
            },
            PostingError::Rule { rule, message } => Self::rule(rule, message),
            not_found @ PostingError::NotFound => Self::NotFound(not_found.to_string()),
            exists @ PostingError::AlreadyExists => Self::AlreadyExists(exists.to_string()),
        }
    }
}

impl From<jobboard_projections::Error> for Failure {
    fn from(error: jobboard_projections::Error) -> Self {
        use jobboard_projections::Error as E;
        match error {
            E::Timeout {
                wanted,
                reached,
                timeout,
                ..
            } => Self::DeadlineExceeded(format!(
                "the view did not reach position {wanted} within {timeout:?} (it is at \
                 {reached}); retry later"
            )),
            E::InvalidPageToken => Self::invalid_field(
                "page_token",
                "is not a next_page_token of this list; start again with an empty token",
            ),
            error @ E::NotRebuildable(_) => Self::Precondition {
                reason: NOT_REBUILDABLE,
                message: error.to_string(),
            },
            error @ E::Superseded { .. } => Self::Precondition {
                reason: SUPERSEDED,
                message: error.to_string(),
            },
            E::Stopped => Self::Unavailable {
                message: "the service is shutting down; retry on another instance".into(),
                source: None,
            },
            error if error.is_unavailable() => Self::Unavailable {
                message: "the read model is unavailable; retry later".into(),
                source: Some(Box::new(error)),
            },
            // An unknown projector is the server's own bug; the rest are database failures or
            // broken rows, whose details belong in the log only.
            error => Self::Internal(Box::new(error)),
        }
    }
}

/// The `PreconditionFailure` type of a field a registration request needs (R-POST-3).
pub const INCOMPLETE: &str = "INCOMPLETE";

/// The `ErrorInfo.reason` of a rebuild refused because the projector cannot build beside itself.
pub const NOT_REBUILDABLE: &str = "PROJECTION_NOT_REBUILDABLE";
/// The `ErrorInfo.reason` of a rebuild refused because a newer version serves.
pub const SUPERSEDED: &str = "PROJECTION_SUPERSEDED";

/// INVALID_ARGUMENT listing every violation; the domain's field paths are the proto's (a test
/// in `convert` checks them against the contract's descriptors).
fn invalid_arguments(violations: &[DomainViolation]) -> Failure {
    Failure::InvalidArgument {
        message: format!("invalid request: {}", join(violations)),
        violations: violations
            .iter()
            .map(|v| FieldViolation::new(&v.field, &v.description))
            .collect(),
    }
}

fn join(violations: &[DomainViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use jobboard_eventstore::{Error as StoreError, ExpectedVersion};

    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status = to_status(Failure::invalid_field(
            "content.recruitment_period.end",
            "must not be before the start",
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad_request = status
            .get_details_bad_request()
            .expect("BadRequest details");
        assert_eq!(
            bad_request.field_violations[0].field,
            "content.recruitment_period.end"
        );
        assert_eq!(
            bad_request.field_violations[0].description,
            "must not be before the start"
        );
    }

    #[test]
    fn failed_precondition_carries_the_rule_id() {
        let status = to_status(Failure::rule(
            "R-POST-3",
            "only the operator can approve a posting",
        ));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status.get_details_error_info().expect("ErrorInfo details");
        assert_eq!(info.reason, "R-POST-3");
        assert_eq!(info.domain, "jobboard");
        assert!(status.get_details_precondition_failure().is_none());
    }

    #[test]
    fn failed_precondition_with_fields_adds_precondition_violations() {
        let status = to_status(StoreError::SubjectErased {
            subject: "seeker-1".into(),
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.get_details_error_info().unwrap().reason, "R-RET-1");
        let failure = status.get_details_precondition_failure().unwrap();
        assert_eq!(failure.violations[0].r#type, "ERASED");
        assert!(!status.message().contains("seeker-1"));
    }

    #[test]
    fn simple_codes() {
        let cases = [
            (Failure::NotFound("no such stream".into()), Code::NotFound),
            (Failure::AlreadyExists("taken".into()), Code::AlreadyExists),
            (Failure::Conflict("conflict".into()), Code::Aborted),
            (
                Failure::PermissionDenied("no".into()),
                Code::PermissionDenied,
            ),
            (
                Failure::Unauthenticated("who".into()),
                Code::Unauthenticated,
            ),
            (
                Failure::DeadlineExceeded("too slow".into()),
                Code::DeadlineExceeded,
            ),
        ];
        for (failure, code) in cases {
            assert_eq!(to_status(failure).code(), code);
        }
    }

    #[test]
    fn store_conflicts_are_aborted() {
        let status = to_status(StoreError::Conflict {
            stream: "posting-1".into(),
            expected: ExpectedVersion::Exact(3),
            actual: 4,
        });
        assert_eq!(status.code(), Code::Aborted);
        let status = to_status(StoreError::Contended {
            stream: "posting-1".into(),
        });
        assert_eq!(status.code(), Code::Aborted);
    }

    #[test]
    fn store_validation_errors_name_the_field() {
        let status = to_status(StoreError::InvalidStreamId {
            id: "has space".into(),
            reason: "may hold only letters, digits and - _ . : @",
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            "stream_id"
        );
        let status = to_status(StoreError::CommandIdReused {
            command_id: "c-1".into(),
            first_stream: "posting-secret".into(),
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(!status.message().contains("posting-secret"));
    }

    #[test]
    fn an_unreachable_database_is_unavailable_without_details() {
        let status = to_status(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().to_lowercase().contains("pool"));
        assert_eq!(to_status(StoreError::Closed).code(), Code::Unavailable);
    }

    #[test]
    fn internal_errors_answer_with_a_reference_only() {
        let status = to_status(StoreError::Database(sqlx::Error::Protocol(
            "relation events does not exist".into(),
        )));
        assert_eq!(status.code(), Code::Internal);
        let reference = status
            .message()
            .strip_prefix("internal error; reference ")
            .expect("opaque message");
        assert!(Uuid::parse_str(reference).is_ok(), "{}", status.message());
        assert!(!status.message().contains("relation"));
        let status = to_status(StoreError::Corrupted {
            position: 9,
            reason: "bad json".into(),
        });
        assert_eq!(status.code(), Code::Internal);
    }

    fn violation(field: &str, description: &str) -> DomainViolation {
        DomainViolation {
            field: field.into(),
            description: description.into(),
        }
    }

    #[test]
    fn invalid_content_lists_every_field() {
        let status = to_status(jobboard_app::Error::Domain(PostingError::InvalidContent(
            vec![
                violation("content.name", "must not be blank"),
                violation("content.title", "must not be blank"),
            ],
        )));
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<_> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["content.name", "content.title"]);
        let status = to_status(jobboard_app::Error::invalid("posting_id", "must be set"));
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[test]
    fn an_incomplete_draft_fails_r_post_3_with_every_gap() {
        // R-POST-3: a registration request needs a complete posting.
        let status = to_status(jobboard_app::Error::Domain(PostingError::Incomplete(vec![
            violation("content.description", "must not be blank"),
            violation("content.location", "must not be blank"),
        ])));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.get_details_error_info().unwrap().reason, "R-POST-3");
        let gaps = status
            .get_details_precondition_failure()
            .unwrap()
            .violations;
        assert_eq!(gaps.len(), 2);
        assert_eq!(gaps[0].r#type, INCOMPLETE);
        assert_eq!(gaps[0].subject, "content.description");
    }

    #[test]
    fn rule_refusals_carry_their_rule_id() {
        // R-POST-4: a publish date in the past.
        let status = to_status(PostingError::Rule {
            rule: "R-POST-4",
            message: "publish date 2026-01-01 is before today".into(),
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.get_details_error_info().unwrap().reason, "R-POST-4");
        assert_eq!(
            status.message(),
            "R-POST-4: publish date 2026-01-01 is before today"
        );
    }

    #[test]
    fn command_layer_errors_map_to_their_codes() {
        use jobboard_app::Error as E;
        let cases = [
            (E::Domain(PostingError::NotFound), Code::NotFound),
            (E::Domain(PostingError::AlreadyExists), Code::AlreadyExists),
            (
                E::PermissionDenied("not yours".into()),
                Code::PermissionDenied,
            ),
            (E::CommandIdReused, Code::InvalidArgument),
            (E::Unavailable(StoreError::Closed), Code::Unavailable),
            (
                E::Unavailable(StoreError::Database(sqlx::Error::PoolTimedOut)),
                Code::Unavailable,
            ),
            (
                E::internal("a stored event does not decode"),
                Code::Internal,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(to_status(error).code(), code);
        }
        let status = to_status(E::CommandIdReused);
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            "command_id"
        );
        let status = to_status(E::internal("posting-1 jumps from version 2 to 4"));
        assert!(
            !status.message().contains("posting-1"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_conflict_is_aborted_and_says_expected_and_actual() {
        let status = to_status(jobboard_app::Error::Conflict {
            expected: 3,
            actual: 4,
        });
        assert_eq!(status.code(), Code::Aborted);
        assert!(
            status.message().contains("expected version 3"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("at version 4"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn projection_errors_map_to_their_codes() {
        use jobboard_projections::Error as E;
        let status = to_status(E::Timeout {
            projector: "postings".into(),
            wanted: jobboard_eventstore::Checkpoint { tx: 9, position: 9 },
            reached: jobboard_eventstore::Checkpoint { tx: 8, position: 8 },
            timeout: std::time::Duration::from_secs(5),
        });
        assert_eq!(status.code(), Code::DeadlineExceeded);
        let status = to_status(E::InvalidPageToken);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            "page_token"
        );
        assert_eq!(to_status(E::Stopped).code(), Code::Unavailable);
        let status = to_status(E::Database(sqlx::Error::Protocol("no such table".into())));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("table"));
    }

    #[test]
    fn the_chain_lists_every_source() {
        let error = StoreError::Database(sqlx::Error::Protocol("boom".into()));
        assert_eq!(
            chain(&error),
            "database error: encountered unexpected or invalid data: boom"
        );
    }
}
