//! Bearer-token authentication: HS256 JWTs carrying the caller's subject, role and organisation.
//!
//! The signing key is configured (`auth.signing_key`, base64) or generated once into the key file
//! (`auth.key_file`, mode 0600). [`Authenticator`] is the tonic interceptor that every jobboard
//! service sits behind: it turns a valid token into the command layer's [`Caller`] in the
//! request's extensions, and anything else into UNAUTHENTICATED. Health and reflection are not
//! behind it.
//!
//! Every token names an organisation (`org`), whatever its role: an employer's is its
//! organisation id, and an operator's office, an agency or an internal service is an
//! organisation too. Commands scope their idempotency keys by it, so a caller without one could
//! not send any.

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
// The command layer's own types, not copies: a verified token is the `Caller` that commands are
// authorised against. Re-exported so that clients of this crate (the CLI, tests) mint tokens
// without depending on `jobboard-app`.
pub use jobboard_app::{Caller, Role};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::config::AuthConfig;
use crate::status::{Failure, to_status};

/// Length of a generated key, and the least a configured key must have (HS256 wants 256 bits).
pub const KEY_LEN: usize = 32;

/// The metadata key carrying the token.
const AUTHORIZATION: &str = "authorization";

/// The authenticated caller of `request`, or UNAUTHENTICATED if no [`Authenticator`] ran.
///
/// Failing closed here means a service accidentally registered without the interceptor refuses
/// every call instead of serving anonymous ones.
pub fn caller_of<T>(request: &tonic::Request<T>) -> Result<&Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| to_status(TokenError::Missing))
}

/// The claims of a jobboard token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject.
    pub sub: String,
    /// The caller's role, as [`Role::as_str`] spells it.
    pub role: String,
    /// The caller's organisation. Optional in the wire format only so that a token without one
    /// is refused with a clear reason rather than as malformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The issuer; must equal `auth.issuer`.
    pub iss: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
}

impl Claims {
    /// Claims for `caller`, issued by `issuer` at `issued_at` and valid for `ttl`.
    pub fn new(caller: &Caller, issuer: &str, issued_at: DateTime<Utc>, ttl: Duration) -> Self {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let expires = issued_at
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self {
            sub: caller.subject.clone(),
            role: caller.role.as_str().to_owned(),
            org: Some(caller.organisation.clone()),
            iss: issuer.to_owned(),
            iat: issued_at.timestamp(),
            exp: expires.timestamp(),
        }
    }
}

/// Why a request's token was refused. The messages name the reason, never the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `authorization` metadata.
    #[error("missing bearer token: send `authorization: Bearer <token>`")]
    Missing,
    /// Not `Bearer <jwt>`, not a JWT, or claims of the wrong shape.
    #[error("malformed bearer token")]
    Malformed,
    /// Signed with another key or algorithm.
    #[error("bad token signature")]
    BadSignature,
    /// Past its `exp`.
    #[error("expired token")]
    Expired,
    /// Issued by someone else.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// A role no jobboard caller has: it grants nothing.
    #[error("token has an unknown role")]
    UnknownRole,
    /// No `org` claim, or an empty one.
    #[error("token has no organisation")]
    NoOrganisation,
}

impl From<TokenError> for Failure {
    fn from(error: TokenError) -> Self {
        Self::Unauthenticated(error.to_string())
    }
}

/// A key that could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `auth.signing_key` is not base64.
    #[error("auth.signing_key is not valid base64")]
    KeyEncoding,
    /// The key file does not hold base64.
    #[error("signing key file {} is not valid base64", .0.display())]
    KeyFileEncoding(PathBuf),
    /// A key shorter than [`KEY_LEN`] bytes.
    #[error("{source_name} holds {len} bytes; a signing key needs at least {KEY_LEN}")]
    KeyTooShort {
        /// `auth.signing_key` or the key file's path.
        source_name: String,
        /// The decoded length.
        len: usize,
    },
    /// The key file could not be read or written.
    #[error("signing key file {}: {source}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// No organisation was given: every caller acts for one.
    #[error("a token needs an organisation (an operator's office or a service is one too)")]
    MissingOrganisation,
    /// The subject is empty.
    #[error("the subject must not be empty")]
    EmptySubject,
    /// The token could not be signed.
    #[error("token could not be signed")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The HS256 key and issuer: signs and verifies tokens. Cheap to clone.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    validation: Arc<Validation>,
    issuer: Arc<str>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from the configuration: `auth.signing_key` if set, else the key file, generated
    /// (32 random bytes, mode 0600) if it does not exist yet.
    pub fn load_or_create(config: &AuthConfig) -> Result<Self, Error> {
        let secret = match &config.signing_key {
            Some(key) => {
                let bytes = BASE64
                    .decode(key.expose().trim())
                    .map_err(|_| Error::KeyEncoding)?;
                check_len(&bytes, "auth.signing_key")?;
                bytes
            }
            None => load_or_create_key_file(&config.key_file)?,
        };
        Ok(Self::from_secret(&secret, &config.issuer))
    }

    /// Keys from raw secret bytes.
    pub fn from_secret(secret: &[u8], issuer: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self {
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            validation: Arc::new(validation),
            issuer: issuer.into(),
        }
    }

    /// The issuer tokens are signed as and checked against.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A token for `caller`, valid for `ttl` from now.
    pub fn issue(&self, caller: &Caller, ttl: Duration) -> Result<String, Error> {
        if caller.subject.is_empty() {
            return Err(Error::EmptySubject);
        }
        if caller.organisation.trim().is_empty() {
            return Err(Error::MissingOrganisation);
        }
        self.sign(&Claims::new(caller, &self.issuer, Utc::now(), ttl))
    }

    /// Signs arbitrary claims (tests use it for expired or foreign tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(Error::Sign)
    }

    /// Checks a token's signature, expiry and issuer, and returns its caller.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    TokenError::BadSignature
                }
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                _ => TokenError::Malformed,
            })?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(TokenError::Malformed);
        }
        let role = claims
            .role
            .parse::<Role>()
            .map_err(|_| TokenError::UnknownRole)?;
        let organisation = claims
            .org
            .filter(|org| !org.trim().is_empty())
            .ok_or(TokenError::NoOrganisation)?;
        Ok(Caller::new(claims.sub, role, organisation))
    }
}

/// The interceptor in front of every jobboard service: requires `authorization: Bearer <jwt>`
/// and puts the [`Caller`] into the request's extensions.
#[derive(Clone, Debug)]
pub struct Authenticator {
    keys: TokenKeys,
}

impl Authenticator {
    /// An interceptor verifying tokens with `keys`.
    pub fn new(keys: TokenKeys) -> Self {
        Self { keys }
    }

    fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, TokenError> {
        let value = metadata.get(AUTHORIZATION).ok_or(TokenError::Missing)?;
        let value = value.to_str().map_err(|_| TokenError::Malformed)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(TokenError::Malformed)?;
        // RFC 7235: the scheme is case-insensitive.
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Malformed);
        }
        self.keys.verify(token.trim())
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        match self.authenticate(request.metadata()) {
            Ok(caller) => {
                tracing::Span::current().record("subject", caller.subject.as_str());
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err(error) => {
                tracing::debug!(%error, "request refused");
                Err(to_status(error))
            }
        }
    }
}

fn check_len(bytes: &[u8], source_name: &str) -> Result<(), Error> {
    if bytes.len() < KEY_LEN {
        return Err(Error::KeyTooShort {
            source_name: source_name.to_owned(),
            len: bytes.len(),
        });
    }
    Ok(())
}

/// Reads the key file, or creates it with a fresh key if it does not exist.
///
/// The key is written to a temporary file first and then hard-linked into place: linking fails
/// if the file appeared meanwhile, so two instances starting at once agree on one key and a
/// reader never sees a half-written file.
fn load_or_create_key_file(path: &Path) -> Result<Vec<u8>, Error> {
    let io_error = |source| Error::KeyFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return decode_key_file(path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error)?;
    }
    let key = random_key().map_err(io_error)?;
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = write_private(&temporary, BASE64.encode(key).as_bytes())
        .and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(io_error)?;
            decode_key_file(path, &text)
        }
        Err(e) => Err(io_error(e)),
    }
}

fn decode_key_file(path: &Path, text: &str) -> Result<Vec<u8>, Error> {
    warn_if_readable_by_others(path);
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| Error::KeyFileEncoding(path.to_owned()))?;
    check_len(&bytes, &path.display().to_string())?;
    Ok(bytes)
}

/// Creates `path` (which must not exist) readable by its owner only, writes `contents` and syncs.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the token signing key file is accessible to other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// 32 bytes from the operating system's CSPRNG.
fn random_key() -> io::Result<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn keys() -> TokenKeys {
        TokenKeys::from_secret(&[7u8; KEY_LEN], "jobboard")
    }

    fn ops() -> Caller {
        Caller::new("alice", Role::Ops, "ops-team")
    }

    #[test]
    fn an_issued_token_verifies_to_its_caller() {
        for caller in [Caller::new("bob", Role::Employer, "org-1"), ops()] {
            let token = keys().issue(&caller, Duration::from_secs(60)).unwrap();
            assert_eq!(keys().verify(&token).unwrap(), caller);
        }
    }

    #[test]
    fn each_bad_token_says_why() {
        let other = TokenKeys::from_secret(&[8u8; KEY_LEN], "jobboard");
        let foreign = TokenKeys::from_secret(&[7u8; KEY_LEN], "someone-else");
        let past = Utc::now() - chrono::Duration::hours(2);
        let expired = keys()
            .sign(&Claims::new(
                &ops(),
                "jobboard",
                past,
                Duration::from_secs(60),
            ))
            .unwrap();
        let cases = [
            ("not-a-jwt".to_owned(), TokenError::Malformed),
            (
                other.issue(&ops(), Duration::from_secs(60)).unwrap(),
                TokenError::BadSignature,
            ),
            (expired, TokenError::Expired),
            (
                foreign.issue(&ops(), Duration::from_secs(60)).unwrap(),
                TokenError::WrongIssuer,
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(keys().verify(&token), Err(expected));
        }
    }

    #[test]
    fn every_token_needs_an_organisation_whatever_its_role() {
        for role in Role::ALL {
            let caller = Caller::new("bob", role, " ");
            assert!(matches!(
                keys().issue(&caller, Duration::from_secs(60)),
                Err(Error::MissingOrganisation)
            ));
            let mut claims = Claims::new(&caller, "jobboard", Utc::now(), Duration::from_secs(60));
            for org in [None, Some(String::new())] {
                claims.org = org;
                let token = keys().sign(&claims).unwrap();
                assert_eq!(keys().verify(&token), Err(TokenError::NoOrganisation));
            }
        }
        assert_eq!(
            to_status(TokenError::NoOrganisation).message(),
            "token has no organisation"
        );
    }

    #[test]
    fn a_token_with_an_unknown_role_grants_nothing() {
        let mut claims = Claims::new(&ops(), "jobboard", Utc::now(), Duration::from_secs(60));
        claims.role = "Ops".into();
        let token = keys().sign(&claims).unwrap();
        assert_eq!(keys().verify(&token), Err(TokenError::UnknownRole));
    }

    #[test]
    fn the_interceptor_reads_bearer_tokens_only() {
        use tonic::service::Interceptor as _;
        let mut auth = Authenticator::new(keys());
        let token = keys().issue(&ops(), Duration::from_secs(60)).unwrap();
        for (header, expected) in [
            (None, Err("missing")),
            (Some(format!("Basic {token}")), Err("malformed")),
            (Some(token.clone()), Err("malformed")),
            (Some(format!("Bearer {token}")), Ok(())),
            (Some(format!("bearer {token}")), Ok(())),
        ] {
            let mut request = tonic::Request::new(());
            if let Some(header) = header {
                request
                    .metadata_mut()
                    .insert(AUTHORIZATION, header.parse().unwrap());
            }
            match (auth.call(request), expected) {
                (Ok(request), Ok(())) => {
                    assert_eq!(caller_of(&request).unwrap(), &ops());
                }
                (Err(status), Err(word)) => {
                    assert_eq!(status.code(), tonic::Code::Unauthenticated);
                    assert!(status.message().contains(word), "{}", status.message());
                    assert!(!status.message().contains(&token));
                }
                (outcome, expected) => panic!("{outcome:?} but expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_generated_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuthConfig {
            signing_key: None,
            key_file: dir.path().join("keys/jwt-signing.key"),
            issuer: "jobboard".into(),
        };
        let first = TokenKeys::load_or_create(&config).unwrap();
        let token = first.issue(&ops(), Duration::from_secs(60)).unwrap();
        let second = TokenKeys::load_or_create(&config).unwrap();
        assert_eq!(second.verify(&token).unwrap(), ops());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&config.key_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.path().join("keys")).unwrap().count();
        assert_eq!(leftovers, 1, "only the key file remains");
    }

    #[test]
    fn configured_keys_must_be_base64_and_long_enough() {
        let config = |key: &str| AuthConfig {
            signing_key: Some(Secret::new(key)),
            key_file: PathBuf::from("/nonexistent/unused.key"),
            issuer: "jobboard".into(),
        };
        assert!(matches!(
            TokenKeys::load_or_create(&config("not base64!")),
            Err(Error::KeyEncoding)
        ));
        let short = BASE64.encode([1u8; 16]);
        let error = TokenKeys::load_or_create(&config(&short)).unwrap_err();
        assert!(matches!(error, Error::KeyTooShort { len: 16, .. }));
        assert!(!error.to_string().contains(&short));
        let good = BASE64.encode([1u8; KEY_LEN]);
        assert!(TokenKeys::load_or_create(&config(&good)).is_ok());
    }
}
