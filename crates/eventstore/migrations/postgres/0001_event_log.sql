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
-- e_* arrays one entry per event, the events of append 1 first; e_digests is the 32-byte content
-- digests of the events, concatenated. a_expected is -1 for "any version", otherwise the exact
-- version the stream must be at (0: no stream). Arrays are only ever unnested or indexed by
-- fixed-width element, never indexed by position when their elements vary in width (that would
-- cost a scan from the start per access).
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
    e_digests      bytea
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
    my_tx      bigint  := pg_current_xact_id()::text::bigint;
    n_app      integer := cardinality(a_stream);
    n_ev       integer := cardinality(e_event_id);
    genesis    bytea   := decode(repeat('00', 32), 'hex');
    result     smallint[] := array_fill(0::smallint, ARRAY[n_app]);
    v_first    bigint[]   := array_fill(NULL::bigint, ARRAY[n_app]);
    v_last     bigint[]   := array_fill(NULL::bigint, ARRAY[n_app]);
    head_hash  bytea[]    := array_fill(NULL::bytea, ARRAY[n_app]);
    e_from     integer[]  := array_fill(NULL::integer, ARRAY[n_app]);
    ev_app     integer[]  := array_fill(0, ARRAY[n_ev]);
    ev_version bigint[]   := array_fill(NULL::bigint, ARRAY[n_ev]);
    ev_pos     bigint[]   := array_fill(NULL::bigint, ARRAY[n_ev]);
    ev_hash    bytea[]    := array_fill(NULL::bytea, ARRAY[n_ev]);
    n_new      integer := 0;
    n_unwritten integer := 0;
    n_dup      integer := 0;
    has_command boolean := false;
    r record;
    e integer := 0; k integer; v bigint; h bytea;
BEGIN
    -- Create missing stream rows and lock every stream row, in stream-id order so that two
    -- batches never wait on each other in a cycle (DO UPDATE ... WHERE false locks, writes nothing).
    INSERT INTO streams AS s (stream_id, version, last_tx, last_hash)
    SELECT sid, 0, 0, NULL FROM unnest(a_stream) AS sid ORDER BY sid
    ON CONFLICT ON CONSTRAINT streams_pkey DO UPDATE SET version = s.version WHERE false;

    -- A new statement sees every stream head and command committed while we waited.
    FOR r IN
        SELECT u.i, u.expected, u.cnt, u.cid IS NOT NULL AS has_cid,
               s.version AS cur_version, s.last_tx AS cur_tx, s.last_hash AS cur_hash,
               c.command_id IS NOT NULL AS dup
          FROM unnest(a_stream, a_expected, a_command, a_count)
               WITH ORDINALITY AS u(sid, expected, cid, cnt, i)
          JOIN streams s ON s.stream_id = u.sid
          LEFT JOIN commands c ON c.command_id = u.cid
         ORDER BY u.i
    LOOP
        has_command := has_command OR r.has_cid;
        IF r.dup THEN
            result[r.i] := 2;
            n_dup := n_dup + 1;
        ELSIF r.expected >= 0 AND r.expected <> r.cur_version THEN
            result[r.i] := 1;
            v_last[r.i] := r.cur_version;
        ELSIF r.cur_tx > my_tx THEN
            result[r.i] := 3;
        ELSE
            v := r.cur_version;
            h := coalesce(r.cur_hash, genesis);
            v_first[r.i] := v + 1;
            e_from[r.i] := e + 1;
            FOR k IN e + 1 .. e + r.cnt LOOP
                v := v + 1;
                h := sha256(h || int8send(v) || substring(e_digests FROM (k - 1) * 32 + 1 FOR 32));
                ev_app[k] := r.i;
                ev_version[k] := v;
                ev_hash[k] := h;
                -- drawn in event order: a stream's events get increasing positions
                ev_pos[k] := nextval('events_position_seq');
            END LOOP;
            n_new := n_new + r.cnt;
            v_last[r.i] := v;
            head_hash[r.i] := h;
        END IF;
        IF result[r.i] <> 0 THEN
            n_unwritten := n_unwritten + 1;
        END IF;
        e := e + r.cnt;
    END LOOP;

    IF n_new > 0 THEN
        INSERT INTO events (global_position, tx_id, stream_id, version, event_id, event_type,
                            schema_version, payload, personal, command_id, correlation_id,
                            causation_id, actor, organisation, extra, recorded_at, hash)
        SELECT ev.pos, my_tx, ap.sid, ev.version, ev.id, ev.typ, ev.schema, ev.payload::json,
               ev.personal, ap.cid, ap.corr, ap.cause, ap.actor, ap.org, ap.extra::json,
               ap.recorded, ev.hash
          FROM unnest(e_event_id, e_type, e_schema, e_payload, e_personal, ev_app, ev_version,
                      ev_pos, ev_hash)
               AS ev(id, typ, schema, payload, personal, app, version, pos, hash)
          JOIN unnest(a_stream, a_command, a_correlation, a_causation, a_actor, a_organisation,
                      a_extra, a_recorded) WITH ORDINALITY
               AS ap(sid, cid, corr, cause, actor, org, extra, recorded, i)
            ON ap.i = ev.app;

        UPDATE streams s
           SET version = u.v_last, last_tx = my_tx, last_hash = u.head
          FROM unnest(a_stream, result, v_last, head_hash) AS u(sid, res, v_last, head)
         WHERE u.res = 0 AND s.stream_id = u.sid;

        -- A concurrent batch that committed the same command id (for another stream) makes
        -- this insert fail, and the whole batch with it: the caller retries each append alone.
        IF has_command THEN
            INSERT INTO commands (command_id, stream_id, first_version, last_version, recorded_at)
            SELECT u.cid, u.sid, u.v_first, u.v_last, u.recorded
              FROM unnest(a_command, a_stream, result, v_first, v_last, a_recorded)
                   AS u(cid, sid, res, v_first, v_last, recorded)
             WHERE u.res = 0 AND u.cid IS NOT NULL;
        END IF;
    END IF;

    IF n_unwritten > 0 THEN
        -- Stream rows created for appends that then wrote nothing are removed again.
        DELETE FROM streams s WHERE s.stream_id = ANY(a_stream) AND s.version = 0;
    END IF;

    RETURN QUERY
    SELECT u.i::integer, u.res, u.sid, u.v_first, u.v_last,
           CASE WHEN u.res = 0 THEN my_tx END,
           CASE WHEN u.res = 0 THEN ev_pos[u.e_from : u.e_from + u.cnt - 1] END
      FROM unnest(a_stream, result, v_first, v_last, e_from, a_count)
           WITH ORDINALITY AS u(sid, res, v_first, v_last, e_from, cnt, i)
     WHERE u.res <> 2;

    IF n_dup > 0 THEN
        RETURN QUERY
        SELECT u.i::integer, 2::smallint, c.stream_id, c.first_version, c.last_version,
               d.tx, d.positions
          FROM unnest(a_command, result) WITH ORDINALITY AS u(cid, res, i)
          JOIN commands c ON c.command_id = u.cid
         CROSS JOIN LATERAL (
              SELECT max(ev.tx_id) AS tx,
                     array_agg(ev.global_position ORDER BY ev.version) AS positions
                FROM events ev
               WHERE ev.stream_id = c.stream_id
                 AND ev.version BETWEEN c.first_version AND c.last_version
         ) AS d
         WHERE u.res = 2;
    END IF;
END
$fn$;
