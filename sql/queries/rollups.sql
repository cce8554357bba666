-- Queries of the rollup worker (functions/runtime/rollup.py) as role nlp_rollup on the primary. Buckets
-- are UTC minutes; source '' stands for all sources (documents without a source count there only).

-- name: try_lock
-- One active worker per database: a second one waits as a standby (session lock, released on disconnect).
SELECT pg_try_advisory_lock(%(key)s);

-- name: unlock
SELECT pg_advisory_unlock(%(key)s);

-- name: wal_position
-- Read FIRST: a commit whose WAL record is at or before this LSN took all its change ids before the
-- sequence is read below, so it is inside the watermark; so is every commit before this instant.
SELECT pg_current_wal_lsn()::text, clock_timestamp();

-- name: sequence_position
-- The highest change id handed out so far (0 before the first).
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM nlp.change_id_seq;

-- name: snapshot
SELECT pg_current_snapshot()::text;

-- name: still_running
-- How many transactions of that snapshot are still in progress: a change id at or below the sequence
-- position read before the snapshot belongs to one of them or is already visible.
SELECT count(*) FROM pg_snapshot_xip(%(snapshot)s::pg_snapshot) AS x
WHERE pg_xact_status(x) = 'in progress';

-- name: state
SELECT last_change_id, watermark, watermark_lsn::text, history_before, history_floor, hours_merged_before
FROM analytics.rollup_state WHERE name = 'entities';

-- name: advance
-- Optimistic: only the worker that read last_change_id = after may move it (a second worker that lost
-- the lock mid-cycle updates nothing and rolls back).
UPDATE analytics.rollup_state
SET last_change_id = %(upto)s,
    watermark = greatest(watermark, %(watermark)s),
    watermark_lsn = greatest(watermark_lsn, %(watermark_lsn)s::pg_lsn),
    history_before = %(history_before)s,
    hours_merged_before = greatest(hours_merged_before, %(hours_merged_before)s),
    updated_at = now()
WHERE name = 'entities' AND last_change_id = %(after)s;

-- name: sealed_minutes
-- The finished minutes (before open_from) that rows with change ids in (after, upto] fall into: the worker
-- rebuilds them from the raw tables instead of adding to them.
SELECT date_trunc('minute', processed_at, 'UTC') AS bucket
FROM nlp.entities
WHERE change_id > %(after)s AND change_id <= %(upto)s AND processed_at < %(open_from)s
UNION
SELECT date_trunc('minute', processed_at, 'UTC')
FROM nlp.documents
WHERE change_id > %(after)s AND change_id <= %(upto)s AND processed_at < %(open_from)s;

-- name: entity_rows
-- Mentions per UTC minute, source and entity (the all-sources rows have source ''); text: the spelling of
-- the newest mention. Either the delta of a cycle in the open minutes (start NULL: change ids in
-- (after, upto], processed_at from open_from on) or one whole minute [start, start + 1 minute) up to change
-- id upto, rows written before change ids existed included (a late or historical minute rebuilt exactly).
-- Parameters are bound before planning, so the branch that does not apply is folded away and each uses
-- its BRIN index.
SELECT bucket, CASE WHEN grouping(source) = 1 THEN '' ELSE source END, label, norm, count(*),
       (array_agg(text ORDER BY change_id DESC NULLS LAST, processed_at DESC))[1], coalesce(max(change_id), 0)
FROM (SELECT date_trunc('minute', processed_at, 'UTC') AS bucket, source, label, norm, text, change_id,
             processed_at
      FROM nlp.entities
      WHERE (%(start)s::timestamptz IS NULL AND change_id > %(after)s AND change_id <= %(upto)s
             AND processed_at >= %(open_from)s)
         OR (%(start)s::timestamptz IS NOT NULL AND processed_at >= %(start)s
             AND processed_at < %(start)s::timestamptz + interval '1 minute'
             AND (change_id IS NULL OR change_id <= %(upto)s))) AS e
GROUP BY GROUPING SETS ((bucket, source, label, norm), (bucket, label, norm))
HAVING grouping(source) = 1 OR coalesce(source, '') <> '';

-- name: document_rows
-- Documents per minute, source, model, length class and model-time bin (bin i: ner_ms in
-- [2^((i-1)/4), 2^(i/4)) ms; 0: below 1 ms or unknown), for a cycle's delta in the open minutes or one
-- whole minute (as above).
SELECT bucket, CASE WHEN grouping(source) = 1 THEN '' ELSE source END, model_name, model_version,
       length_class, bin, count(*), sum(entity_count), sum(text_length), sum(coalesce(ner_ms, 0))
FROM (SELECT date_trunc('minute', processed_at, 'UTC') AS bucket, source, model_name, model_version,
             CASE WHEN text_length <= 200 THEN 0 WHEN text_length <= 1000 THEN 1 ELSE 2 END AS length_class,
             CASE WHEN ner_ms IS NULL OR ner_ms < 1 THEN 0
                  ELSE least(floor(4 * ln(ner_ms) / ln(2.0))::int + 1, 63) END AS bin,
             entity_count, text_length, ner_ms
      FROM nlp.documents
      WHERE (%(start)s::timestamptz IS NULL AND change_id > %(after)s AND change_id <= %(upto)s
             AND processed_at >= %(open_from)s)
         OR (%(start)s::timestamptz IS NOT NULL AND processed_at >= %(start)s
             AND processed_at < %(start)s::timestamptz + interval '1 minute'
             AND (change_id IS NULL OR change_id <= %(upto)s))) AS d
GROUP BY GROUPING SETS ((bucket, source, model_name, model_version, length_class, bin),
                        (bucket, model_name, model_version, length_class, bin))
HAVING grouping(source) = 1 OR coalesce(source, '') <> '';

-- name: delete_lists
-- The lists of the given (bucket, source, label) groups, before they are written again.
DELETE FROM analytics.entity_top AS t
USING unnest(%(buckets)s::timestamptz[], %(sources)s::text[], %(labels)s::text[]) AS k(bucket, source, label)
WHERE t.resolution = %(resolution)s AND t.source = k.source AND t.bucket = k.bucket AND t.label = k.label;

-- name: upsert_lists
-- New and changed list rows (unchanged ones are not sent: a cycle of the steady stream moves a few counts).
INSERT INTO analytics.entity_top (resolution, bucket, source, label, norm, text, mentions, mentions_error)
SELECT %(resolution)s, * FROM unnest(%(buckets)s::timestamptz[], %(sources)s::text[], %(labels)s::text[],
                                     %(norms)s::text[], %(texts)s::text[], %(mentions)s::bigint[],
                                     %(errors)s::bigint[])
ON CONFLICT ON CONSTRAINT entity_top_key DO UPDATE
SET text = excluded.text, mentions = excluded.mentions, mentions_error = excluded.mentions_error;

-- name: delete_list_rows
-- Rows that dropped out of their list.
DELETE FROM analytics.entity_top AS t
USING unnest(%(buckets)s::timestamptz[], %(sources)s::text[], %(labels)s::text[], %(norms)s::text[])
      AS k(bucket, source, label, norm)
WHERE t.resolution = %(resolution)s AND t.source = k.source AND t.bucket = k.bucket AND t.label = k.label
  AND t.norm = k.norm;

-- name: upsert_buckets
INSERT INTO analytics.entity_buckets
    (resolution, bucket, source, label, mentions, unlisted_max, distinct_entities)
SELECT %(resolution)s, * FROM unnest(%(buckets)s::timestamptz[], %(sources)s::text[], %(labels)s::text[],
                                     %(mentions)s::bigint[], %(unlisted)s::bigint[], %(distincts)s::bigint[])
ON CONFLICT ON CONSTRAINT entity_buckets_key DO UPDATE
SET mentions = excluded.mentions, unlisted_max = excluded.unlisted_max,
    distinct_entities = excluded.distinct_entities;

-- name: delete_document_minutes
DELETE FROM analytics.document_buckets WHERE resolution = 'minute' AND bucket = ANY(%(buckets)s::timestamptz[]);

-- name: add_document_minute
INSERT INTO analytics.document_buckets
    (resolution, bucket, source, model_name, model_version, length_class, documents, entities, text_chars,
     ner_ms_sum, ner_ms_hist)
VALUES ('minute', %(bucket)s, %(source)s, %(model_name)s, %(model_version)s, %(length_class)s, %(documents)s,
        %(entities)s, %(text_chars)s, %(ner_ms_sum)s, %(hist)s)
ON CONFLICT ON CONSTRAINT document_buckets_key DO UPDATE
SET documents = document_buckets.documents + excluded.documents,
    entities = document_buckets.entities + excluded.entities,
    text_chars = document_buckets.text_chars + excluded.text_chars,
    ner_ms_sum = document_buckets.ner_ms_sum + excluded.ner_ms_sum,
    ner_ms_hist = analytics.hist_add(document_buckets.ner_ms_hist, excluded.ner_ms_hist);

-- name: minute_lists
-- The minute lists and bucket totals of [start, end), oldest first: what an hour's lists merge.
SELECT b.source, b.label, b.bucket, b.mentions, b.unlisted_max, b.distinct_entities,
       t.norm, t.text, t.mentions, t.mentions_error
FROM analytics.entity_buckets AS b
LEFT JOIN analytics.entity_top AS t
       ON t.resolution = b.resolution AND t.source = b.source AND t.bucket = b.bucket AND t.label = b.label
WHERE b.resolution = 'minute' AND b.bucket >= %(start)s AND b.bucket < %(end)s
ORDER BY b.source, b.label, b.bucket;

-- name: delete_hour
DELETE FROM analytics.entity_top WHERE resolution = 'hour' AND bucket = %(hour)s;

-- name: delete_hour_buckets
DELETE FROM analytics.entity_buckets WHERE resolution = 'hour' AND bucket = %(hour)s;

-- name: delete_document_hour
DELETE FROM analytics.document_buckets WHERE resolution = 'hour' AND bucket = %(hour)s;

-- name: merge_document_hour
INSERT INTO analytics.document_buckets
    (resolution, bucket, source, model_name, model_version, length_class, documents, entities, text_chars,
     ner_ms_sum, ner_ms_hist)
SELECT 'hour', %(hour)s, source, model_name, model_version, length_class, sum(documents), sum(entities),
       sum(text_chars), sum(ner_ms_sum), analytics.hist_sum(ner_ms_hist)
FROM analytics.document_buckets
WHERE resolution = 'minute' AND bucket >= %(hour)s AND bucket < %(hour)s + interval '1 hour'
GROUP BY source, model_name, model_version, length_class;

-- name: minutes_with_data
-- The minutes of [start, end) that hold rows written before change ids existed (history to roll up).
SELECT DISTINCT date_trunc('minute', processed_at, 'UTC')
FROM nlp.documents
WHERE processed_at >= %(start)s AND processed_at < %(end)s AND change_id IS NULL;

-- name: expire_lists
DELETE FROM analytics.entity_top
WHERE ctid = ANY(ARRAY(SELECT ctid FROM analytics.entity_top
                       WHERE resolution = %(resolution)s AND bucket < %(before)s LIMIT %(batch)s));

-- name: expire_buckets
DELETE FROM analytics.entity_buckets
WHERE ctid = ANY(ARRAY(SELECT ctid FROM analytics.entity_buckets
                       WHERE resolution = %(resolution)s AND bucket < %(before)s LIMIT %(batch)s));

-- name: expire_document_buckets
DELETE FROM analytics.document_buckets
WHERE ctid = ANY(ARRAY(SELECT ctid FROM analytics.document_buckets
                       WHERE resolution = %(resolution)s AND bucket < %(before)s LIMIT %(batch)s));

-- name: partition_horizon
-- How far ahead daily partitions exist (writes fail for a day without one).
SELECT max(range_end) FROM nlp.partition_ranges();

-- name: forget_minute_lists
-- The lists of the minutes about to be rebuilt (every source and label of them), found through their
-- totals' keys: entity_top holds 48 h of minutes and no index of it starts with the bucket. Every list
-- has its total (both are written in one transaction), so run this before forget_minute_buckets.
DELETE FROM analytics.entity_top AS t
USING analytics.entity_buckets AS b
WHERE b.resolution = 'minute' AND b.bucket >= %(first)s AND b.bucket <= %(last)s
  AND b.bucket = ANY(%(buckets)s::timestamptz[])
  AND t.resolution = 'minute' AND t.source = b.source AND t.bucket = b.bucket AND t.label = b.label;

-- name: forget_minute_buckets
DELETE FROM analytics.entity_buckets
WHERE resolution = 'minute' AND bucket >= %(first)s AND bucket <= %(last)s AND bucket = ANY(%(buckets)s::timestamptz[]);

-- name: rebuild_minute_lists
-- Rebuild whole minutes from the raw table up to change id upto (rows without change ids included), as
-- topk.summarize would: per minute, source ('' = all) and label the k most mentioned norms (ties by norm
-- in code-point order), each with the spelling of its newest mention; the exact total, the distinct
-- count, and unlisted_max = the count of rank k + 1 (0 when every norm is listed). Only the kept rows and
-- one total per group leave the aggregate: nothing crosses into the worker. COLLATE "C": code-point order
-- is topk's tie order, and byte comparisons make the two sorts several times cheaper than the locale's.
WITH counted AS (
    SELECT bucket, CASE WHEN grouping(source) = 1 THEN '' ELSE source END AS source, label, norm,
           count(*) AS mentions, (array_agg(text ORDER BY change_id DESC NULLS LAST, processed_at DESC))[1] AS text
    FROM (SELECT date_trunc('minute', processed_at, 'UTC') AS bucket, source COLLATE "C" AS source,
                 label COLLATE "C" AS label, norm COLLATE "C" AS norm, text, change_id, processed_at
          FROM nlp.entities
          WHERE processed_at >= %(first)s AND processed_at < %(last)s::timestamptz + interval '1 minute'
            AND date_trunc('minute', processed_at, 'UTC') = ANY(%(buckets)s::timestamptz[])
            AND (change_id IS NULL OR change_id <= %(upto)s)) AS e
    GROUP BY GROUPING SETS ((bucket, source, label, norm), (bucket, label, norm))
    HAVING grouping(source) = 1 OR coalesce(source, '') <> ''
), ranked AS (
    SELECT bucket, source, label, norm, text, mentions,
           row_number() OVER (PARTITION BY bucket, source, label ORDER BY mentions DESC, norm) AS rank
    FROM counted
), listed AS (
    INSERT INTO analytics.entity_top (resolution, bucket, source, label, norm, text, mentions, mentions_error)
    SELECT 'minute', bucket, source, label, norm, text, mentions, 0 FROM ranked WHERE rank <= %(k)s
)
INSERT INTO analytics.entity_buckets
    (resolution, bucket, source, label, mentions, unlisted_max, distinct_entities)
SELECT 'minute', bucket, source, label, sum(mentions), coalesce(max(mentions) FILTER (WHERE rank > %(k)s), 0),
       count(*)
FROM ranked
GROUP BY bucket, source, label;

-- name: merge_hour_lists
-- The hour's lists and entity totals from its minutes', as topk.merge(minute lists oldest first, k) would:
-- per source and label, a norm's mentions are its listed mentions summed (a lower bound) and its error
-- its listed errors plus the unlisted_max of every minute it is not listed in; the k best by lower bound
-- are kept (ties by norm, code-point order) with the spelling of the newest minute listing them;
-- unlisted_max bounds any norm not kept: the sum of the minutes' unlisted_max or the upper bound of one
-- dropped here; distinct_entities is a lower bound (the most of the listed norms or of any minute). Run
-- after the hour's rows are deleted. Nothing crosses into the worker: an hour holds ~280 k minute rows.
-- COLLATE "C" as in rebuild_minute_lists: topk's tie order, and byte comparisons; the spelling is looked
-- up (by key, in the index's collation) for the kept norms only, so the aggregate needs no ordered
-- aggregate. The
-- minute rows are reached through the key of each minute total (LATERAL, OFFSET 0 keeps it a lookup per
-- minute): entity_top holds 48 h of minutes and no index of it starts with the bucket, so a scan, hash or
-- merge join of it would read them all.
WITH minutes AS (
    SELECT source, label, bucket, mentions, unlisted_max, distinct_entities
    FROM analytics.entity_buckets
    WHERE resolution = 'minute' AND bucket >= %(hour)s AND bucket < %(hour)s::timestamptz + interval '1 hour'
), groups AS (
    SELECT source, label, sum(mentions) AS mentions, sum(unlisted_max) AS unlisted, max(distinct_entities) AS most
    FROM minutes GROUP BY source, label
), keys AS (
    SELECT t.source COLLATE "C" AS source, t.label COLLATE "C" AS label, t.norm COLLATE "C" AS norm,
           sum(t.mentions) AS lower, sum(t.mentions_error) AS listed_error,
           sum(m.unlisted_max) AS covered, max(t.bucket) AS newest
    FROM minutes AS m
    CROSS JOIN LATERAL (SELECT e.source, e.label, e.norm, e.bucket, e.mentions, e.mentions_error
                        FROM analytics.entity_top AS e
                        WHERE e.resolution = 'minute' AND e.source = m.source AND e.bucket = m.bucket
                          AND e.label = m.label OFFSET 0) AS t
    GROUP BY 1, 2, 3
), ranked AS (
    SELECT k.source, k.label, k.norm, k.newest, k.lower, k.listed_error + g.unlisted - k.covered AS error,
           row_number() OVER (PARTITION BY k.source, k.label ORDER BY k.lower DESC, k.norm) AS rank
    FROM keys AS k JOIN groups AS g ON g.source = k.source AND g.label = k.label
), listed AS (
    INSERT INTO analytics.entity_top (resolution, bucket, source, label, norm, text, mentions, mentions_error)
    SELECT 'hour', %(hour)s, r.source, r.label, r.norm,
           (SELECT t.text FROM analytics.entity_top AS t
            WHERE t.resolution = 'minute' AND t.source = r.source COLLATE "default" AND t.bucket = r.newest
              AND t.label = r.label COLLATE "default" AND t.norm = r.norm COLLATE "default"),
           r.lower, r.error
    FROM ranked AS r
    WHERE r.rank <= %(k)s
), dropped AS (
    SELECT source, label, count(*) AS listed, max(lower + error) FILTER (WHERE rank > %(k)s) AS upper
    FROM ranked GROUP BY source, label
)
INSERT INTO analytics.entity_buckets
    (resolution, bucket, source, label, mentions, unlisted_max, distinct_entities)
SELECT 'hour', %(hour)s, g.source, g.label, g.mentions, greatest(g.unlisted, d.upper),
       greatest(g.most, d.listed)
FROM groups AS g LEFT JOIN dropped AS d ON d.source = g.source AND d.label = g.label;
