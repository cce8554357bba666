-- 0001_schema: documents and entities (schema nlp), the empty analytics schema, and the grants.
--
-- Applied by `python -m functions.runtime.migrate` as nlp_owner, so nlp_owner owns every object.
-- Append-only: once applied anywhere, never edit this file; add 0002_..., 0003_... instead.
-- Roles come from sql/roles/bootstrap_roles.sql (run before any migration).

-- Nobody but the owner may create objects in schema public (already the default on PostgreSQL 15;
-- explicit for servers created by older versions or with a relaxed template).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA nlp AUTHORIZATION nlp_owner;
COMMENT ON SCHEMA nlp IS 'NER results written by ner-processor (role nlp_writer); base tables, no analyst access';

-- One row per processed comment. request_id is the idempotency key: a retry with the same text hash and
-- model is a no-op, different content under the same id is rejected (409 request_id_conflict).
CREATE TABLE nlp.documents (
    request_id    text PRIMARY KEY,
    source        text,
    model_name    text NOT NULL,
    model_version text NOT NULL,
    text_length   integer NOT NULL CHECK (text_length >= 0),
    text_sha256   text NOT NULL CHECK (text_sha256 ~ '^[0-9a-f]{64}$'),
    body          text,   -- raw comment text; NULL when the function runs with STORE_TEXT=false
    metadata      jsonb,
    entity_count  integer NOT NULL CHECK (entity_count >= 0),
    ner_ms        real,   -- model time attributed to this document (latency analytics)
    processed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN nlp.documents.body IS 'raw text (STORE_TEXT=true, the default: analysts need it); not readable by nlp_writer';

-- One row per entity of a document, in doc.ents order. processed_at is copied from the document so the
-- analytics window queries never need a join.
CREATE TABLE nlp.entities (
    request_id    text NOT NULL REFERENCES nlp.documents (request_id) ON DELETE CASCADE,
    ordinal       integer NOT NULL CHECK (ordinal >= 0),
    label         text NOT NULL,
    text          text NOT NULL,
    norm          text NOT NULL,   -- casefold()ed, whitespace-collapsed text: the grouping key
    start_char    integer NOT NULL CHECK (start_char >= 0),
    end_char      integer NOT NULL,
    processed_at  timestamptz NOT NULL,
    PRIMARY KEY (request_id, ordinal),   -- also serves the FK (cascade delete, retention) by prefix
    CHECK (end_char >= start_char)
);

-- Indexes used by the analytics views (see sql/README.md for the measurements behind them):
-- * window + label ("top ORG entities in the last hour"): range scan on (label, processed_at); norm is
--   INCLUDEd so the GROUP BY norm can be an index-only scan on a vacuumed table.
CREATE INDEX entities_label_processed_at_idx ON nlp.entities (label, processed_at) INCLUDE (norm);
-- * window over all labels (label mix, hourly counts): rows arrive in processed_at order, so a BRIN index
--   finds the recent block ranges for a few kB of index and almost no write cost.
CREATE INDEX entities_processed_at_brin ON nlp.entities USING brin (processed_at)
    WITH (pages_per_range = 32, autosummarize = on);
-- * documents by time: latency analytics over a window and the batched retention DELETE.
CREATE INDEX documents_processed_at_idx ON nlp.documents (processed_at);

-- Insert-only tables: vacuum them more often than the default 20% growth so the visibility map stays
-- current (index-only scans above) on the primary and on the replica.
ALTER TABLE nlp.entities SET (autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE nlp.documents SET (autovacuum_vacuum_insert_scale_factor = 0.05);

-- Writer (ner-processor): insert, plus read back the five columns needed to decide whether a replayed
-- request id is a duplicate (same text_sha256 + model) or a conflict. No UPDATE/DELETE/TRUNCATE, no body.
GRANT USAGE ON SCHEMA nlp TO nlp_writer;
GRANT INSERT ON nlp.documents, nlp.entities TO nlp_writer;
GRANT SELECT (request_id, text_sha256, model_name, model_version, entity_count) ON nlp.documents TO nlp_writer;

-- Analytics: views over nlp.* owned by nlp_owner (added by later migrations). Analysts only get USAGE
-- here and SELECT on what nlp_owner creates in this schema; they never see the base tables.
CREATE SCHEMA analytics AUTHORIZATION nlp_owner;
COMMENT ON SCHEMA analytics IS 'read-only views for nlp_analyst (dashboards, psql on the replica)';
GRANT USAGE ON SCHEMA analytics TO nlp_analyst;
ALTER DEFAULT PRIVILEGES FOR ROLE nlp_owner IN SCHEMA analytics GRANT SELECT ON TABLES TO nlp_analyst;
