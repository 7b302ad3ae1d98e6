//! The command layer's one error type, and how event-store errors become it.

use jobboard_domain::PostingError;
use jobboard_domain::posting::FieldViolation;

/// Boxed source of an internal error.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a command was not carried out. Nothing was written, except for [`Error::Unavailable`] and
/// [`Error::Internal`] after an append was sent, where the client cannot know and retries with the
/// same command id (which is safe: a committed command id is answered, never appended twice).
///
/// The server maps each variant to one gRPC status:
///
/// - `Invalid`: INVALID_ARGUMENT with the field violations.
/// - `Domain`: `InvalidContent` INVALID_ARGUMENT with [`Error::violations`]; `Incomplete` and
///   `Rule` FAILED_PRECONDITION with [`Error::rule_id`] as the reason; `NotFound` NOT_FOUND;
///   `AlreadyExists` ALREADY_EXISTS.
/// - `PermissionDenied`: PERMISSION_DENIED.
/// - `Conflict`: ABORTED.
/// - `CommandIdReused`: INVALID_ARGUMENT on the field `command_id`.
/// - `Unavailable`: UNAVAILABLE.
/// - `Internal`: INTERNAL with a generic message; the whole chain goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed (an empty command id, a missing posting id, …); every
    /// problem is listed with its field path (`command_id`, `posting_id`, …).
    #[error("invalid request: {}", join(.0))]
    Invalid(Vec<FieldViolation>),
    /// The posting aggregate refused the command; kept whole so the server can map each kind.
    #[error(transparent)]
    Domain(#[from] PostingError),
    /// The caller may not send this command, or not to this posting. The message never says
    /// anything about a posting the caller may not see.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The posting is not at the version the command was decided against: either the client's
    /// `expected_version` is stale, or concurrent writers won every retry.
    #[error("version conflict: expected version {expected}, the posting is at version {actual}")]
    Conflict {
        /// The version the command expected.
        expected: u64,
        /// The version the posting was found at.
        actual: u64,
    },
    /// The command id was already used for a command on another posting.
    #[error("command id was already used for another command")]
    CommandIdReused,
    /// The event store cannot be reached now; retry later with the same command id.
    #[error("the event store is unavailable")]
    Unavailable(#[source] jobboard_eventstore::Error),
    /// Something that should not happen (a stored event that does not decode, a store error
    /// that is not the caller's); the message is for logs, not for clients.
    #[error("internal error: {context}")]
    Internal {
        /// What was being done, lowercase.
        context: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// A request problem with one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// An internal error with no underlying cause.
    pub fn internal(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// An internal error caused by `source`.
    pub fn internal_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The DOMAIN.md rule that refused the command (`R-POST-3`, …), for FAILED_PRECONDITION.
    pub fn rule_id(&self) -> Option<&'static str> {
        match self {
            Self::Domain(error) => error.rule_id(),
            _ => None,
        }
    }

    /// The field violations of `Invalid` and of the domain's `InvalidContent` and `Incomplete`
    /// (empty otherwise).
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Self::Invalid(violations) => violations,
            Self::Domain(error) => error.violations(),
            _ => &[],
        }
    }

    /// Maps an event-store error that is not a conflict handled by the caller: unreachable
    /// database → `Unavailable`; reused command id → `CommandIdReused`; an oversized payload is
    /// the client's content → `Invalid`; anything else is internal.
    pub(crate) fn store(error: jobboard_eventstore::Error, context: &str) -> Self {
        use jobboard_eventstore::Error as E;
        match error {
            e if e.is_unavailable() => Self::Unavailable(e),
            E::CommandIdReused { .. } => Self::CommandIdReused,
            E::PayloadTooLarge { size, limit, .. } => Self::invalid(
                "content",
                format!("is {size} bytes once encoded, over the limit of {limit} bytes"),
            ),
            e => Self::internal_from(context, e),
        }
    }

    /// The `outcome` label of `jobboard_commands_total` for this error.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::Invalid(_)
            | Self::CommandIdReused
            | Self::Domain(PostingError::InvalidContent(_)) => "invalid",
            Self::Domain(_) => "rejected",
            Self::PermissionDenied(_) => "denied",
            Self::Conflict { .. } => "conflict",
            Self::Unavailable(_) | Self::Internal { .. } => "error",
        }
    }
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_rule() {
        let invalid = Error::invalid("command_id", "must not be empty");
        assert_eq!(
            invalid.to_string(),
            "invalid request: command_id: must not be empty"
        );
        let conflict = Error::Conflict {
            expected: 3,
            actual: 4,
        };
        assert_eq!(
            conflict.to_string(),
            "version conflict: expected version 3, the posting is at version 4"
        );
        let incomplete = Error::Domain(PostingError::Incomplete(vec![]));
        // R-POST-3: the reason a client looks up.
        assert_eq!(incomplete.rule_id(), Some("R-POST-3"));
        assert_eq!(incomplete.outcome(), "rejected");
    }

    #[test]
    fn internal_errors_keep_their_source_for_the_log() {
        let error = Error::internal_from("reading posting-1", std::fmt::Error);
        assert_eq!(error.to_string(), "internal error: reading posting-1");
        assert!(std::error::Error::source(&error).is_some());
    }
}
