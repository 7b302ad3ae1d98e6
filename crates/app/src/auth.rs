//! Who is calling and what a command carries besides its payload: the caller's role and
//! organisation, the client's command id, expected version and tracing ids.
//!
//! The server authenticates the bearer token and builds a [`Caller`] from its claims; this crate
//! trusts that caller and decides what it may do (see the table in `postings.rs`).

use std::fmt;
use std::str::FromStr;

/// What kind of user a caller is, as the bearer token says (DESIGN.md, "gRPC conventions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Staff of an employer organisation: owns postings (DOMAIN.md, "Actors").
    Employer,
    /// A recruiting agency invited by employers.
    Agency,
    /// The operator (事務局): reviews postings.
    Operator,
    /// Another service or the service itself (the timer): sends the timed commands.
    Service,
    /// Replays history; never writes.
    Auditor,
    /// Runs the service; never writes business data.
    Ops,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Employer,
        Self::Agency,
        Self::Operator,
        Self::Service,
        Self::Auditor,
        Self::Ops,
    ];

    /// The stable lowercase name, as in tokens and event metadata: `employer`, `operator`, …
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Employer => "employer",
            Self::Agency => "agency",
            Self::Operator => "operator",
            Self::Service => "service",
            Self::Auditor => "auditor",
            Self::Ops => "ops",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses the lowercase name that [`Role::as_str`] gives; anything else is refused, so a
    /// token with a misspelt role grants nothing.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A role name that [`Role::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

/// The authenticated caller of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's subject; recorded as the events' actor.
    pub subject: String,
    /// What the caller may do.
    pub role: Role,
    /// The caller's organisation. For employers it is their organisation id (a UUID), which
    /// scopes their postings and their command ids.
    pub organisation: String,
}

impl Caller {
    /// A caller with these claims.
    pub fn new(subject: impl Into<String>, role: Role, organisation: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            role,
            organisation: organisation.into(),
        }
    }
}

/// Everything about a command that is not its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandContext {
    /// Who sends it.
    pub caller: Caller,
    /// The client-chosen id that makes the command idempotent: 1 to 200 characters, no control
    /// characters. A retry with the same id answers the first outcome and writes nothing.
    pub command_id: String,
    /// The posting version the client based its command on; a different current version is a
    /// conflict (ABORTED) without retry. `None`: decide against whatever is current.
    pub expected_version: Option<u64>,
    /// Ties together the commands of one user action; defaults to the command id.
    pub correlation_id: Option<String>,
    /// What caused this command (an event id, another command id).
    pub causation_id: Option<String>,
}

impl CommandContext {
    /// A context with no expected version, correlation or causation.
    pub fn new(caller: Caller, command_id: impl Into<String>) -> Self {
        Self {
            caller,
            command_id: command_id.into(),
            expected_version: None,
            correlation_id: None,
            causation_id: None,
        }
    }

    /// The same context, expecting the posting at `version`.
    #[must_use]
    pub fn expecting(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_lowercase_names() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            assert_eq!(role.as_str(), role.as_str().to_lowercase());
        }
        assert_eq!(
            "Employer".parse::<Role>(),
            Err(UnknownRole("Employer".into()))
        );
        assert!("".parse::<Role>().is_err());
    }
}
