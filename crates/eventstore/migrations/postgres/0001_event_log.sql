-- The append-only event log and its bookkeeping tables (PostgreSQL).
--
-- Global order is (tx_id, global_position): tx_id is the appending transaction's id, and readers
-- only read rows whose tx_id is below the xmin of their snapshot, i.e. rows of transactions that
-- can no longer change. See docs/adr/0002-gap-safe-global-order.md.

CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events (
    global_position bigint      PRIMARY KEY,
    tx_id           bigint      NOT NULL,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    -- json (not jsonb) keeps the exact text the hash covers
    payload         json        NOT NULL,
    personal        boolean     NOT NULL,
    command_id      text,
    correlation_id  text,
    causation_id    text,
    actor           text,
    organisation    text,
    extra           json,
    recorded_at     timestamptz NOT NULL,
    hash            bytea       NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE INDEX events_log_order ON events (tx_id, global_position);

-- One row per stream: its head, locked by appenders (the optimistic-concurrency check).
CREATE TABLE streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL,
    last_tx   bigint NOT NULL,
    last_hash bytea
);

-- Committed command ids, written in the same transaction as their events.
CREATE TABLE commands (
    command_id    text        PRIMARY KEY,
    stream_id     text        NOT NULL,
    first_version bigint      NOT NULL,
    last_version  bigint      NOT NULL,
    recorded_at   timestamptz NOT NULL
);

CREATE TABLE snapshots (
    stream_id   text        PRIMARY KEY,
    version     bigint      NOT NULL,
    sequence    bigint      NOT NULL,
    state       json        NOT NULL,
    personal    boolean     NOT NULL,
    recorded_at timestamptz NOT NULL
);

-- Per-subject data keys for crypto-shredding; key is NULL once destroyed.
CREATE TABLE subject_keys (
    subject_id text        PRIMARY KEY,
    key        bytea,
    created_at timestamptz NOT NULL,
    erased_at  timestamptz
);

-- Which streams hold a subject's sealed data (their snapshots are dropped on erasure).
CREATE TABLE subject_streams (
    subject_id text NOT NULL,
    stream_id  text NOT NULL,
    PRIMARY KEY (subject_id, stream_id)
);

-- Appends a batch of appends in one transaction, one round trip.
--
-- a_* arrays hold one entry per append (each stream at most once, each command id at most once),
-- e_* arrays one entry per event, the events of append 1 first. a_expected is -1 for "any
-- version", otherwise the exact version the stream must be at (0: no stream).
--
-- Returns one row per append: outcome 0 committed, 1 version conflict (last_version = actual),
-- 2 command id already committed (the first outcome), 3 retry in a new transaction (a
-- transaction with a higher id already appended to the stream; appending now would put the
-- stream's events out of order in the (tx_id, position) order).
CREATE FUNCTION append_batch(
    a_stream       text[],
    a_expected     bigint[],
    a_command      text[],
    a_count        integer[],
    a_correlation  text[],
    a_causation    text[],
    a_actor        text[],
    a_organisation text[],
    a_extra        text[],
    a_recorded     timestamptz[],
    e_event_id     uuid[],
    e_type         text[],
    e_schema       integer[],
    e_payload      text[],
    e_personal     boolean[],
    e_digest       bytea[]
) RETURNS TABLE (
    app           integer,
    outcome       smallint,
    stream_id     text,
    first_version bigint,
    last_version  bigint,
    tx            bigint,
    positions     bigint[]
)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    -- taking the transaction id first pins this transaction's place in the global order
    my_tx       bigint   := pg_current_xact_id()::text::bigint;
    n_app       integer  := cardinality(a_stream);
    n_ev        integer  := cardinality(e_event_id);
    genesis     bytea    := decode(repeat('00', 32), 'hex');
    cur_version bigint[];
    cur_tx      bigint[];
    cur_hash    bytea[];
    dup_stream  text[];
    dup_first   bigint[];
    dup_last    bigint[];
    result      smallint[] := array_fill(0::smallint, ARRAY[n_app]);
    v_first     bigint[]   := array_fill(NULL::bigint, ARRAY[n_app]);
    v_last      bigint[]   := array_fill(NULL::bigint, ARRAY[n_app]);
    p_from      integer[]  := array_fill(NULL::integer, ARRAY[n_app]);
    ev_app      integer[]  := array_fill(0, ARRAY[n_ev]);
    ev_version  bigint[]   := array_fill(NULL::bigint, ARRAY[n_ev]);
    ev_hash     bytea[]    := array_fill(NULL::bytea, ARRAY[n_ev]);
    ev_pos      bigint[]   := array_fill(NULL::bigint, ARRAY[n_ev]);
    pos         bigint[];
    n_new       integer := 0;
    i integer; k integer; e integer := 0; j integer := 0; v bigint; h bytea;
BEGIN
    -- Create missing stream rows and lock every stream row, in stream-id order so that two
    -- batches never wait on each other in a cycle. DO UPDATE ... WHERE false locks without writing.
    INSERT INTO streams AS s (stream_id, version, last_tx, last_hash)
    SELECT sid, 0, 0, NULL FROM unnest(a_stream) AS sid ORDER BY sid
    ON CONFLICT ON CONSTRAINT streams_pkey DO UPDATE SET version = s.version WHERE false;

    -- A new statement sees everything committed while we waited for the locks.
    SELECT array_agg(s.version ORDER BY u.i), array_agg(s.last_tx ORDER BY u.i),
           array_agg(s.last_hash ORDER BY u.i)
      INTO cur_version, cur_tx, cur_hash
      FROM unnest(a_stream) WITH ORDINALITY AS u(sid, i)
      JOIN streams s ON s.stream_id = u.sid;

    SELECT array_agg(c.stream_id ORDER BY u.i), array_agg(c.first_version ORDER BY u.i),
           array_agg(c.last_version ORDER BY u.i)
      INTO dup_stream, dup_first, dup_last
      FROM unnest(a_command) WITH ORDINALITY AS u(cid, i)
      LEFT JOIN commands c ON c.command_id = u.cid;

    FOR i IN 1..n_app LOOP
        IF dup_stream[i] IS NOT NULL THEN
            result[i] := 2;
        ELSIF a_expected[i] >= 0 AND a_expected[i] <> cur_version[i] THEN
            result[i] := 1;
            v_last[i] := cur_version[i];
        ELSIF cur_tx[i] > my_tx THEN
            result[i] := 3;
        ELSE
            v := cur_version[i];
            h := coalesce(cur_hash[i], genesis);
            v_first[i] := v + 1;
            p_from[i] := n_new + 1;
            FOR k IN 1..a_count[i] LOOP
                v := v + 1;
                h := sha256(h || int8send(v) || e_digest[e + k]);
                ev_app[e + k] := i;
                ev_version[e + k] := v;
                ev_hash[e + k] := h;
            END LOOP;
            n_new := n_new + a_count[i];
            v_last[i] := v;
            cur_hash[i] := h;
        END IF;
        e := e + a_count[i];
    END LOOP;

    IF n_new > 0 THEN
        -- Draw the positions, then hand them out in event order: within this transaction a
        -- stream's events get increasing positions.
        SELECT array_agg(p ORDER BY p) INTO pos
          FROM (SELECT nextval('events_position_seq') AS p FROM generate_series(1, n_new)) AS drawn;
        FOR e IN 1..n_ev LOOP
            IF ev_app[e] > 0 THEN
                j := j + 1;
                ev_pos[e] := pos[j];
            END IF;
        END LOOP;

        INSERT INTO events (global_position, tx_id, stream_id, version, event_id, event_type,
                            schema_version, payload, personal, command_id, correlation_id,
                            causation_id, actor, organisation, extra, recorded_at, hash)
        SELECT ev_pos[x], my_tx, a_stream[ev_app[x]], ev_version[x], e_event_id[x], e_type[x],
               e_schema[x], e_payload[x]::json, e_personal[x], a_command[ev_app[x]],
               a_correlation[ev_app[x]], a_causation[ev_app[x]], a_actor[ev_app[x]],
               a_organisation[ev_app[x]], a_extra[ev_app[x]]::json, a_recorded[ev_app[x]], ev_hash[x]
          FROM generate_series(1, n_ev) AS x
         WHERE ev_app[x] > 0
         ORDER BY ev_pos[x];

        UPDATE streams s
           SET version = v_last[u.i], last_tx = my_tx, last_hash = cur_hash[u.i]
          FROM generate_series(1, n_app) AS u(i)
         WHERE result[u.i] = 0 AND s.stream_id = a_stream[u.i];

        -- A concurrent batch that committed the same command id (for another stream) makes
        -- this insert fail, and the whole batch with it: the caller retries each append alone.
        INSERT INTO commands (command_id, stream_id, first_version, last_version, recorded_at)
        SELECT a_command[x], a_stream[x], v_first[x], v_last[x], a_recorded[x]
          FROM generate_series(1, n_app) AS x
         WHERE result[x] = 0 AND a_command[x] IS NOT NULL;
    END IF;

    -- Stream rows created for appends that then wrote nothing are removed again.
    DELETE FROM streams s WHERE s.stream_id = ANY(a_stream) AND s.version = 0;

    RETURN QUERY
    SELECT x, result[x],
           CASE WHEN result[x] = 2 THEN dup_stream[x] ELSE a_stream[x] END,
           CASE WHEN result[x] = 2 THEN dup_first[x] ELSE v_first[x] END,
           CASE WHEN result[x] = 2 THEN dup_last[x] ELSE v_last[x] END,
           CASE WHEN result[x] = 0 THEN my_tx ELSE d.tx END,
           CASE WHEN result[x] = 0 THEN pos[p_from[x]:p_from[x] + a_count[x] - 1] ELSE d.positions END
      FROM generate_series(1, n_app) AS x
      LEFT JOIN LATERAL (
          SELECT max(ev.tx_id) AS tx, array_agg(ev.global_position ORDER BY ev.version) AS positions
            FROM events ev
           WHERE result[x] = 2 AND ev.stream_id = dup_stream[x]
             AND ev.version BETWEEN dup_first[x] AND dup_last[x]
      ) AS d ON true;
END
$fn$;
