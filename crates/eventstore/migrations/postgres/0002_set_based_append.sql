-- Appends a batch with set-based statements only, and one index less per event.
--
-- The first append_batch decided and hashed event by event in PL/pgSQL; at 32 appends per batch
-- that loop cost more than the inserts themselves. This version makes every step one statement
-- over the whole batch: lock the heads, decide versions, claim command ids, then insert the
-- events with their hash chain (a recursive CTE, one step per event of the longest append),
-- move the heads and report positions in a single statement.

-- The log order (tx_id, global_position) is the key readers use; global_position stays unique
-- because one sequence hands it out. One index fewer to maintain on every insert.
ALTER TABLE events DROP CONSTRAINT events_pkey;
DROP INDEX events_log_order;
ALTER TABLE events ADD PRIMARY KEY (tx_id, global_position);

DROP FUNCTION append_batch(text[], bigint[], text[], integer[], text[], text[], text[], text[],
                           text[], timestamptz[], uuid[], text[], integer[], text[], boolean[],
                           bytea);

-- a_* arrays hold one entry per append (each stream at most once, each command id at most once),
-- e_* arrays one entry per event, the events of append 1 first; e_app is the (1-based) append an
-- event belongs to and e_k its place within that append; e_digests is the 32-byte content
-- digests of the events, concatenated. a_expected is -1 for "any version", otherwise the exact
-- version the stream must be at (0: no stream).
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
    e_app          integer[],
    e_k            integer[],
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
    my_tx   bigint  := pg_current_xact_id()::text::bigint;
    genesis bytea   := decode(repeat('00', 32), 'hex');
    -- per append, in batch order: decision, head version, head hash
    res     smallint[];
    cur_v   bigint[];
    cur_h   bytea[];
    claimed text[];
    i       integer;
BEGIN
    -- Create missing stream rows and lock every stream row, in stream-id order so that two
    -- batches never wait on each other in a cycle (DO UPDATE ... WHERE false locks, writes nothing).
    INSERT INTO streams AS s (stream_id, version, last_tx, last_hash)
    SELECT sid, 0, 0, NULL FROM unnest(a_stream) AS sid ORDER BY sid
    ON CONFLICT ON CONSTRAINT streams_pkey DO UPDATE SET version = s.version WHERE false;

    -- A new statement sees every head committed while we waited for the locks.
    SELECT array_agg(CASE WHEN u.expected >= 0 AND u.expected <> s.version THEN 1
                          WHEN s.last_tx > my_tx THEN 3
                          ELSE 0 END ORDER BY u.i),
           array_agg(s.version ORDER BY u.i),
           array_agg(coalesce(s.last_hash, genesis) ORDER BY u.i)
      INTO res, cur_v, cur_h
      FROM unnest(a_stream, a_expected) WITH ORDINALITY AS u(sid, expected, i)
      JOIN streams s ON s.stream_id = u.sid;

    -- Command ids: an append that would go in claims its id; an id that is already committed
    -- (or commits while we wait on it) makes the append a duplicate. Sorted, like the locks.
    IF EXISTS (SELECT 1 FROM unnest(a_command) AS c WHERE c IS NOT NULL) THEN
        WITH claim AS (
            INSERT INTO commands (command_id, stream_id, first_version, last_version, recorded_at)
            SELECT u.cid, u.sid, u.v + 1, u.v + u.cnt, u.recorded
              FROM unnest(a_command, a_stream, res, cur_v, a_count, a_recorded)
                   AS u(cid, sid, res, v, cnt, recorded)
             WHERE u.res = 0 AND u.cid IS NOT NULL
             ORDER BY u.cid
            ON CONFLICT (command_id) DO NOTHING
            RETURNING command_id
        )
        SELECT coalesce(array_agg(command_id), '{}') INTO claimed FROM claim;

        -- Duplicates: appends whose id was not claimed, including those that were refused
        -- anyway (a retry with a stale expected version still answers with its first outcome).
        FOR i IN
            SELECT u.i FROM unnest(a_command, res) WITH ORDINALITY AS u(cid, res, i)
             WHERE u.cid IS NOT NULL AND NOT (u.cid = ANY(claimed))
               AND (u.res = 0 OR EXISTS (SELECT 1 FROM commands c WHERE c.command_id = u.cid))
        LOOP
            res[i] := 2;
        END LOOP;
    END IF;

    RETURN QUERY
    WITH RECURSIVE
    apps AS (
        SELECT u.i::integer AS i, u.sid, u.res, u.v, u.h, u.cid, u.corr, u.cause, u.actor,
               u.org, u.extra, u.recorded, u.cnt
          FROM unnest(a_stream, res, cur_v, cur_h, a_command, a_correlation, a_causation,
                      a_actor, a_organisation, a_extra, a_recorded, a_count)
               WITH ORDINALITY
               AS u(sid, res, v, h, cid, corr, cause, actor, org, extra, recorded, cnt, i)
    ),
    ev AS (
        SELECT e.app, e.k, e.id, e.typ, e.schema, e.payload, e.personal,
               substring(e_digests FROM (e.n::integer - 1) * 32 + 1 FOR 32) AS digest
          FROM unnest(e_app, e_k, e_event_id, e_type, e_schema, e_payload, e_personal)
               WITH ORDINALITY AS e(app, k, id, typ, schema, payload, personal, n)
    ),
    -- each event's hash links it to the one before it in its stream
    chain AS (
        SELECT a.i AS app, 1 AS k, a.v + 1 AS version,
               sha256(a.h || int8send(a.v + 1) || ev.digest) AS hash
          FROM apps a JOIN ev ON ev.app = a.i AND ev.k = 1
         WHERE a.res = 0
        UNION ALL
        SELECT c.app, c.k + 1, c.version + 1,
               sha256(c.hash || int8send(c.version + 1) || ev.digest)
          FROM chain c JOIN ev ON ev.app = c.app AND ev.k = c.k + 1
    ),
    inserted AS (
        INSERT INTO events (global_position, tx_id, stream_id, version, event_id, event_type,
                            schema_version, payload, personal, command_id, correlation_id,
                            causation_id, actor, organisation, extra, recorded_at, hash)
        -- positions are drawn in (append, event) order, so a stream's events get increasing
        -- positions; the sort happens in the subquery, before nextval runs
        SELECT nextval('events_position_seq'), my_tx, o.sid, o.version, o.id, o.typ, o.schema,
               o.payload::json, o.personal, o.cid, o.corr, o.cause, o.actor, o.org,
               o.extra::json, o.recorded, o.hash
          FROM (SELECT a.sid, c.version, ev.id, ev.typ, ev.schema, ev.payload, ev.personal,
                       a.cid, a.corr, a.cause, a.actor, a.org, a.extra, a.recorded, c.hash
                  FROM chain c
                  JOIN ev ON ev.app = c.app AND ev.k = c.k
                  JOIN apps a ON a.i = c.app
                 ORDER BY c.app, c.k) AS o
        RETURNING events.stream_id, events.version, events.global_position, events.hash
    ),
    heads AS (
        UPDATE streams s
           SET version = l.version, last_tx = my_tx, last_hash = l.hash
          FROM (SELECT DISTINCT ON (ins.stream_id) ins.stream_id, ins.version, ins.hash
                  FROM inserted ins ORDER BY ins.stream_id, ins.version DESC) AS l
         WHERE s.stream_id = l.stream_id
    ),
    written AS (
        SELECT ins.stream_id, array_agg(ins.global_position ORDER BY ins.version) AS positions
          FROM inserted ins GROUP BY ins.stream_id
    )
    SELECT a.i, a.res, a.sid,
           CASE WHEN a.res = 0 THEN a.v + 1 END,
           CASE WHEN a.res = 0 THEN a.v + a.cnt WHEN a.res = 1 THEN a.v END,
           CASE WHEN a.res = 0 THEN my_tx END,
           w.positions
      FROM apps a LEFT JOIN written w ON w.stream_id = a.sid
     WHERE a.res <> 2;

    IF 2 = ANY(res) THEN
        RETURN QUERY
        SELECT u.i::integer, 2::smallint, c.stream_id, c.first_version, c.last_version,
               d.tx, d.positions
          FROM unnest(a_command, res) WITH ORDINALITY AS u(cid, res, i)
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

    IF EXISTS (SELECT 1 FROM unnest(res) AS r WHERE r <> 0) THEN
        -- Stream rows created for appends that then wrote nothing are removed again.
        DELETE FROM streams s WHERE s.stream_id = ANY(a_stream) AND s.version = 0;
    END IF;
END
$fn$;
