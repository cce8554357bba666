-- 0006_window_reads: the dashboard's window functions planned for what they read.
--
-- Same signatures and answers as migration 0004; what changes is how PostgreSQL plans them (measured on a
-- 10 M-mention campaign hour, docs/performance.md "Analytics at campaign volume"):
-- * top_entities and label_mix run their rollup-only query unless a read-your-writes answer asks for the
--   raw tail (p_until). A single SQL statement holding both branches is planned with the raw partitions'
--   estimates even when the tail branch is skipped at run time, which pushed its cost over jit_above_cost:
--   ~100 ms of JIT compilation per call at 10 M mentions, over a second at 30 M.
-- * jit is off in these functions: they read a bounded number of list rows, never enough to repay it.
-- * window_buckets returns 2 rows (one per resolution), not the default estimate of 1,000: with that
--   estimate the lists were read by a sequential scan of the whole source instead of index ranges.
-- * The ranking sums each key's lists, errors and covered buckets in one aggregation over the index
--   (an all-labels hour is ~60 x 18 x 64 list rows) and looks up the spelling for the winners only;
--   work_mem keeps that aggregation in memory.

ALTER FUNCTION analytics.window_buckets(interval, timestamptz) ROWS 2;

-- The same key with the counts included, so a window's lists are read from the index alone (on a
-- campaign hour a third faster than through the heap). The name stays: the worker's statements use it.
ALTER TABLE analytics.entity_top
    DROP CONSTRAINT entity_top_key,
    ADD CONSTRAINT entity_top_key UNIQUE (resolution, source, bucket, label, norm) INCLUDE (mentions, mentions_error);

CREATE OR REPLACE FUNCTION analytics.top_entities(p_window interval, p_top integer, p_label text DEFAULT NULL,
                                                  p_source text DEFAULT '', p_until timestamptz DEFAULT NULL)
RETURNS TABLE (text text, label text, norm text, mentions bigint, mentions_error bigint)
LANGUAGE plpgsql STABLE ROWS 20
SET search_path = pg_catalog, pg_temp SET jit = off SET work_mem = '64MB' AS $$
#variable_conflict use_column
BEGIN
    IF p_until IS NULL THEN
        -- mentions_error: the key's listed errors plus the unlisted_max of every bucket of its label it is
        -- missing from = listed errors + (all buckets' unlisted_max) - (those of the buckets it is listed in).
        RETURN QUERY
        WITH buckets AS (
            SELECT b.resolution, b.bucket, b.label, b.unlisted_max
            FROM analytics.window_buckets(p_window, NULL) AS w
            JOIN analytics.entity_buckets AS b
              ON b.resolution = w.resolution AND b.source = p_source
             AND b.bucket >= w.from_bucket AND b.bucket < w.to_bucket
            WHERE p_label IS NULL OR b.label = p_label
        ), ranked AS (
            -- Every list of the window is read through the index alone (entity_top_key includes the counts).
            SELECT t.label, t.norm, sum(t.mentions)::bigint AS mentions, sum(t.mentions_error) AS listed_error,
                   sum(b.unlisted_max) AS covered, max(t.bucket) AS newest
            -- (the window's buckets joined again, not read from the CTE: with the tables' statistics the
            -- planner expects thousands of keys and hashes them instead of sorting 64 k rows of text)
            FROM analytics.window_buckets(p_window, NULL) AS w
            JOIN analytics.entity_buckets AS b
              ON b.resolution = w.resolution AND b.source = p_source
             AND b.bucket >= w.from_bucket AND b.bucket < w.to_bucket
            JOIN analytics.entity_top AS t
              ON t.resolution = b.resolution AND t.source = p_source AND t.bucket = b.bucket AND t.label = b.label
            WHERE p_label IS NULL OR b.label = p_label
            GROUP BY t.label, t.norm
            ORDER BY sum(t.mentions) DESC, t.label, t.norm
            LIMIT p_top
        ), label_unlisted AS (
            SELECT b.label, sum(b.unlisted_max) AS total FROM buckets AS b GROUP BY b.label
        )
        SELECT s.text, r.label, r.norm, r.mentions,
               (r.listed_error + coalesce(u.total, 0) - r.covered)::bigint
        FROM ranked AS r
        LEFT JOIN label_unlisted AS u ON u.label = r.label
        CROSS JOIN LATERAL (
            -- The spelling of the newest bucket the key is listed in.
            SELECT t.text FROM buckets AS b
            JOIN analytics.entity_top AS t
              ON t.resolution = b.resolution AND t.source = p_source AND t.bucket = b.bucket
             AND t.label = b.label AND t.norm = r.norm
            WHERE b.bucket = r.newest AND b.label = r.label
            ORDER BY t.resolution
            LIMIT 1
        ) AS s
        ORDER BY r.mentions DESC, r.label, r.norm;
        RETURN;
    END IF;
    -- A read-your-writes answer: the window ends at p_until and the raw mentions after the watermark are
    -- added (TimescaleDB's real-time aggregation); the tail's spelling wins over the lists'.
    RETURN QUERY
    WITH w AS MATERIALIZED (
        SELECT * FROM analytics.window_buckets(p_window, p_until)
    ), lists AS (
        SELECT t.resolution, t.bucket, t.label, t.norm, t.text, t.mentions, t.mentions_error
        FROM w
        JOIN analytics.entity_top AS t
          ON t.resolution = w.resolution AND t.source = p_source
         AND t.bucket >= w.from_bucket AND t.bucket < w.to_bucket
        WHERE p_label IS NULL OR t.label = p_label
    ), buckets AS MATERIALIZED (
        SELECT b.resolution, b.bucket, b.label, b.unlisted_max
        FROM w
        JOIN analytics.entity_buckets AS b
          ON b.resolution = w.resolution AND b.source = p_source
         AND b.bucket >= w.from_bucket AND b.bucket < w.to_bucket
        WHERE p_label IS NULL OR b.label = p_label
    ), tail AS MATERIALIZED (
        SELECT r.label, r.norm, count(*) AS mentions, (array_agg(r.text ORDER BY r.change_id DESC))[1] AS text
        FROM analytics.recent_mentions AS r
        WHERE r.processed_at >= (SELECT min(window_start) FROM w)
          AND (p_source = '' OR r.source = p_source)
          AND (p_label IS NULL OR r.label = p_label)
        GROUP BY r.label, r.norm
    ), ranked AS (
        SELECT u.label, u.norm, sum(u.mentions)::bigint AS mentions
        FROM (SELECT l.label, l.norm, l.mentions FROM lists AS l
              UNION ALL SELECT t.label, t.norm, t.mentions FROM tail AS t) AS u
        GROUP BY u.label, u.norm
        ORDER BY sum(u.mentions) DESC, u.label, u.norm
        LIMIT p_top
    ), label_unlisted AS (
        SELECT b.label, sum(b.unlisted_max) AS total FROM buckets AS b GROUP BY b.label
    ), present AS (
        SELECT p.label, p.norm, sum(p.mentions_error) AS listed_error, sum(b.unlisted_max) AS covered,
               (array_agg(p.text ORDER BY p.bucket DESC, p.resolution))[1] AS text
        FROM lists AS p
        JOIN ranked AS r ON r.label = p.label AND r.norm = p.norm
        JOIN buckets AS b ON b.resolution = p.resolution AND b.bucket = p.bucket AND b.label = p.label
        GROUP BY p.label, p.norm
    )
    SELECT coalesce(t.text, p.text), r.label, r.norm, r.mentions,
           (coalesce(p.listed_error, 0) + coalesce(u.total, 0) - coalesce(p.covered, 0))::bigint
    FROM ranked AS r
    LEFT JOIN label_unlisted AS u ON u.label = r.label
    LEFT JOIN present AS p ON p.label = r.label AND p.norm = r.norm
    LEFT JOIN tail AS t ON t.label = r.label AND t.norm = r.norm
    ORDER BY r.mentions DESC, r.label, r.norm;
END
$$;

CREATE OR REPLACE FUNCTION analytics.label_mix(p_window interval, p_source text DEFAULT '',
                                               p_until timestamptz DEFAULT NULL)
RETURNS TABLE (label text, mentions bigint)
LANGUAGE plpgsql STABLE ROWS 18
SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_column
BEGIN
    IF p_until IS NULL THEN
        RETURN QUERY
        SELECT b.label, sum(b.mentions)::bigint
        FROM analytics.window_buckets(p_window, NULL) AS w
        JOIN analytics.entity_buckets AS b
          ON b.resolution = w.resolution AND b.source = p_source
         AND b.bucket >= w.from_bucket AND b.bucket < w.to_bucket
        GROUP BY b.label
        ORDER BY sum(b.mentions) DESC, b.label;
        RETURN;
    END IF;
    RETURN QUERY
    WITH w AS MATERIALIZED (
        SELECT * FROM analytics.window_buckets(p_window, p_until)
    )
    SELECT u.label, sum(u.mentions)::bigint
    FROM (SELECT b.label, b.mentions
          FROM w
          JOIN analytics.entity_buckets AS b
            ON b.resolution = w.resolution AND b.source = p_source
           AND b.bucket >= w.from_bucket AND b.bucket < w.to_bucket
          UNION ALL
          SELECT r.label, 1
          FROM analytics.recent_mentions AS r
          WHERE r.processed_at >= (SELECT min(window_start) FROM w)
            AND (p_source = '' OR r.source = p_source)
         ) AS u
    GROUP BY u.label
    ORDER BY sum(u.mentions) DESC, u.label;
END
$$;
