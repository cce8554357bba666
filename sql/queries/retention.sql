-- Queries of the retention job (python -m functions.runtime.retention), as role nlp_owner on the primary.

-- name: cutoff
-- Computed once per run: rows that age past it during the run are left for the next run.
SELECT now() - make_interval(secs => %(seconds)s);

-- name: ensure_partitions
SELECT nlp.ensure_partitions(%(days_ahead)s);

-- name: droppable
-- Daily partitions whose whole day lies before the cutoff (the history partition too, once all of it
-- does), with the planner's row estimate, oldest first.
SELECT r.parent, r.partition, r.range_end, greatest(c.reltuples, 0)::bigint
FROM nlp.partition_ranges() AS r
JOIN pg_class AS c ON c.relname = r.partition AND c.relnamespace = 'nlp'::regnamespace
WHERE r.range_end <= %(cutoff)s
ORDER BY r.range_end, r.parent;

-- name: pending_detach
-- Partitions a cancelled DETACH ... CONCURRENTLY left half-detached (they need FINALIZE).
SELECT p.relname, c.relname
FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
JOIN pg_class AS p ON p.oid = i.inhparent
WHERE i.inhdetachpending AND p.relnamespace = 'nlp'::regnamespace;

-- name: history_exists
SELECT to_regclass('nlp.documents_history') IS NOT NULL AND to_regclass('nlp.entities_history') IS NOT NULL;

-- name: count_history
-- What the history partitions (rows from before time partitioning) still hold before the cutoff.
SELECT (SELECT count(*) FROM nlp.documents_history WHERE processed_at < %(cutoff)s),
       (SELECT count(*) FROM nlp.entities_history WHERE processed_at < %(cutoff)s);

-- name: pick_history_batch
-- Oldest first through the history partition's processed_at index; SKIP LOCKED never waits on a writer.
SELECT request_id FROM nlp.documents_history
WHERE processed_at < %(cutoff)s
ORDER BY processed_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: delete_history_entities
DELETE FROM nlp.entities_history WHERE request_id = ANY(%(ids)s);

-- name: delete_history_documents
DELETE FROM nlp.documents_history WHERE request_id = ANY(%(ids)s);

-- name: count_keys
SELECT count(*) FROM nlp.document_keys WHERE processed_at < %(cutoff)s;

-- name: delete_keys
-- The idempotency keys of documents past the cutoff, in batches (one narrow row per document).
DELETE FROM nlp.document_keys
WHERE request_id = ANY(ARRAY(SELECT request_id FROM nlp.document_keys
                             WHERE processed_at < %(cutoff)s
                             ORDER BY processed_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED));

-- name: detach_partition
-- A template: {parent} and {partition} are identifiers composed by the caller (psycopg.sql). CONCURRENTLY
-- takes only a SHARE UPDATE EXCLUSIVE lock on the parent: writers go on (it cannot run in a transaction).
ALTER TABLE nlp.{parent} DETACH PARTITION nlp.{partition} CONCURRENTLY;

-- name: finalize_detach
ALTER TABLE nlp.{parent} DETACH PARTITION nlp.{partition} FINALIZE;

-- name: drop_partition
DROP TABLE nlp.{partition};
