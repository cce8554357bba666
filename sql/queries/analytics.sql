-- Queries run by entity-stats as role nlp_analyst, on the replica (or on the primary for strong reads /
-- fallback). They read the views of schema `analytics` only (migration 0002). Parameters use psycopg's
-- %(name)s style; a Python timedelta adapts to interval.

-- name: top_entities
-- Most mentioned entities of every label in the window. An entity is (label, norm); it is displayed
-- with its most recent spelling. The count only needs (label, processed_at, norm), which the index
-- entities_label_processed_at_idx holds (index-only scan when the visibility map is current); the
-- spelling is then fetched for the few winners only, by a backward scan of that index that stops at
-- the first match. Ties are broken by label and norm so the order is stable.
SELECT latest.text, top.label, top.count
FROM (SELECT label, norm, count(*) AS count
      FROM analytics.entity_mentions
      WHERE processed_at >= now() - %(window)s::interval
      GROUP BY label, norm
      ORDER BY count DESC, label, norm
      LIMIT %(limit)s) AS top
CROSS JOIN LATERAL (
      SELECT m.text
      FROM analytics.entity_mentions AS m
      WHERE m.label = top.label AND m.norm = top.norm
        AND m.processed_at >= now() - %(window)s::interval
      ORDER BY m.processed_at DESC
      LIMIT 1) AS latest
ORDER BY top.count DESC, top.label, top.norm;

-- name: top_entities_for_label
-- Same for one label. Kept as its own statement (not `label = %(label)s OR %(label)s IS NULL`) so the
-- plan can always use the (label, processed_at) index.
SELECT latest.text, top.label, top.count
FROM (SELECT label, norm, count(*) AS count
      FROM analytics.entity_mentions
      WHERE processed_at >= now() - %(window)s::interval
        AND label = %(label)s
      GROUP BY label, norm
      ORDER BY count DESC, norm
      LIMIT %(limit)s) AS top
CROSS JOIN LATERAL (
      SELECT m.text
      FROM analytics.entity_mentions AS m
      WHERE m.label = top.label AND m.norm = top.norm
        AND m.processed_at >= now() - %(window)s::interval
      ORDER BY m.processed_at DESC
      LIMIT 1) AS latest
ORDER BY top.count DESC, top.norm;

-- name: label_mix
-- Mentions per label in the window (always every label: the dashboard's mix does not follow `label`).
SELECT label, count(*) AS count
FROM analytics.entity_mentions
WHERE processed_at >= now() - %(window)s::interval
GROUP BY label
ORDER BY count DESC, label;

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
