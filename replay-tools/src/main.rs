//! `jobboard-replay`: the auditors' and operators' view of the event log, read straight from the
//! database (the service need not run, and may run at the same time).
//!
//! Each subcommand is one module: `status` (projection lag), `rebuild` (projections, blue/green),
//! `history` (a stream's events),
//! `state` (an aggregate folded by the domain's own code as of a time or position), `verify` (the
//! hash chains) and `export` (a slice of the log as JSON lines). They share the database opening
//! (`db`), the log reader (`log`), the JSON shape of an event (`render`) and the handling of
//! erased personal data (`personal`). A new subcommand is one more variant of [`Command`] and one
//! more module.

mod db;
mod export;
mod history;
mod log;
mod personal;
mod rebuild;
mod render;
mod state;
mod status;
mod verify;

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use jobboard_eventstore::StreamId;

/// mimalloc, not glibc's malloc: the runtime hands events from reading to preparing to writing
/// tasks, and glibc frees memory allocated on another thread slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit codes, as `--help` documents them.
const AFTER_HELP: &str = "\
Exit status:
  0  done (for `verify`: every hash chain holds)
  1  error: bad arguments, database unreachable, undecodable data
  2  `verify` found a broken hash chain: the log was altered

Times are RFC 3339, e.g. 2026-01-31T22:00:00+09:00 or 2026-01-31T13:00:00Z.
Erased personal data reads as erased, never as an error: `[erased]` in text output, the
store's `{\"$erased\": {\"subject\": …}}` marker in JSON output.";

#[derive(Parser, Debug)]
#[command(
    name = "jobboard-replay",
    version,
    about = "Replays and audits the jobboard event log, straight from the database",
    long_about = "Replays and audits the jobboard event log, straight from the database.\n\n\
                  The service need not run, and may run at the same time: every command but \
                  `rebuild` only reads the log and the projections' registry; `rebuild` writes \
                  the projections' tables, never the log.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The database holding the log: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    /// Defaults to the service's embedded database.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = db::DEFAULT_DATABASE_URL,
        value_name = "URL"
    )]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Shows every projector's checkpoint and how far it lags behind the log.
    ///
    /// Lag in events counts the events of the log after the projector's checkpoint (exactly, in
    /// the log's own order). Lag in seconds is the time between the last event the projector
    /// covers (the first event of the log if it covers none) and the newest event of the log.
    Status(status::Args),
    /// Rebuilds a projection (or --all) beside the serving one, blue/green, with a progress bar.
    ///
    /// Reads switch to the new generation when it has caught up with the serving one; the old
    /// tables are then dropped. The service may run meanwhile: whichever holds the rebuild's
    /// lease builds it, the other follows its progress. Interrupted, it resumes where it stopped
    /// when run again. The only command that writes: the views, never the log.
    Rebuild(rebuild::Args),
    /// Prints a stream's events in order, decoded, with their metadata.
    History(history::Args),
    /// Prints an aggregate's state as of a time or a position, folded by the domain's own code.
    ///
    /// Supported stream categories: posting. Without --as-of or --at-position, the state after
    /// the stream's last event.
    State(state::Args),
    /// Checks the hash chain of every stream; exits with 2 when one is broken.
    ///
    /// Every event's hash is recomputed from its stored content and its predecessor's hash.
    /// Prints each broken stream with its first broken event. Erasure of personal data does not
    /// break a chain (hashes cover the encrypted form).
    Verify(verify::Args),
    /// Writes a slice of the log as JSON lines, one object per event, for auditors' own tools.
    ///
    /// Each line: position, tx, stream, version, type, schema_version, recorded_at, metadata,
    /// hash, payload. Events come out in the log's global order; the log is read page by page.
    Export(export::Args),
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// `verify` found a broken chain.
    Tampered,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Usage errors exit with 1 like every other error: 2 means tampering, and a typo must
            // never read as that.
            let code = if error.use_stderr() { 1 } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Tampered) => ExitCode::from(2),
        // A reader that went away (`| head`) is not an error of ours.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let url = cli.database_url.trim();
    match cli.command {
        Command::Status(args) => status::run(url, &args).await,
        Command::Rebuild(args) => rebuild::run(url, &args).await,
        Command::History(args) => history::run(url, &args).await,
        Command::State(args) => state::run(url, &args).await,
        Command::Verify(args) => verify::run(url, &args).await,
        Command::Export(args) => export::run(url, &args).await,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses a stream id argument with the store's own rules.
fn parse_stream(text: &str) -> Result<StreamId, String> {
    StreamId::new(text).map_err(|e| e.to_string())
}

/// Parses an RFC 3339 time argument.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{e}: expected an RFC 3339 time such as 2026-01-31T22:00:00+09:00 or 2026-01-31T13:00:00Z")
        })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_help_of_state_names_every_category_it_folds() {
        let command = Cli::command();
        let state = command.find_subcommand("state").unwrap();
        let help = state.get_long_about().unwrap().to_string();
        for category in state::categories() {
            assert!(help.contains(category), "{category} missing from {help:?}");
        }
    }

    #[test]
    fn times_are_rfc3339_with_any_offset() {
        let tokyo = parse_time("2026-01-31T22:00:00+09:00").unwrap();
        assert_eq!(tokyo, parse_time("2026-01-31T13:00:00Z").unwrap());
        let error = parse_time("2026-01-31 22:00").unwrap_err();
        assert!(error.contains("RFC 3339"), "{error}");
    }

    #[test]
    fn stream_ids_follow_the_store_rules() {
        assert_eq!(parse_stream("posting-1").unwrap().category(), "posting");
        assert!(
            parse_stream("has space")
                .unwrap_err()
                .contains("invalid stream id")
        );
    }
}
