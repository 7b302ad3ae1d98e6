-- Where each projector has got to in the log (SQLite).
--
-- One row per projector and version, so a new version can rebuild beside the old one. The row is
-- written in the same transaction as the projector's read-model changes: a view and its checkpoint
-- never disagree. `events` counts the events the checkpoint covers (applied or skipped).

CREATE TABLE projection_checkpoints (
    projector  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    tx         INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    events     INTEGER NOT NULL DEFAULT 0,
    -- microseconds since the Unix epoch, UTC (as the event log stores times)
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (projector, version)
) WITHOUT ROWID;
