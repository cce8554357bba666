-- Queries every pool runs, whatever its role (functions/runtime/db.py).

-- name: begin_timeouts
-- First statement of every transaction: statement and lock timeouts for THIS transaction only
-- (is_local = true), in one round trip. Nothing is left in the session, so the bounds hold behind
-- PgBouncer in transaction pooling mode, where consecutive transactions may run on different server
-- connections and a session SET would leak to other clients.
SELECT set_config('statement_timeout', %(timeout_ms)s, true),
       set_config('lock_timeout', %(timeout_ms)s, true);

-- name: read_only_session
-- Analytics pools only: a session default as a second line of defence (the analyst role cannot write
-- anyway, and every transaction of a read pool starts as BEGIN READ ONLY).
SELECT set_config('default_transaction_read_only', 'on', false);

-- name: ping
SELECT 1;

-- name: begin
-- A pipelined write transaction (Database.pipelined_transaction): sent with the timeouts and the first
-- statement, not waited for on its own.
BEGIN;

-- name: commit
COMMIT;

-- name: rollback
ROLLBACK;
