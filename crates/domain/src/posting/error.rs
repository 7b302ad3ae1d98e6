//! Why the posting aggregate refuses a command.

use super::content::FieldViolation;

/// A refused posting command. Nothing is recorded when a command is refused.
///
/// The application layer maps each variant to one gRPC status (DESIGN.md): `InvalidContent` to
/// INVALID_ARGUMENT with the field violations, `Incomplete` and `Rule` to FAILED_PRECONDITION with
/// [`rule_id`](Self::rule_id) as the reason, `NotFound` to NOT_FOUND and `AlreadyExists` to
/// ALREADY_EXISTS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostingError {
    /// The command's content or arguments break a validation rule; every violation is listed.
    #[error("invalid content: {}", join(.0))]
    InvalidContent(Vec<FieldViolation>),
    /// The saved draft lacks what a registration request needs (R-POST-3); every gap is listed.
    /// The request itself was well formed: it is the posting's state that refuses it.
    #[error("R-POST-3: the draft is incomplete: {}", join(.0))]
    Incomplete(Vec<FieldViolation>),
    /// The command is not allowed now by rule `rule` of DOMAIN.md (for example `R-POST-3`): in
    /// this state, or at this time.
    #[error("{rule}: {message}")]
    Rule {
        /// The rule's id in DOMAIN.md, e.g. `R-POST-4`.
        rule: &'static str,
        /// What is refused and why, lowercase, without a trailing period.
        message: String,
    },
    /// The posting does not exist: no draft was ever created with this id.
    #[error("posting not found")]
    NotFound,
    /// `CreateDraft` named a posting that already exists.
    #[error("posting already exists")]
    AlreadyExists,
}

impl PostingError {
    /// The id of the rule that refused the command, for `Rule` errors.
    pub fn rule_id(&self) -> Option<&'static str> {
        match self {
            Self::Rule { rule, .. } => Some(rule),
            Self::Incomplete(_) => Some("R-POST-3"),
            _ => None,
        }
    }

    /// The field violations, for `InvalidContent` and `Incomplete` errors (empty otherwise).
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Self::InvalidContent(violations) | Self::Incomplete(violations) => violations,
            _ => &[],
        }
    }

    /// A refusal by rule `rule`.
    pub(crate) fn rule(rule: &'static str, message: impl Into<String>) -> Self {
        Self::Rule {
            rule,
            message: message.into(),
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
