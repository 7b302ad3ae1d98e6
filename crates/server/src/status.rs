//! The one mapping from errors to gRPC statuses, with google.rpc rich error details.
//!
//! Every layer's error converts into a [`Failure`] (the error model of `common.proto`), and
//! [`to_status`] turns a failure into a `tonic::Status`. Adding a layer (the command layer, the
//! domain) means writing one `From<its::Error> for Failure`; nothing else changes.
//!
//! Database and internal details never reach callers: an internal error answers with an opaque
//! reference, and the full error chain is logged under that reference.

use std::error::Error as StdError;

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
            let mut details =
                ErrorDetails::with_error_info(rule, ERROR_DOMAIN, std::collections::HashMap::new());
            if !violations.is_empty() {
                details.set_precondition_failure(violations);
            }
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
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

    #[test]
    fn the_chain_lists_every_source() {
        let error = StoreError::Database(sqlx::Error::Protocol("boom".into()));
        assert_eq!(
            chain(&error),
            "database error: encountered unexpected or invalid data: boom"
        );
    }
}
