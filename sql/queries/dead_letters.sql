-- Dead letters (nlp.dead_letters, migration 0005). record_* run as nlp_writer (the queue-worker, the
-- function); the rest as nlp_owner (python -m functions.runtime.dead_letters, retention).

-- name: record_rejected
-- The function refused an input for good: keep the first record, whoever wrote it (the queue-worker's own
-- record, written after the function answered, carries the attempts).
INSERT INTO nlp.dead_letters (function, call_id, reason, status, error_code, error_message, attempts, body,
                              content_type, headers, path, query, recorded_by)
VALUES (%(function)s, %(call_id)s, 'rejected', %(status)s, %(error_code)s, %(error_message)s, NULL, %(body)s,
        %(content_type)s, %(headers)s, %(path)s, %(query)s, 'function')
ON CONFLICT (function, call_id) DO NOTHING;

-- name: record_final
-- The queue-worker's final outcome of an invocation that did not end in a 2xx: a new letter, or the same
-- letter reopened (a redriven invocation that failed again stays one letter). Returns the row's state
-- before (NULL for a new letter) and its redrives.
INSERT INTO nlp.dead_letters AS d (function, call_id, reason, status, error_code, error_message, attempts,
                                   body, content_type, headers, path, query, recorded_by)
VALUES (%(function)s, %(call_id)s, %(reason)s, %(status)s, %(error_code)s, %(error_message)s, %(attempts)s,
        %(body)s, %(content_type)s, %(headers)s, %(path)s, %(query)s, 'queue-worker')
ON CONFLICT (function, call_id) DO UPDATE
SET state = 'open', reason = EXCLUDED.reason, status = EXCLUDED.status,
    error_code = coalesce(EXCLUDED.error_code, d.error_code),
    error_message = coalesce(EXCLUDED.error_message, d.error_message),
    attempts = EXCLUDED.attempts, recorded_by = 'queue-worker', last_failed_at = now()
RETURNING d.redrives;

-- name: resolve
-- A redriven invocation ended in a 2xx.
UPDATE nlp.dead_letters SET state = 'resolved'
WHERE function = %(function)s AND call_id = %(call_id)s AND state = 'redriven';

-- name: list_letters
-- Oldest first; state NULL lists every state.
SELECT function, call_id, state, reason, status, error_code, error_message, attempts, body, content_type,
       headers, path, query, recorded_by, redrives, first_failed_at, last_failed_at, redriven_at
FROM nlp.dead_letters
WHERE (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(function)s::text IS NULL OR function = %(function)s)
  AND (%(call_id)s::text IS NULL OR call_id = %(call_id)s)
ORDER BY last_failed_at, function, call_id
LIMIT %(limit)s;

-- name: mark_redriven
-- Before the request is sent again: a redriven invocation that fails again reopens the letter, which it
-- could not if the mark came after the failure.
UPDATE nlp.dead_letters
SET state = 'redriven', redrives = redrives + 1, redriven_at = now()
WHERE function = %(function)s AND call_id = %(call_id)s AND state = 'open'
RETURNING redrives;

-- name: unmark_redriven
-- The gateway did not queue it: open again, as it was.
UPDATE nlp.dead_letters SET state = 'open', redrives = redrives - 1
WHERE function = %(function)s AND call_id = %(call_id)s AND state = 'redriven' AND redrives = %(redrives)s;

-- name: count_by_state
SELECT state, count(*) FROM nlp.dead_letters GROUP BY state;

-- name: purge_older
-- Retention of dead letters: by last failure, whatever the state.
DELETE FROM nlp.dead_letters WHERE last_failed_at < now() - make_interval(secs => %(seconds)s);
