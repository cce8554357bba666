-- The campaign replay's reads (python -m devtools.campaign, devtools/campaign_report.py), as nlp_owner on
-- the primary of its own make run stack. A run's comment ids share a prefix; the processed_at bound keeps
-- the counts on the documents_processed_at_idx range instead of a scan of the whole table.

-- name: count_persisted
SELECT count(*) FROM nlp.documents WHERE processed_at >= %(since)s AND request_id LIKE %(like)s;

-- name: count_finished
SELECT (SELECT count(*) FROM nlp.documents WHERE processed_at >= %(since)s AND request_id LIKE %(like)s)
     + (SELECT count(*) FROM nlp.dead_letters WHERE call_id LIKE %(like)s);

-- name: documents_of_run
SELECT request_id, processed_at FROM nlp.documents WHERE processed_at >= %(since)s AND request_id LIKE %(like)s;

-- name: dead_letters_of_run
SELECT call_id, reason, status, state, body, error_code, first_failed_at FROM nlp.dead_letters
WHERE call_id LIKE %(like)s;
