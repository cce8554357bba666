-- 0004_campaign_scale: analytics whose cost does not grow with traffic, and retention at campaign volume.
--
-- * Raw tables become time-partitioned by day (processed_at), so retention drops a day as a metadata
--   operation (DETACH PARTITION ... CONCURRENTLY + DROP: writers are not blocked). The tables as they were
--   are attached as one partition holding everything up to the end of the day after this migration.
-- * The idempotency key moves to nlp.document_keys (one row per document id, a unique constraint), because
--   a time-partitioned table can only be unique on keys that include the partition key.
-- * Every new row gets a change_id from one sequence: the rollup worker rolls up "everything up to
--   change_id S" behind a watermark that no late-committing transaction can slip behind (docs/data-model.md).
-- * Rollup tables in schema analytics: per-minute and per-hour top entities with error bounds, exact
--   per-label and per-document totals. entity-stats and sql/analyst/ read them, never the raw tables.
-- Entities no longer reference documents with a foreign key: the writer inserts both in one transaction,
-- and a per-row foreign key check and its cascade cost every write and every retention run.
SET LOCAL timezone = 'UTC';

-- -- change ids ------------------------------------------------------------------------------------------
-- CACHE 1 (the default): ids are handed out in one global order, which the watermark rule relies on.
CREATE SEQUENCE nlp.change_id_seq AS bigint;
COMMENT ON SEQUENCE nlp.change_id_seq IS
    'change_id of every new document and entity row; the rollup watermark is a value of it';

-- -- the idempotency key -------------------------------------------------------------------------------------
CREATE TABLE nlp.document_keys (
    request_id    text PRIMARY KEY,   -- the document id (docs/data-model.md)
    text_sha256   text NOT NULL,
    model_name    text NOT NULL,
    model_version text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE nlp.document_keys IS
    'One row per stored document: the idempotency key (same id + fingerprint = duplicate, else conflict)';
INSERT INTO nlp.document_keys (request_id, text_sha256, model_name, model_version, processed_at)
SELECT request_id, text_sha256, model_name, model_version, processed_at FROM nlp.documents;
CREATE INDEX document_keys_processed_at_idx ON nlp.document_keys (processed_at);
ALTER TABLE nlp.document_keys SET (autovacuum_vacuum_insert_scale_factor = 0.05);

-- -- partitioned raw tables ------------------------------------------------------------------------------
DROP VIEW analytics.entity_mentions, analytics.documents, analytics.document_texts,
    analytics.hourly_entity_counts, analytics.label_mix, analytics.documents_summary;
ALTER TABLE nlp.entities DROP CONSTRAINT entities_request_id_fkey;

ALTER TABLE nlp.documents RENAME TO documents_history;
ALTER INDEX nlp.documents_pkey RENAME TO documents_history_pkey;
ALTER INDEX nlp.documents_processed_at_idx RENAME TO documents_history_processed_at_idx;
ALTER TABLE nlp.documents_history ADD COLUMN change_id bigint;

ALTER TABLE nlp.entities RENAME TO entities_history;
ALTER INDEX nlp.entities_pkey RENAME TO entities_history_pkey;
-- Served the raw-scan analytics that the rollups replace; every write paid for it.
DROP INDEX nlp.entities_label_processed_at_idx;
ALTER INDEX nlp.entities_processed_at_brin RENAME TO entities_history_processed_at_brin;
ALTER TABLE nlp.entities_history ADD COLUMN change_id bigint, ADD COLUMN source text;

-- The change_id default takes the transaction's id (xid) BEFORE the sequence value (CASE evaluates its
-- condition first): a transaction that holds a change_id then always has an xid, which is what the rollup
-- watermark waits for.
CREATE TABLE nlp.documents (
    request_id    text NOT NULL,
    source        text,
    model_name    text NOT NULL,
    model_version text NOT NULL,
    text_length   integer NOT NULL CONSTRAINT documents_text_length_check CHECK (text_length >= 0),
    text_sha256   text NOT NULL CONSTRAINT documents_text_sha256_check CHECK (text_sha256 ~ '^[0-9a-f]{64}$'),
    body          text,
    metadata      jsonb,
    entity_count  integer NOT NULL CONSTRAINT documents_entity_count_check CHECK (entity_count >= 0),
    ner_ms        real,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    change_id     bigint DEFAULT (CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('nlp.change_id_seq') END)
) PARTITION BY RANGE (processed_at);
COMMENT ON COLUMN nlp.documents.body IS 'raw text (STORE_TEXT=true, the default: analysts need it); not readable by nlp_writer';

CREATE TABLE nlp.entities (
    request_id    text NOT NULL,
    ordinal       integer NOT NULL CONSTRAINT entities_ordinal_check CHECK (ordinal >= 0),
    label         text NOT NULL,
    text          text NOT NULL,
    norm          text NOT NULL,
    start_char    integer NOT NULL CONSTRAINT entities_start_char_check CHECK (start_char >= 0),
    end_char      integer NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    change_id     bigint DEFAULT (CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('nlp.change_id_seq') END),
    source        text,   -- the document's source, copied so rollups by source need no join
    CONSTRAINT entities_check CHECK (end_char >= start_char)
) PARTITION BY RANGE (processed_at);

ALTER TABLE nlp.documents ATTACH PARTITION nlp.documents_history
    FOR VALUES FROM (MINVALUE) TO (date_trunc('day', now()) + interval '1 day');
ALTER TABLE nlp.entities ATTACH PARTITION nlp.entities_history
    FOR VALUES FROM (MINVALUE) TO (date_trunc('day', now()) + interval '1 day');

-- Rows arrive in time (and change_id) order: BRIN finds a range of either for a few kB and no write cost.
CREATE INDEX documents_change_id_brin ON nlp.documents USING brin (change_id) WITH (pages_per_range = 32);
CREATE INDEX documents_processed_at_brin ON nlp.documents USING brin (processed_at) WITH (pages_per_range = 32);
CREATE INDEX entities_change_id_brin ON nlp.entities USING brin (change_id) WITH (pages_per_range = 32);
CREATE INDEX entities_processed_at_brin ON nlp.entities USING brin (processed_at) WITH (pages_per_range = 32);

-- Daily partitions ahead of time. No DEFAULT partition: it would forbid DETACH ... CONCURRENTLY. The
-- retention job calls this every day (days_ahead = 7); a missing day makes writes fail, so the rollup
-- worker's partition check logs and alerts well before (logstash/README.md).
CREATE FUNCTION nlp.ensure_partitions(days_ahead integer DEFAULT 7) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parent text;
    day timestamptz;
    last_day timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                            + make_interval(days => days_ahead);
    covered timestamptz;
    created integer := 0;
BEGIN
    FOREACH parent IN ARRAY ARRAY['documents', 'entities'] LOOP
        SELECT max(substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz)
          INTO covered
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = format('nlp.%I', parent)::regclass;
        day := greatest(coalesce(covered, '-infinity'),
                        date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');
        WHILE day <= last_day LOOP
            EXECUTE format('CREATE TABLE IF NOT EXISTS nlp.%I PARTITION OF nlp.%I FOR VALUES FROM (%L) TO (%L)',
                           parent || '_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'), parent,
                           day, day + interval '1 day');
            day := day + interval '1 day';
            created := created + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION nlp.ensure_partitions(integer) IS
    'Create the daily partitions of nlp.documents and nlp.entities up to days_ahead days from today (UTC)';

-- Every daily partition (and the history partition) with the end of its range: retention detaches and
-- drops those that end at or before its cutoff; the rollup worker warns when too few days lie ahead.
CREATE FUNCTION nlp.partition_ranges()
RETURNS TABLE (parent text, partition text, range_end timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.relname::text, c.relname::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relnamespace = 'nlp'::regnamespace AND p.relname IN ('documents', 'entities')
    ORDER BY 3, 1
$$;

SELECT nlp.ensure_partitions(7);

-- The writer: keys (insert + the idempotency columns), documents and entities (insert), change ids.
GRANT SELECT, INSERT ON nlp.document_keys TO nlp_writer;
GRANT INSERT ON nlp.documents, nlp.entities TO nlp_writer;
GRANT USAGE ON SEQUENCE nlp.change_id_seq TO nlp_writer;

-- -- rollups -------------------------------------------------------------------------------------------
-- One row per rollup (name 'entities'): how far the worker got. last_change_id: every row with a change_id
-- up to it is in the rollups; watermark: every row committed before it is (watermark_lsn: every commit
-- whose WAL position is at or before it). Rows older than history_before (change_id NULL: written before
-- this migration) are rolled up by the worker from the newest hour back to history_floor.
CREATE TABLE analytics.rollup_state (
    name            text PRIMARY KEY,
    last_change_id  bigint NOT NULL,
    watermark       timestamptz NOT NULL,
    watermark_lsn   pg_lsn NOT NULL,
    history_before  timestamptz,   -- NULL: history done
    history_floor   timestamptz,
    hours_merged_before timestamptz NOT NULL DEFAULT 'epoch',  -- hour lists exist for hours before it
    updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO analytics.rollup_state (name, last_change_id, watermark, watermark_lsn, history_before, history_floor)
SELECT 'entities', 0, 'epoch', '0/0',
       CASE WHEN EXISTS (SELECT 1 FROM nlp.documents_history) THEN now() END,
       (SELECT min(processed_at) FROM nlp.documents_history);

-- Top entities per bucket ('minute' or 'hour') and source ('': all sources) and label: the K most
-- mentioned (label, norm) keys. mentions is a lower bound of the key's mentions in the bucket, exact when
-- mentions_error is 0; mentions + mentions_error an upper bound. text: the latest spelling.
CREATE TABLE analytics.entity_top (
    resolution      text NOT NULL CHECK (resolution IN ('minute', 'hour')),
    bucket          timestamptz NOT NULL,
    source          text NOT NULL,
    label           text NOT NULL,
    norm            text NOT NULL,
    text            text NOT NULL,
    mentions        bigint NOT NULL,
    mentions_error  bigint NOT NULL DEFAULT 0,
    CONSTRAINT entity_top_key UNIQUE (resolution, source, bucket, label, norm)
);
-- Documents without a source count in the all-sources rows only. Per bucket, source and label: exact mentions; unlisted_max bounds the mentions of any key that is not in
-- entity_top for this bucket; distinct_entities exact for minute buckets, a lower bound for hours.
CREATE TABLE analytics.entity_buckets (
    resolution        text NOT NULL CHECK (resolution IN ('minute', 'hour')),
    bucket            timestamptz NOT NULL,
    source            text NOT NULL,
    label             text NOT NULL,
    mentions          bigint NOT NULL,
    unlisted_max      bigint NOT NULL,
    distinct_entities bigint NOT NULL,
    CONSTRAINT entity_buckets_key UNIQUE (resolution, source, bucket, label)
);
-- Per bucket, source, model and text length class (0: <= 200 chars, 1: 201-1000, 2: > 1000): exact
-- documents, entities, characters and model time; ner_ms_hist counts documents per model-time bin
-- (bin i holds ner_ms in [2^((i-1)/4), 2^(i/4)) ms, bin 0 below 1 ms; analytics.ner_ms_bin_upper(i)).
CREATE TABLE analytics.document_buckets (
    resolution    text NOT NULL CHECK (resolution IN ('minute', 'hour')),
    bucket        timestamptz NOT NULL,
    source        text NOT NULL,
    model_name    text NOT NULL,
    model_version text NOT NULL,
    length_class  smallint NOT NULL,
    documents     bigint NOT NULL,
    entities      bigint NOT NULL,
    text_chars    bigint NOT NULL,
    ner_ms_sum    double precision NOT NULL,
    ner_ms_hist   bigint[] NOT NULL,
    CONSTRAINT document_buckets_key UNIQUE (resolution, source, bucket, model_name, model_version, length_class)
);

CREATE FUNCTION analytics.ner_ms_bin_upper(bin integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT power(2.0, bin / 4.0) $$;
COMMENT ON FUNCTION analytics.ner_ms_bin_upper(integer) IS
    'Upper edge (ms) of a document_buckets.ner_ms_hist bin: a percentile read from the histogram is this '
    'edge, at most 19 % above the true value';

-- Approximate p-th percentile (0..1) of a histogram of ner_ms_hist form: the upper edge of its bin.
CREATE FUNCTION analytics.hist_percentile(hist bigint[], p double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT analytics.ner_ms_bin_upper((b.i - 1)::integer)
    FROM (SELECT i, sum(n) OVER (ORDER BY i) AS running, sum(n) OVER () AS total
          FROM unnest(hist) WITH ORDINALITY AS h(n, i)) AS b
    WHERE b.total > 0 AND b.running >= p * b.total
    ORDER BY b.i
    LIMIT 1
$$;

-- The buckets that answer a window (entity-stats and sql/analyst/ both ask here). A window ends at the
-- rollup watermark (or at `until`, for answers that add the raw tail) and starts at a bucket boundary at or
-- before end - win, so it covers at least what was asked: up to 1 hour, minute buckets; longer, hour
-- buckets up to the hours the worker has merged, then minute buckets to the end (24h: ~85 lists, not 1,440).
-- One row per resolution: buckets with from_bucket <= bucket < to_bucket, and the window it covers.
CREATE FUNCTION analytics.window_buckets(win interval, until timestamptz DEFAULT NULL)
RETURNS TABLE (resolution text, from_bucket timestamptz, to_bucket timestamptz, window_start timestamptz,
               window_end timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH s AS (
        SELECT coalesce(until, r.watermark) AS e, r.hours_merged_before AS h
        FROM analytics.rollup_state AS r WHERE r.name = 'entities'
    ), b AS (
        SELECT e,
               date_trunc('minute', e, 'UTC') + interval '1 minute' AS minute_end,
               CASE WHEN win <= interval '1 hour' THEN date_trunc('minute', e - win, 'UTC')
                    ELSE date_trunc('hour', e - win, 'UTC') END AS start,
               CASE WHEN win <= interval '1 hour' THEN date_trunc('minute', e - win, 'UTC')
                    ELSE greatest(date_trunc('hour', e - win, 'UTC'),
                                  least(date_trunc('hour', h, 'UTC'), date_trunc('hour', e, 'UTC'))) END AS hour_end
        FROM s
    )
    SELECT 'minute', b.hour_end, b.minute_end, b.start, b.e FROM b
    UNION ALL
    SELECT 'hour', b.start, b.hour_end, b.start, b.e FROM b
$$;

-- Element-wise sum of histograms (an aggregate, for merging buckets).
CREATE FUNCTION analytics.hist_add(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE
        ARRAY(SELECT coalesce(x, 0) + coalesce(y, 0) FROM unnest(a, b) AS u(x, y)) END
$$;
CREATE AGGREGATE analytics.hist_sum(bigint[]) (SFUNC = analytics.hist_add, STYPE = bigint[]);

ALTER TABLE analytics.entity_top SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE analytics.entity_buckets SET (autovacuum_vacuum_scale_factor = 0.05);

-- Raw rows not yet in the rollups: the "real-time" tail that read-your-writes answers add to the
-- rollups (TimescaleDB's real-time aggregation). Bounded by the watermark, found through the BRIN index.
CREATE VIEW analytics.recent_mentions AS
SELECT e.change_id, e.processed_at, e.source, e.label, e.norm, e.text
FROM nlp.entities AS e
WHERE e.change_id > (SELECT s.last_change_id FROM analytics.rollup_state AS s WHERE s.name = 'entities');
COMMENT ON VIEW analytics.recent_mentions IS
    'Entity mentions committed after the rollup watermark (real-time tail; empty when the worker is current)';

-- The top p_top entities of a window (one label or all; one source or all) by their listed mentions, a
-- lower bound; mentions_error: how many more an entity may have had (its listed errors plus the
-- unlisted_max of every bucket of its label it is missing from; 0 = exact). With p_until (read-your-
-- writes answers) the window ends there and the raw mentions after the watermark are added (TimescaleDB's
-- real-time aggregation). text: the spelling of the newest bucket. entity-stats and sql/analyst/ call it.
CREATE FUNCTION analytics.top_entities(p_window interval, p_top integer, p_label text DEFAULT NULL,
                                       p_source text DEFAULT '', p_until timestamptz DEFAULT NULL)
RETURNS TABLE (text text, label text, norm text, mentions bigint, mentions_error bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (
        SELECT * FROM analytics.window_buckets(p_window, p_until)
    ), lists AS (
        SELECT t.resolution, t.bucket, t.label, t.norm, t.text, t.mentions, t.mentions_error
        FROM w
        JOIN analytics.entity_top AS t
          ON t.resolution = w.resolution AND t.source = p_source
         AND t.bucket >= w.from_bucket AND t.bucket < w.to_bucket
        WHERE p_label IS NULL OR t.label = p_label
    ), buckets AS (
        SELECT b.resolution, b.bucket, b.label, b.unlisted_max
        FROM w
        JOIN analytics.entity_buckets AS b
          ON b.resolution = w.resolution AND b.source = p_source
         AND b.bucket >= w.from_bucket AND b.bucket < w.to_bucket
        WHERE p_label IS NULL OR b.label = p_label
    ), tail AS (
        SELECT r.label, r.norm, count(*) AS mentions, (array_agg(r.text ORDER BY r.change_id DESC))[1] AS text
        FROM analytics.recent_mentions AS r
        WHERE p_until IS NOT NULL
          AND r.processed_at >= (SELECT min(window_start) FROM w)
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
    ORDER BY r.mentions DESC, r.label, r.norm
$$;

-- Exact mentions per label in a window (every label), plus the raw tail with p_until.
CREATE FUNCTION analytics.label_mix(p_window interval, p_source text DEFAULT '', p_until timestamptz DEFAULT NULL)
RETURNS TABLE (label text, mentions bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH w AS (
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
          WHERE p_until IS NOT NULL
            AND r.processed_at >= (SELECT min(window_start) FROM w)
            AND (p_source = '' OR r.source = p_source)
         ) AS u
    GROUP BY u.label
    ORDER BY sum(u.mentions) DESC, u.label
$$;

-- -- raw views for ad-hoc questions (scan raw rows: bound them by processed_at) --------------------------
CREATE VIEW analytics.entity_mentions AS
SELECT e.request_id, e.ordinal, e.label, e.norm, e.text, e.start_char, e.end_char, e.processed_at, e.source
FROM nlp.entities AS e;
COMMENT ON VIEW analytics.entity_mentions IS
    'One row per entity mention: raw rows; the dashboard questions are answered by the rollup tables.';

CREATE VIEW analytics.documents AS
SELECT d.request_id, d.source, d.model_name, d.model_version, d.text_length, d.text_sha256, d.metadata,
       d.entity_count, d.ner_ms, d.processed_at
FROM nlp.documents AS d;
COMMENT ON VIEW analytics.documents IS
    'One row per processed comment (no raw text): raw rows; filter on processed_at.';

CREATE VIEW analytics.document_texts AS
SELECT d.request_id, d.processed_at, d.body
FROM nlp.documents AS d;
COMMENT ON VIEW analytics.document_texts IS
    'Raw comment text, NULL when STORE_TEXT=false. Separate view so it can be revoked on its own.';

-- -- ownership and grants --------------------------------------------------------------------------------
ALTER TABLE analytics.rollup_state OWNER TO nlp_owner;
ALTER TABLE analytics.entity_top OWNER TO nlp_owner;
ALTER TABLE analytics.entity_buckets OWNER TO nlp_owner;
ALTER TABLE analytics.document_buckets OWNER TO nlp_owner;
ALTER VIEW analytics.recent_mentions OWNER TO nlp_owner;
ALTER VIEW analytics.entity_mentions OWNER TO nlp_owner;
ALTER VIEW analytics.documents OWNER TO nlp_owner;
ALTER VIEW analytics.document_texts OWNER TO nlp_owner;

REVOKE ALL ON analytics.rollup_state, analytics.entity_top, analytics.entity_buckets, analytics.document_buckets,
    analytics.recent_mentions, analytics.entity_mentions, analytics.documents, analytics.document_texts
    FROM PUBLIC;
GRANT SELECT ON analytics.rollup_state, analytics.entity_top, analytics.entity_buckets,
    analytics.document_buckets, analytics.recent_mentions, analytics.entity_mentions, analytics.documents,
    analytics.document_texts TO nlp_analyst;

-- The rollup worker: the columns it rolls up, the sequence position, and its own tables.
GRANT USAGE ON SCHEMA nlp, analytics TO nlp_rollup;
GRANT SELECT (change_id, processed_at, source, label, norm, text) ON nlp.entities TO nlp_rollup;
GRANT SELECT (change_id, processed_at, source, model_name, model_version, text_length, entity_count, ner_ms)
    ON nlp.documents TO nlp_rollup;
GRANT SELECT ON SEQUENCE nlp.change_id_seq TO nlp_rollup;
GRANT SELECT, INSERT, UPDATE, DELETE ON analytics.rollup_state, analytics.entity_top, analytics.entity_buckets,
    analytics.document_buckets TO nlp_rollup;
GRANT EXECUTE ON FUNCTION analytics.hist_add(bigint[], bigint[]) TO nlp_rollup, nlp_analyst;
GRANT EXECUTE ON FUNCTION analytics.window_buckets(interval, timestamptz),
    analytics.top_entities(interval, integer, text, text, timestamptz), analytics.label_mix(interval, text, timestamptz),
    analytics.hist_percentile(bigint[], double precision), analytics.ner_ms_bin_upper(integer) TO nlp_analyst;
