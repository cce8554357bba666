-- Queries of the retention job (python -m functions.runtime.retention), as role nlp_owner on the primary.

-- name: cutoff
-- Computed once per run: rows that age past it during the run are left for the next run.
SELECT now() - make_interval(secs => %(seconds)s);

-- name: count_older
SELECT (SELECT count(*) FROM nlp.documents WHERE processed_at < %(cutoff)s),
       (SELECT count(*) FROM nlp.entities WHERE processed_at < %(cutoff)s);

-- name: pick_batch
-- Oldest first through the documents(processed_at) index; SKIP LOCKED never waits on a writer.
SELECT request_id FROM nlp.documents
WHERE processed_at < %(cutoff)s
ORDER BY processed_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: delete_entities
-- Set-wise before their documents: cheaper than row-by-row ON DELETE CASCADE (kept as a safety net).
DELETE FROM nlp.entities WHERE request_id = ANY(%(ids)s);

-- name: delete_documents
DELETE FROM nlp.documents WHERE request_id = ANY(%(ids)s);
