-- Where each projector has got to in the log (PostgreSQL).
--
-- One row per projector and version, so a new version can rebuild beside the old one. The row is
-- written in the same transaction as the projector's read-model changes: a view and its checkpoint
-- never disagree. `events` counts the events the checkpoint covers (applied or skipped).

CREATE TABLE projection_checkpoints (
    projector  TEXT        NOT NULL,
    version    INTEGER     NOT NULL,
    tx         BIGINT      NOT NULL,
    position   BIGINT      NOT NULL,
    events     BIGINT      NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (projector, version)
);
