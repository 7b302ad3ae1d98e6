//! `jobboard-replay`'s command line without a log: help, exit statuses, and the errors for bad
//! arguments and databases that are missing or unreachable.

mod support;

use support::replay;

#[tokio::test]
async fn the_default_database_is_the_services_embedded_one() {
    let help = replay(&["--help"]).await.ok().stdout;
    let default = jobboard::config::Config::default().database_url;
    assert!(
        help.contains(&format!("[default: {default}]")),
        "the default is not {default} in\n{help}"
    );
    for command in ["status", "rebuild", "history", "state", "verify", "export"] {
        assert!(help.contains(command), "{command} missing from\n{help}");
    }
    assert!(
        help.contains("2  `verify` found a broken hash chain"),
        "{help}"
    );
}

#[tokio::test]
async fn bad_arguments_exit_with_1_and_say_what_is_wrong() {
    let run = replay(&["history", "has space"]).await.expect_code(1);
    assert!(run.stderr.contains("invalid stream id"), "{}", run.stderr);

    let run = replay(&["history", "posting-1", "--as-of", "yesterday"])
        .await
        .expect_code(1);
    assert!(run.stderr.contains("RFC 3339"), "{}", run.stderr);

    let run = replay(&["rebuild"]).await.expect_code(1);
    assert!(
        run.stderr.contains("required arguments were not provided"),
        "{}",
        run.stderr
    );
    let run = replay(&["rebuild", "postings", "--all"])
        .await
        .expect_code(1);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);

    let run = replay(&["unmake"]).await.expect_code(1);
    assert!(
        run.stderr.contains("unrecognized subcommand"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_missing_sqlite_file_is_reported_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere.db");
    let url = format!("sqlite://{}", path.display());
    let run = replay(&["--database-url", &url, "verify"])
        .await
        .expect_code(1);
    assert!(
        run.stderr
            .contains(&format!("no database at {}", path.display())),
        "{}",
        run.stderr
    );
    assert!(!path.exists(), "the tool created {}", path.display());
}

#[tokio::test]
async fn an_unreachable_postgres_says_how_to_start_it() {
    // Nothing listens on port 1.
    let run = replay(&[
        "--database-url",
        "postgres://postgres:pw@127.0.0.1:1/jobboard",
        "status",
    ])
    .await
    .expect_code(1);
    assert!(
        run.stderr
            .contains("cannot reach PostgreSQL at postgres://postgres:***@127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("pg_ctlcluster 15 main start"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("pw@"),
        "the password leaked: {}",
        run.stderr
    );
}
