-- Queries run by entity-stats as role nlp_analyst, on the replica (or on the primary for strong reads /
-- fallback). They read schema `analytics` only: the rollup tables the rollup worker keeps (migration 0004,
-- functions/runtime/rollup.py), and for read-your-writes answers the raw rows after the watermark.
-- A window is a set of buckets (analytics.window_buckets, migration 0004). source '' means all sources.

-- name: rollup_position
-- Where the rollups stand on this server (as far as it has replayed them).
SELECT last_change_id, watermark, watermark_lsn::text, hours_merged_before
FROM analytics.rollup_state WHERE name = 'entities';

-- name: window
-- The window an answer covers (analytics.window_buckets: at least what was asked, on bucket boundaries).
SELECT min(window_start), max(window_end) FROM analytics.window_buckets(%(window)s, %(until)s);

-- name: top_entities
-- The window's top entities with their error bounds (analytics.top_entities, migration 0004); `until`
-- set: a read-your-writes answer that adds the raw mentions after the watermark.
SELECT text, label, mentions, mentions_error
FROM analytics.top_entities(%(window)s, %(limit)s, %(label)s, %(source)s, %(until)s);

-- name: label_mix
-- Exact mentions per label in the window (every label: the mix does not follow `label`).
SELECT label, mentions FROM analytics.label_mix(%(window)s, %(source)s, %(until)s);

-- name: tail_size
-- Raw mentions after the watermark, counted up to a bound: a read-your-writes answer adds them to the
-- rollups, which is only cheap while the worker is current.
SELECT count(*) FROM (SELECT 1 FROM analytics.recent_mentions LIMIT %(bound)s) AS r;

-- name: replica_freshness
-- Where this server's data stands. On a standby: replay_lsn, the age of the last replayed commit, and
-- the standby's own view of its lag (0 when everything received has been replayed, else that age;
-- pending_bytes = received but not replayed). The caller prefers the comparison with the primary's
-- position when it can get it: a standby whose receiver is behind or disconnected also has
-- receive = replay. On a server that is not in recovery replay_lsn is its flush position.
-- Run it BEFORE the data queries: they take their snapshot afterwards, so the data they see is at
-- least as new as replay_lsn.
SELECT in_recovery,
       replay_lsn::text AS replay_lsn,
       lag_seconds AS local_lag_seconds,
       pending_bytes,
       extract(epoch FROM checked_at - last_replayed_commit_at)::double precision AS replay_age_seconds,
       checked_at
FROM analytics.freshness;

-- name: replica_replayed
-- Has this server replayed `lsn`? (Polled by consistency=strong / min_lsn reads.) `paused` says replay
-- is paused, so waiting is pointless.
SELECT coalesce(pg_last_wal_replay_lsn(), pg_current_wal_flush_lsn()) >= %(lsn)s::pg_lsn AS replayed,
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() <> 'not paused' ELSE false END
           AS paused;

-- name: primary_position
-- The primary's flushed WAL position, and how far `replay_lsn` (the replica's, may be NULL) is behind it.
-- Flush, not insert/write position: a standby can only receive flushed WAL, and every commit a client
-- was told about (synchronous_commit=on) is at or before it.
SELECT pg_current_wal_flush_lsn()::text AS lsn,
       CASE WHEN %(replay_lsn)s::pg_lsn IS NULL THEN NULL
            ELSE greatest(pg_wal_lsn_diff(pg_current_wal_flush_lsn(), %(replay_lsn)s::pg_lsn), 0)::bigint
       END AS lag_bytes;
