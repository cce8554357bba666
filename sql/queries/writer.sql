-- Queries run by ner-processor as role nlp_writer (INSERT on nlp.document_keys, nlp.documents and
-- nlp.entities, SELECT on nlp.document_keys for the idempotency check). Arrays keep a whole group commit
-- to one statement per table. The parameter document_ids fills the column request_id (docs/data-model.md).

-- name: existing_documents
-- The stored fingerprint of document ids that are already persisted (idempotency check).
SELECT request_id, text_sha256, model_name, model_version
FROM nlp.document_keys
WHERE request_id = ANY(%(document_ids)s::text[]);

-- name: insert_keys
-- One key per document; a concurrent writer may have inserted the same id: those are skipped and
-- re-checked by the caller. Returns the ids this statement inserted.
INSERT INTO nlp.document_keys (request_id, text_sha256, model_name, model_version)
SELECT * FROM unnest(%(document_ids)s::text[], %(text_sha256s)s::text[], %(model_names)s::text[],
                     %(model_versions)s::text[])
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id;

-- name: insert_documents
-- The documents whose keys the statement above inserted (processed_at and change_id by default).
INSERT INTO nlp.documents
    (request_id, source, model_name, model_version, text_length, text_sha256, body, metadata,
     entity_count, ner_ms)
SELECT d.request_id, d.source, d.model_name, d.model_version, d.text_length, d.text_sha256, d.body,
       d.metadata::jsonb, d.entity_count, d.ner_ms
FROM unnest(%(document_ids)s::text[], %(sources)s::text[], %(model_names)s::text[],
            %(model_versions)s::text[], %(text_lengths)s::int[], %(text_sha256s)s::text[],
            %(bodies)s::text[], %(metadata)s::text[], %(entity_counts)s::int[], %(ner_ms)s::real[])
     AS d(request_id, source, model_name, model_version, text_length, text_sha256, body, metadata,
          entity_count, ner_ms);

-- name: copy_entities
-- All entities of the documents inserted above, bulk-loaded; processed_at and change_id by default: the
-- transaction time, the same instant as the documents' processed_at.
COPY nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char, source) FROM STDIN;

-- name: current_lsn
-- Taken after COMMIT: a replica that has replayed this LSN has replayed the commit.
SELECT pg_current_wal_lsn()::text;
