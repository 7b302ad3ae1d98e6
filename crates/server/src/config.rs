//! The service configuration: defaults, then an optional TOML file, then `JOBBOARD_*` environment
//! variables (and `DATABASE_URL`), then command-line flags; parsed into typed values at the edge.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Where the gRPC server listens unless configured otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Where the Prometheus endpoint listens unless configured otherwise.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// The value of `metrics_listen` that turns the metrics endpoint off.
pub const METRICS_OFF: &str = "off";

/// A configuration that could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file named by `--config` does not exist.
    #[error("configuration file {} does not exist", .0.display())]
    MissingFile(PathBuf),
    /// A source could not be read or parsed (figment names the key and the source).
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of its domain. The value is shown only where it is not a secret.
    #[error("invalid configuration value for {field}: {reason}")]
    Invalid {
        /// The configuration key, as written in the TOML file (`auth.issuer`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The validated configuration of one service instance.
#[derive(Clone, Debug)]
pub struct Config {
    /// `listen`: the gRPC address.
    pub listen: SocketAddr,
    /// `metrics_listen`: the Prometheus endpoint's address; `None` (configured as `"off"`) turns it
    /// off.
    pub metrics_listen: Option<SocketAddr>,
    /// `data_dir`: where the embedded database and the generated signing key live; created on
    /// start.
    pub data_dir: PathBuf,
    /// `database_url` (or `DATABASE_URL`): `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// `auth.*`: bearer-token settings.
    pub auth: AuthConfig,
    /// `log_format`: `text` or `json`.
    pub log_format: LogFormat,
    /// `shutdown_grace_secs`: how long in-flight calls may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// `timer_tick_ms`: how often the timers look at the clock for due deadlines (publication,
    /// withdrawal); a deadline fires at most this late.
    pub timer_tick: Duration,
}

/// Bearer-token settings (`auth.*`).
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `auth.signing_key`: the HS256 secret, base64. When unset, the key file is used.
    pub signing_key: Option<Secret>,
    /// `auth.key_file`: where a generated key is kept when no `signing_key` is configured.
    pub key_file: PathBuf,
    /// `auth.issuer`: the `iss` claim tokens carry and must carry.
    pub issuer: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A configured secret: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; callers must keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Values given on the command line; they win over every other source.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen ADDR`.
    pub listen: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Raw::default()
            .validate()
            .expect("the built-in defaults are valid")
    }
}

impl Config {
    /// Loads the configuration: defaults, then `file` (TOML) if given, then `DATABASE_URL`, then
    /// `JOBBOARD_*` variables (nested keys joined by `__`, e.g. `JOBBOARD_AUTH__ISSUER`), then
    /// `overrides`. Does not touch the file system beyond reading `file`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(Raw::default()));
        if let Some(path) = file {
            // `Toml::file` would silently skip a missing file and search parent directories; a
            // file named on the command line must be exactly that file.
            if !path.is_file() {
                return Err(Error::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // The conventional variable first, so the service-specific one wins when both are set.
        figment = figment
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .merge(Env::prefixed("JOBBOARD_").split("__"));
        if let Some(listen) = &overrides.listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        Self::from_figment(&figment)
    }

    /// Extracts and validates a configuration from any figment (tests build their own).
    pub fn from_figment(figment: &Figment) -> Result<Self, Error> {
        let raw: Raw = figment.extract().map_err(Box::new)?;
        raw.validate()
    }

    /// A configuration for a throw-away instance: everything under `data_dir`, gRPC on an
    /// ephemeral port of 127.0.0.1, metrics off.
    pub fn ephemeral(data_dir: &Path) -> Self {
        let mut config = Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: None,
            data_dir: data_dir.to_owned(),
            ..Self::default()
        };
        config.database_url = default_database_url(data_dir);
        config.auth.key_file = default_key_file(data_dir);
        config
    }

    /// The configuration as TOML with secrets redacted, for `jobboard config`.
    pub fn to_redacted_toml(&self) -> String {
        // Hand-written rather than serialised: the layout is fixed and small, and secrets must be
        // replaced field by field anyway.
        let quote = |value: &str| format!("{value:?}");
        let metrics = self
            .metrics_listen
            .map_or_else(|| METRICS_OFF.to_owned(), |a| a.to_string());
        let log_format = match self.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let mut out = format!(
            "listen = {}\nmetrics_listen = {}\ndata_dir = {}\ndatabase_url = {}\n\
             log_format = {}\nshutdown_grace_secs = {}\ntimer_tick_ms = {}\n\n[auth]\n",
            quote(&self.listen.to_string()),
            quote(&metrics),
            quote(&self.data_dir.display().to_string()),
            quote(&redact_url(&self.database_url)),
            quote(log_format),
            self.shutdown_grace.as_secs(),
            self.timer_tick.as_millis(),
        );
        if self.auth.signing_key.is_some() {
            out.push_str("signing_key = \"<redacted>\"\n");
        }
        out.push_str(&format!(
            "key_file = {}\nissuer = {}\n",
            quote(&self.auth.key_file.display().to_string()),
            quote(&self.auth.issuer)
        ));
        out
    }
}

/// The configuration as the sources spell it, before validation.
#[derive(Debug, Serialize, Deserialize)]
struct Raw {
    listen: String,
    metrics_listen: String,
    data_dir: PathBuf,
    database_url: Option<String>,
    auth: RawAuth,
    log_format: String,
    shutdown_grace_secs: u64,
    timer_tick_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RawAuth {
    signing_key: Option<String>,
    key_file: Option<PathBuf>,
    issuer: String,
}

impl Default for Raw {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            metrics_listen: DEFAULT_METRICS_LISTEN.into(),
            data_dir: PathBuf::from("data"),
            // Derived from the final `data_dir` during validation.
            database_url: None,
            auth: RawAuth {
                signing_key: None,
                key_file: None,
                issuer: "jobboard".into(),
            },
            log_format: "text".into(),
            shutdown_grace_secs: 10,
            timer_tick_ms: 1000,
        }
    }
}

impl Raw {
    fn validate(self) -> Result<Config, Error> {
        let listen = parse_addr("listen", &self.listen)?;
        let metrics_listen = match self.metrics_listen.trim() {
            "" | METRICS_OFF => None,
            addr => Some(parse_addr("metrics_listen", addr)?),
        };
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let database_url = match self.database_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                let url = url.trim().to_owned();
                if !["sqlite:", "postgres:", "postgresql:"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme))
                {
                    return Err(invalid(
                        "database_url",
                        format!(
                            "must start with sqlite:, postgres: or postgresql:, got {:?}",
                            redact_url(&url)
                        ),
                    ));
                }
                url
            }
            None => default_database_url(&self.data_dir),
        };
        // Only the presence of a key is checked here: its encoding is checked where it is
        // decoded, which never echoes it.
        let signing_key = self
            .auth
            .signing_key
            .filter(|k| !k.trim().is_empty())
            .map(|k| Secret::new(k.trim()));
        let key_file = self
            .auth
            .key_file
            .unwrap_or_else(|| default_key_file(&self.data_dir));
        let issuer = self.auth.issuer.trim().to_owned();
        if issuer.is_empty() {
            return Err(invalid("auth.issuer", "must not be empty"));
        }
        let log_format = match self.log_format.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("must be text or json, got {other:?}"),
                ));
            }
        };
        if self.timer_tick_ms == 0 {
            return Err(invalid("timer_tick_ms", "must be at least 1"));
        }
        Ok(Config {
            listen,
            metrics_listen,
            data_dir: self.data_dir,
            database_url,
            auth: AuthConfig {
                signing_key,
                key_file,
                issuer,
            },
            log_format,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            timer_tick: Duration::from_millis(self.timer_tick_ms),
        })
    }
}

fn parse_addr(field: &'static str, value: &str) -> Result<SocketAddr, Error> {
    value.trim().parse().map_err(|_| {
        invalid(
            field,
            format!("{value:?} is not an IP address with a port, like 127.0.0.1:50051"),
        )
    })
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        reason: reason.into(),
    }
}

fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("jobboard.db").display())
}

fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("jwt-signing.key")
}

/// The URL with any password replaced, so it can be logged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:<redacted>@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(toml: &str) -> Result<Config, Error> {
        Config::from_figment(
            &Figment::from(Serialized::defaults(Raw::default())).merge(Toml::string(toml)),
        )
    }

    #[test]
    fn defaults_serve_sqlite_under_data_on_localhost() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(
            config.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.database_url, "sqlite://data/jobboard.db");
        assert_eq!(config.auth.key_file, PathBuf::from("data/jwt-signing.key"));
        assert_eq!(config.auth.issuer, "jobboard");
        assert!(config.auth.signing_key.is_none());
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.timer_tick, Duration::from_secs(1));
    }

    #[test]
    fn file_values_override_defaults_and_derive_paths_from_data_dir() {
        let config = from_toml(
            r#"
            data_dir = "/var/lib/jobboard"
            metrics_listen = "off"
            log_format = "json"
            [auth]
            issuer = "jobboard-test"
            "#,
        )
        .unwrap();
        assert_eq!(
            config.database_url,
            "sqlite:///var/lib/jobboard/jobboard.db"
        );
        assert_eq!(
            config.auth.key_file,
            PathBuf::from("/var/lib/jobboard/jwt-signing.key")
        );
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.auth.issuer, "jobboard-test");
    }

    #[test]
    fn a_bad_address_names_the_field() {
        let error = from_toml(r#"listen = "localhost""#).unwrap_err();
        assert!(error.to_string().contains("listen"), "{error}");
        let error = from_toml(r#"metrics_listen = "9464""#).unwrap_err();
        assert!(error.to_string().contains("metrics_listen"), "{error}");
    }

    #[test]
    fn bad_values_name_their_fields() {
        for (toml, field) in [
            (r#"log_format = "xml""#, "log_format"),
            (r#"database_url = "mysql://x""#, "database_url"),
            ("[auth]\nissuer = \"\"", "auth.issuer"),
            ("timer_tick_ms = 0", "timer_tick_ms"),
        ] {
            let error = from_toml(toml).unwrap_err();
            assert!(error.to_string().contains(field), "{toml}: {error}");
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let error = Config::load(
            Some(Path::new("/nonexistent/jobboard.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(error, Error::MissingFile(_)), "{error}");
    }

    #[test]
    fn secrets_never_print() {
        let config = from_toml("[auth]\nsigning_key = \"c2VjcmV0LXNlY3JldA==\"").unwrap();
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
        assert!(!config.to_redacted_toml().contains("c2VjcmV0"));
        let url = "postgres://app:hunter2@db.internal:5432/jobboard";
        assert_eq!(
            redact_url(url),
            "postgres://app:<redacted>@db.internal:5432/jobboard"
        );
        assert_eq!(
            redact_url("sqlite://data/jobboard.db"),
            "sqlite://data/jobboard.db"
        );
    }

    #[test]
    fn redacted_toml_reads_back_as_the_same_configuration() {
        let config =
            from_toml("listen = \"0.0.0.0:6000\"\nmetrics_listen = \"off\"\ntimer_tick_ms = 250")
                .unwrap();
        let again = from_toml(&config.to_redacted_toml()).unwrap();
        assert_eq!(again.timer_tick, Duration::from_millis(250));
        assert_eq!(again.listen, config.listen);
        assert_eq!(again.metrics_listen, None);
        assert_eq!(again.database_url, config.database_url);
        assert_eq!(again.auth.key_file, config.auth.key_file);
    }
}
