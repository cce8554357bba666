-- 0005_dead_letters: asynchronous invocations that ended without a 2xx, kept until someone redrives them.
--
-- One row per original invocation (function, call id): the final status, why it failed (a status that is
-- not retried, or the retries ran out), the function's error code and message, the attempts, and the
-- original request (body bytes, content type, the headers that matter, path and query) so it can be sent
-- again. Written by the queue-worker stand-in of `make run` (every final failure) and by ner-processor
-- (the inputs it refuses for good) as nlp_writer; listed, redriven and purged by
-- `python -m functions.runtime.dead_letters` as nlp_owner (docs/data-model.md, "Dead letters").
-- Retention is its own: `--dead-letter-days` of the retention job (by last failure, whatever the state).

CREATE TABLE nlp.dead_letters (
    function        text NOT NULL,
    call_id         text NOT NULL,
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'redriven', 'resolved')),
    reason          text NOT NULL CHECK (reason IN ('rejected', 'retries_exhausted')),
    status          integer NOT NULL CHECK (status BETWEEN 0 AND 599),  -- 0: the function never answered
    error_code      text,   -- the function's JSON "error" (e.g. empty_text), when it answered one
    error_message   text,   -- its "message": never the comment's text (docs/api.md)
    attempts        integer CHECK (attempts >= 1),  -- NULL when only the function recorded it
    body            bytea NOT NULL,   -- the original request body, as the function received it
    content_type    text,
    headers         jsonb NOT NULL DEFAULT '{}',  -- the request headers that matter (Content-Type, X-Callback-Url, ...)
    path            text NOT NULL DEFAULT '/',
    query           text NOT NULL DEFAULT '',
    recorded_by     text NOT NULL CHECK (recorded_by IN ('queue-worker', 'function')),
    redrives        integer NOT NULL DEFAULT 0 CHECK (redrives >= 0),
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    redriven_at     timestamptz,
    PRIMARY KEY (function, call_id)
);
COMMENT ON TABLE nlp.dead_letters IS 'async invocations that ended without a 2xx: one row per (function, call id)';
COMMENT ON COLUMN nlp.dead_letters.body IS 'the original request body (raw comment text): not readable by nlp_writer';

-- `make dead-letters` lists the open ones oldest first; retention deletes by last failure.
CREATE INDEX dead_letters_state_failed_idx ON nlp.dead_letters (state, last_failed_at);
CREATE INDEX dead_letters_last_failed_idx ON nlp.dead_letters (last_failed_at);

-- nlp_writer records failures (INSERT; the queue-worker's upsert reopens a redriven letter with UPDATE) and
-- reads back only the columns an upsert needs: never the body (error messages name fields, never the text).
GRANT INSERT ON nlp.dead_letters TO nlp_writer;
GRANT UPDATE (state, reason, status, error_code, error_message, attempts, recorded_by, last_failed_at)
    ON nlp.dead_letters TO nlp_writer;
GRANT SELECT (function, call_id, state, reason, status, error_code, error_message, attempts, recorded_by, redrives,
              first_failed_at, last_failed_at) ON nlp.dead_letters TO nlp_writer;
