-- Generations of each projector's view (SQLite): blue/green rebuilds.
--
-- A generation is one build of a projector's view from the start of the log, in tables of its
-- own (`{table}_{suffix}`, e.g. `postings_v2_g3`). At most one generation per projector is
-- `active` (it serves reads, through the plain-named database views that point at its tables)
-- and at most one is `building` (a rebuild beside it, from position 0); `retired` ones are
-- history, their tables dropped once `dropped_at` is set. The checkpoint columns move only in
-- the transaction that writes the generation's tables (compare-and-set, with the state), and the
-- switch from building to active is one transaction with the views' new definition: see
-- docs/adr/0007-blue-green-projection-generations.md. Times are microseconds since the Unix
-- epoch, UTC.
--
-- The checkpoints of migration 0001 become each projector's first generation (the newest
-- version active, older ones retired), keeping their tables (`suffix` `v{version}`).

CREATE TABLE projection_generations (
    projector        TEXT    NOT NULL,
    generation       INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    suffix           TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    tx               INTEGER NOT NULL,
    position         INTEGER NOT NULL,
    -- events of the log the checkpoint covers, applied or skipped
    events           INTEGER NOT NULL DEFAULT 0,
    -- when the log recorded the last event the checkpoint covers
    last_event_at    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    activated_at     INTEGER,
    retired_at       INTEGER,
    dropped_at       INTEGER,
    -- the instance that last took the generation's lease, and when
    lease_holder     TEXT,
    lease_since      INTEGER,
    -- `events` when the holder took the lease: its rate is (events - this) / (updated_at - lease_since)
    lease_events     INTEGER,
    PRIMARY KEY (projector, generation)
) WITHOUT ROWID;

CREATE UNIQUE INDEX projection_generations_one_active
    ON projection_generations (projector) WHERE state = 'active';
CREATE UNIQUE INDEX projection_generations_one_building
    ON projection_generations (projector) WHERE state = 'building';

INSERT INTO projection_generations (projector, generation, version, suffix, state, tx, position,
    events, created_at, updated_at, activated_at, retired_at)
SELECT projector,
       ROW_NUMBER() OVER (PARTITION BY projector ORDER BY version),
       version,
       'v' || version,
       CASE WHEN version = MAX(version) OVER (PARTITION BY projector) THEN 'active' ELSE 'retired' END,
       tx, position, events, updated_at, updated_at, updated_at,
       CASE WHEN version = MAX(version) OVER (PARTITION BY projector) THEN NULL ELSE updated_at END
FROM projection_checkpoints;

DROP TABLE projection_checkpoints;

-- What migration 0001's table held, for readers that know only it: the serving checkpoints.
CREATE VIEW projection_checkpoints AS
    SELECT projector, version, tx, position, events, updated_at
    FROM projection_generations WHERE state = 'active';
