-- The append-only event log and its bookkeeping tables (SQLite).
--
-- SQLite has one writer at a time: positions are assigned and committed in order, so the global
-- order is plain position order. AUTOINCREMENT keeps positions from ever being reused.

CREATE TABLE events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id       TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    event_id        BLOB    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    personal        INTEGER NOT NULL,
    command_id      TEXT,
    correlation_id  TEXT,
    causation_id    TEXT,
    actor           TEXT,
    organisation    TEXT,
    extra           TEXT,
    -- microseconds since the Unix epoch, UTC
    recorded_at     INTEGER NOT NULL,
    hash            BLOB    NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE TABLE streams (
    stream_id TEXT    PRIMARY KEY,
    version   INTEGER NOT NULL,
    last_hash BLOB
) WITHOUT ROWID;

CREATE TABLE commands (
    command_id    TEXT    PRIMARY KEY,
    stream_id     TEXT    NOT NULL,
    first_version INTEGER NOT NULL,
    last_version  INTEGER NOT NULL,
    recorded_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE snapshots (
    stream_id   TEXT    PRIMARY KEY,
    version     INTEGER NOT NULL,
    sequence    INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    personal    INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE subject_keys (
    subject_id TEXT    PRIMARY KEY,
    key        BLOB,
    created_at INTEGER NOT NULL,
    erased_at  INTEGER
) WITHOUT ROWID;

CREATE TABLE subject_streams (
    subject_id TEXT NOT NULL,
    stream_id  TEXT NOT NULL,
    PRIMARY KEY (subject_id, stream_id)
) WITHOUT ROWID;
