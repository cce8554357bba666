-- Queries of the campaign-volume benchmark (bench/phases/analytics.py, bench/campaign_data.py,
-- bench/analytics_probes.py, bench/writer_rounds.py). Never run by the functions.

-- -- the campaign data (as nlp_owner on the primary) ------------------------------------------------------

-- name: seed
-- Makes random() of this session repeatable: one seed per chunk, so a run's data is the same every time.
SELECT setseed(%(seed)s);

-- name: campaign_chunk
-- Documents g in [first, last) of a campaign, their keys and their entities, in one statement (one
-- transaction): document g is processed at start + (g - first_of_campaign) * step_s seconds, has
-- 1 + (g * 7919) %% 9 entities (mean 5) and a body of 40..239 characters; a few campaign sources (a tenth
-- without one). Each entity draws its label from a truncated geometric distribution (label i with weight
-- ratio^i, labels in order of frequency) and its number k = floor(ranges[i] ^ random()) (log-uniform: a
-- heavy head and a long tail, as names, dates and amounts have); norm = words[i] || ' ' || k, the text
-- its capitalised spelling. processed_at and source are the document's, change_id the column default.
WITH d AS (
    SELECT g, %(prefix)s || g AS request_id,
           %(start)s::timestamptz + make_interval(secs => (g - %(origin)s) * %(step_s)s) AS processed_at,
           CASE WHEN (g * 2654435761) %% 20 < 10 THEN 'spring-sale'
                WHEN (g * 2654435761) %% 20 < 15 THEN 'brand-launch'
                WHEN (g * 2654435761) %% 20 < 18 THEN 'support-week' END AS source,
           (1 + (g * 7919) %% 9)::int AS entity_count,
           (40 + (g * 37) %% 200)::int AS text_length
    FROM generate_series(%(first)s::bigint, %(last)s::bigint - 1) AS g
), b AS (
    SELECT d.*, rpad('Comment ' || d.g || ' ', d.text_length, md5(d.g::text)) AS body
    FROM d
), h AS (
    SELECT b.*, encode(sha256(convert_to(b.body, 'UTF8')), 'hex') AS sha FROM b
), keys AS (
    INSERT INTO nlp.document_keys (request_id, text_sha256, model_name, model_version, processed_at)
    SELECT h.request_id, h.sha, %(model_name)s, %(model_version)s, h.processed_at FROM h
), docs AS (
    INSERT INTO nlp.documents (request_id, source, model_name, model_version, text_length, text_sha256, body,
                               entity_count, ner_ms, processed_at)
    SELECT h.request_id, h.source, %(model_name)s, %(model_version)s, h.text_length, h.sha, h.body,
           h.entity_count, (1 + (h.g %% 50) * 0.4)::real, h.processed_at
    FROM h
), m AS (
    SELECT h.request_id, o.ordinal, h.processed_at, h.source,
           least(floor(ln(1 - random() * %(label_mass)s) / ln(%(ratio)s))::int, %(labels)s::int - 1) + 1 AS li,
           random() AS u
    FROM h, generate_series(0, h.entity_count - 1) AS o(ordinal)
), n AS (
    SELECT m.*, (%(words)s::text[])[m.li] || ' ' || floor(power((%(ranges)s::float8[])[m.li], m.u))::bigint AS norm
    FROM m
)
INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char, processed_at, source)
SELECT n.request_id, n.ordinal, (%(label_names)s::text[])[n.li], initcap(n.norm), n.norm, n.ordinal * 24,
       n.ordinal * 24 + length(n.norm), n.processed_at, n.source
FROM n;

-- name: fill_day
-- The same shape for a day of the future (drop-a-day): documents g in [first, last) spread over the day,
-- WITHOUT change ids (the rollup worker ignores them: the day is only there to be dropped).
WITH d AS (
    SELECT g, %(prefix)s || g AS request_id,
           %(day)s::timestamptz + make_interval(secs => (g * 86400.0) / %(total)s) AS processed_at,
           (1 + (g * 7919) %% 9)::int AS entity_count
    FROM generate_series(%(first)s::bigint, %(last)s::bigint - 1) AS g
), docs AS (
    INSERT INTO nlp.documents (request_id, source, model_name, model_version, text_length, text_sha256,
                               entity_count, ner_ms, processed_at, change_id)
    SELECT d.request_id, 'spring-sale', %(model_name)s, %(model_version)s, 100, md5(d.request_id) || md5(d.g::text),
           d.entity_count, 2.0, d.processed_at, NULL
    FROM d
)
INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char, processed_at, source,
                          change_id)
SELECT d.request_id, o, 'ORG', 'Org ' || ((d.g * 31 + o) %% 100000), 'org ' || ((d.g * 31 + o) %% 100000), 0, 8,
       d.processed_at, 'spring-sale', NULL
FROM d, generate_series(0, d.entity_count - 1) AS o;

-- name: future_day
-- A day that has daily partitions already (ensure_partitions makes 7 ahead) and no writer writes into.
SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + make_interval(days => %(days)s);

-- name: ensure_partitions
SELECT nlp.ensure_partitions(7);

-- name: partitions_of_day
-- How many daily partitions (of both parents) cover this day: 2 before the drop, 0 after.
SELECT count(*) FROM nlp.partition_ranges() WHERE partition LIKE %(pattern)s;

-- name: vacuum_documents
VACUUM (ANALYZE) nlp.documents;

-- name: vacuum_entities
VACUUM (ANALYZE) nlp.entities;

-- name: vacuum_keys
VACUUM (ANALYZE) nlp.document_keys;

-- name: vacuum_rollups
VACUUM (ANALYZE) analytics.entity_top, analytics.entity_buckets, analytics.document_buckets;

-- -- positions (as the superuser) -----------------------------------------------------------------------

-- name: wal_lsn
SELECT pg_current_wal_lsn()::text;

-- name: replayed
-- On the replica: has it replayed this position?
SELECT pg_last_wal_replay_lsn() >= %(lsn)s::pg_lsn;

-- name: watermark_reached
-- On the primary: have the rollups counted every commit up to this position?
SELECT watermark_lsn >= %(lsn)s::pg_lsn FROM analytics.rollup_state WHERE name = 'entities';

-- name: rollup_lag
-- On the primary: how far the rollup watermark is behind the clock (seconds).
SELECT extract(epoch FROM clock_timestamp() - watermark)::float8 FROM analytics.rollup_state WHERE name = 'entities';

-- name: backend_pids
-- Server processes of the sessions with this application name (their CPU is read from /proc).
SELECT pid FROM pg_stat_activity WHERE application_name = %(name)s;

-- name: waiting_locks
-- Every lock request that is not granted: who waits (application name), on what, and who holds it up.
SELECT w.pid, coalesce(wa.application_name, ''), w.locktype, coalesce(w.relation::regclass::text, ''), w.mode,
       ARRAY(SELECT coalesce(ba.application_name, '')
             FROM unnest(pg_blocking_pids(w.pid)) AS blocker(pid)
             JOIN pg_stat_activity AS ba ON ba.pid = blocker.pid) AS blocked_by
FROM pg_locks AS w
LEFT JOIN pg_stat_activity AS wa ON wa.pid = w.pid
WHERE NOT w.granted;

-- -- what the data is (as the superuser, on the replica: no statement timeout) ------------------------------

-- name: big_work_mem
SET work_mem = '512MB';

-- name: data_shape
-- Mentions, documents, distinct (label, norm) entities, labels and sources of the raw tables.
SELECT (SELECT count(*) FROM nlp.entities),
       (SELECT count(*) FROM nlp.documents),
       (SELECT count(*) FROM (SELECT DISTINCT label, norm FROM nlp.entities) AS e),
       (SELECT count(DISTINCT label) FROM nlp.entities),
       (SELECT count(DISTINCT source) FROM nlp.documents);

-- name: exact_top
-- The exact top entities of [start, end) from the base tables (what the rollups must reproduce).
SELECT label, norm, count(*) AS mentions
FROM nlp.entities
WHERE processed_at >= %(start)s AND processed_at < %(end)s
GROUP BY label, norm
ORDER BY mentions DESC, label, norm
LIMIT %(limit)s;

-- name: exact_mentions
-- Exact mentions of [start, end) from the base tables.
SELECT count(*) FROM nlp.entities WHERE processed_at >= %(start)s AND processed_at < %(end)s;

-- name: storage
-- Bytes (tables, indexes, TOAST) of the raw tables with all their partitions, of the idempotency keys and
-- of the rollup tables.
SELECT (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('nlp.entities'))::bigint,
       (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('nlp.documents'))::bigint,
       pg_total_relation_size('nlp.document_keys'),
       pg_total_relation_size('analytics.entity_top'),
       pg_total_relation_size('analytics.entity_buckets'),
       pg_total_relation_size('analytics.document_buckets');

-- -- "before rollups": the raw-scan queries entity-stats ran before migration 0004 (as nlp_analyst on the
-- -- replica, with the function's statement timeout), unchanged but for their names ------------------------

-- name: raw_top_entities
-- Most mentioned entities of every label in the window, displayed with their most recent spelling.
SELECT latest.text, top.label, top.count
FROM (SELECT label, norm, count(*) AS count
      FROM analytics.entity_mentions
      WHERE processed_at >= now() - %(window)s::interval
      GROUP BY label, norm
      ORDER BY count DESC, label, norm
      LIMIT %(limit)s) AS top
CROSS JOIN LATERAL (
      SELECT m.text
      FROM analytics.entity_mentions AS m
      WHERE m.label = top.label AND m.norm = top.norm
        AND m.processed_at >= now() - %(window)s::interval
      ORDER BY m.processed_at DESC
      LIMIT 1) AS latest
ORDER BY top.count DESC, top.label, top.norm;

-- name: raw_top_entities_for_label
-- Same for one label.
SELECT latest.text, top.label, top.count
FROM (SELECT label, norm, count(*) AS count
      FROM analytics.entity_mentions
      WHERE processed_at >= now() - %(window)s::interval
        AND label = %(label)s
      GROUP BY label, norm
      ORDER BY count DESC, norm
      LIMIT %(limit)s) AS top
CROSS JOIN LATERAL (
      SELECT m.text
      FROM analytics.entity_mentions AS m
      WHERE m.label = top.label AND m.norm = top.norm
        AND m.processed_at >= now() - %(window)s::interval
      ORDER BY m.processed_at DESC
      LIMIT 1) AS latest
ORDER BY top.count DESC, top.norm;

-- name: raw_label_mix
-- Mentions per label in the window (every label).
SELECT label, count(*) AS count
FROM analytics.entity_mentions
WHERE processed_at >= now() - %(window)s::interval
GROUP BY label
ORDER BY count DESC, label;

-- name: set_setting
-- A session setting (statement_timeout for the raw-scan session, lock_timeout for the drop).
SELECT set_config(%(name)s, %(value)s, false);
