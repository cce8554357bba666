-- 0002: the analytics surface: views in schema `analytics`, the only thing role nlp_analyst may read.
--
-- Analysts (psql on the replica) and the entity-stats function read these views, never the tables in
-- schema `nlp`. A view runs with its owner's (nlp_owner) rights, so SELECT on the view is enough and
-- the analyst has no path to the base tables.
--
-- The views stay simple projections / single-table aggregates so the planner inlines them: a
-- `processed_at >= now() - interval` (and `label = ...`) filter written against a view reaches the
-- scan of nlp.entities and uses its (processed_at) / (label, processed_at) indexes. Aggregating views
-- that cannot take a caller's time filter carry a fixed horizon in their WHERE clause instead, for the
-- same reason: no view ever scans the whole history.
--
-- Raw comment text lives in its own view (document_texts) so access to it can be revoked on its own.

-- One row per entity mention (no raw text of the comment, only the entity's surface form).
CREATE OR REPLACE VIEW analytics.entity_mentions AS
SELECT e.request_id,
       e.ordinal,
       e.label,
       e.norm,
       e.text,
       e.start_char,
       e.end_char,
       e.processed_at
FROM nlp.entities AS e;

COMMENT ON VIEW analytics.entity_mentions IS
    'One row per entity mention. Filter on processed_at (and label) to use the indexes; group by '
    '(label, norm) to count an entity across spellings, mode() WITHIN GROUP (ORDER BY text) to display it.';

-- One row per processed comment: everything but the raw text.
CREATE OR REPLACE VIEW analytics.documents AS
SELECT d.request_id,
       d.source,
       d.model_name,
       d.model_version,
       d.text_length,
       d.text_sha256,
       d.metadata,
       d.entity_count,
       d.ner_ms,
       d.processed_at
FROM nlp.documents AS d;

COMMENT ON VIEW analytics.documents IS
    'One row per processed comment (no raw text). ner_ms is the model time attributed to the comment, '
    'text_length its length in characters: the inputs of latency-by-size questions.';

-- The raw comment text (NULL when the function runs with STORE_TEXT=false).
CREATE OR REPLACE VIEW analytics.document_texts AS
SELECT d.request_id,
       d.processed_at,
       d.body
FROM nlp.documents AS d;

COMMENT ON VIEW analytics.document_texts IS
    'Raw comment text, NULL when STORE_TEXT=false. Separate view so it can be revoked on its own.';

-- Mentions per hour and label over the last 7 days (fixed horizon: the index range scan stays bounded).
CREATE OR REPLACE VIEW analytics.hourly_entity_counts AS
SELECT date_trunc('hour', e.processed_at) AS hour,
       e.label,
       count(*) AS mentions,
       count(DISTINCT e.request_id) AS documents,
       count(DISTINCT e.norm) AS distinct_entities
FROM nlp.entities AS e
WHERE e.processed_at >= date_trunc('hour', now()) - interval '7 days'
GROUP BY 1, 2;

COMMENT ON VIEW analytics.hourly_entity_counts IS
    'Entity mentions per hour (session time zone) and label, last 7 days.';

-- Share of each label over the last hour / day / week, from one bounded scan.
CREATE OR REPLACE VIEW analytics.label_mix AS
SELECT e.label,
       count(*) FILTER (WHERE e.processed_at >= now() - interval '1 hour') AS mentions_1h,
       count(*) FILTER (WHERE e.processed_at >= now() - interval '24 hours') AS mentions_24h,
       count(*) AS mentions_7d,
       round(100.0 * count(*) FILTER (WHERE e.processed_at >= now() - interval '24 hours')
             / nullif(sum(count(*) FILTER (WHERE e.processed_at >= now() - interval '24 hours')) OVER (), 0),
             2) AS share_24h_pct
FROM nlp.entities AS e
WHERE e.processed_at >= now() - interval '7 days'
GROUP BY e.label;

COMMENT ON VIEW analytics.label_mix IS
    'Mentions per label over the last 1h / 24h / 7d and the label''s share of the last 24h in percent.';

-- Per hour and model over the last 7 days: volume, text sizes and model-time (latency inputs).
CREATE OR REPLACE VIEW analytics.documents_summary AS
SELECT date_trunc('hour', d.processed_at) AS hour,
       d.model_name,
       d.model_version,
       count(*) AS documents,
       sum(d.entity_count) AS entities,
       round(avg(d.text_length), 1) AS avg_text_length,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY d.text_length) AS p95_text_length,
       max(d.text_length) AS max_text_length,
       round(avg(d.ner_ms)::numeric, 3) AS avg_ner_ms,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d.ner_ms)::numeric, 3) AS p50_ner_ms,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY d.ner_ms)::numeric, 3) AS p95_ner_ms,
       count(*) FILTER (WHERE d.text_length > 1000) AS long_documents,
       round((avg(d.ner_ms) FILTER (WHERE d.text_length > 1000))::numeric, 3) AS avg_ner_ms_long
FROM nlp.documents AS d
WHERE d.processed_at >= date_trunc('hour', now()) - interval '7 days'
GROUP BY 1, 2, 3;

COMMENT ON VIEW analytics.documents_summary IS
    'Per hour and model version, last 7 days: documents, entities, text length stats and model time '
    '(ner_ms) stats; *_long = texts over 1,000 characters.';

-- How fresh is what this server shows? On the replica: replay position and lag; on the primary: lag 0.
CREATE OR REPLACE VIEW analytics.freshness AS
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_receive_lsn() AS receive_lsn,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END
           AS replay_lsn,
       pg_last_xact_replay_timestamp() AS last_replayed_commit_at,
       -- Everything received is replayed: nothing is pending, so the data is as fresh as the stream.
       -- Otherwise the age of the last replayed commit bounds how old the shown data is.
       CASE
           WHEN NOT pg_is_in_recovery() THEN 0
           WHEN pg_last_wal_receive_lsn() IS NOT NULL
                AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
           ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::double precision AS lag_seconds,
       CASE WHEN pg_is_in_recovery()
            THEN greatest(coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0), 0)
            ELSE 0
       END::bigint AS pending_bytes,
       now() AS checked_at;

COMMENT ON VIEW analytics.freshness IS
    'Replication freshness of the server you are connected to. pending_bytes = received but not yet '
    'replayed WAL; the lag against the primary needs pg_current_wal_lsn() on the primary.';

-- Ownership and grants: only nlp_analyst reads, only SELECT.
ALTER VIEW analytics.entity_mentions OWNER TO nlp_owner;
ALTER VIEW analytics.documents OWNER TO nlp_owner;
ALTER VIEW analytics.document_texts OWNER TO nlp_owner;
ALTER VIEW analytics.hourly_entity_counts OWNER TO nlp_owner;
ALTER VIEW analytics.label_mix OWNER TO nlp_owner;
ALTER VIEW analytics.documents_summary OWNER TO nlp_owner;
ALTER VIEW analytics.freshness OWNER TO nlp_owner;

REVOKE ALL ON analytics.entity_mentions, analytics.documents, analytics.document_texts,
    analytics.hourly_entity_counts, analytics.label_mix, analytics.documents_summary,
    analytics.freshness FROM PUBLIC;
GRANT SELECT ON analytics.entity_mentions, analytics.documents, analytics.document_texts,
    analytics.hourly_entity_counts, analytics.label_mix, analytics.documents_summary,
    analytics.freshness TO nlp_analyst;
