-- Queries run by ner-processor as role nlp_writer (INSERT on nlp.document_keys, nlp.documents and
-- nlp.entities, SELECT on nlp.document_keys for the idempotency check). Arrays keep a whole group commit
-- to one statement. The parameter document_ids fills the column request_id (docs/data-model.md).

-- name: existing_documents
-- The stored fingerprint of document ids that are already persisted (idempotency check).
SELECT request_id, text_sha256, model_name, model_version
FROM nlp.document_keys
WHERE request_id = ANY(%(document_ids)s::text[]);

-- name: insert_new
-- Each document with its key and its entities, in one statement that the writer does not wait for: it
-- travels with BEGIN, the timeouts, COMMIT and the LSN query (one round trip). A key stored already (by a
-- client's retry, or by another writer first) fails the statement with unique_violation and the whole
-- transaction with it; the caller then checks the keys first. A key stored by a transaction still open
-- waits for it, as a unique index does. processed_at and change_id by default: the transaction time for
-- documents and entities alike.
WITH keys AS (
    INSERT INTO nlp.document_keys (request_id, text_sha256, model_name, model_version)
    SELECT * FROM unnest(%(document_ids)s::text[], %(text_sha256s)s::text[], %(model_names)s::text[],
                         %(model_versions)s::text[])
), documents AS (
    INSERT INTO nlp.documents
        (request_id, source, model_name, model_version, text_length, text_sha256, body, metadata,
         entity_count, ner_ms)
    SELECT d.request_id, d.source, d.model_name, d.model_version, d.text_length, d.text_sha256, d.body,
           d.metadata::jsonb, d.entity_count, d.ner_ms
    FROM unnest(%(document_ids)s::text[], %(sources)s::text[], %(model_names)s::text[],
                %(model_versions)s::text[], %(text_lengths)s::int[], %(text_sha256s)s::text[],
                %(bodies)s::text[], %(metadata)s::text[], %(entity_counts)s::int[], %(ner_ms)s::real[])
         AS d(request_id, source, model_name, model_version, text_length, text_sha256, body, metadata,
              entity_count, ner_ms)
)
INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char, source)
SELECT e.request_id, e.ordinal, e.label, e.text, e.norm, e.start_char, e.end_char, e.source
FROM unnest(%(entity_document_ids)s::text[], %(ordinals)s::int[], %(labels)s::text[], %(texts)s::text[],
            %(norms)s::text[], %(start_chars)s::int[], %(end_chars)s::int[], %(entity_sources)s::text[])
     AS e(request_id, ordinal, label, text, norm, start_char, end_char, source);

-- name: current_lsn
-- Taken after COMMIT: a replica that has replayed this LSN has replayed the commit.
SELECT pg_current_wal_lsn()::text;
