-- Queries run by entity-stats as role nlp_analyst, on the replica (or on the primary for strong reads /
-- fallback). They read schema `analytics` only: the rollup tables the rollup worker keeps (migration 0004,
-- functions/runtime/rollup.py), and for read-your-writes answers the raw rows after the watermark.
-- A window is a set of buckets (functions/runtime/windows.py): minute buckets in [minute_start, minute_end)
-- and hour buckets in [hour_start, hour_end). source '' means all sources.

-- name: rollup_position
-- Where the rollups stand on this server (as far as it has replayed them).
SELECT last_change_id, watermark, watermark_lsn::text, hours_merged_before
FROM analytics.rollup_state WHERE name = 'entities';

-- name: top_entities
-- The top `limit` entities of the window (one label or all) by their listed mentions (a lower bound),
-- plus, when with_tail, the raw mentions committed after the watermark. error: how many more mentions an
-- entity may have had: its listed errors plus the unlisted_max of every bucket it is missing from. text:
-- the spelling in the newest bucket (or the raw tail).
WITH lists AS (
    SELECT t.resolution, t.bucket, t.label, t.norm, t.text, t.mentions, t.mentions_error
    FROM analytics.entity_top AS t
    WHERE t.source = %(source)s
      AND (%(label)s::text IS NULL OR t.label = %(label)s)
      AND ((t.resolution = 'minute' AND t.bucket >= %(minute_start)s AND t.bucket < %(minute_end)s)
        OR (t.resolution = 'hour' AND t.bucket >= %(hour_start)s AND t.bucket < %(hour_end)s))
), buckets AS (
    SELECT b.resolution, b.bucket, b.label, b.unlisted_max
    FROM analytics.entity_buckets AS b
    WHERE b.source = %(source)s
      AND (%(label)s::text IS NULL OR b.label = %(label)s)
      AND ((b.resolution = 'minute' AND b.bucket >= %(minute_start)s AND b.bucket < %(minute_end)s)
        OR (b.resolution = 'hour' AND b.bucket >= %(hour_start)s AND b.bucket < %(hour_end)s))
), tail AS (
    SELECT r.label, r.norm, count(*) AS mentions, (array_agg(r.text ORDER BY r.change_id DESC))[1] AS text
    FROM analytics.recent_mentions AS r
    WHERE %(with_tail)s AND r.processed_at >= %(window_start)s
      AND (%(source)s = '' OR r.source = %(source)s)
      AND (%(label)s::text IS NULL OR r.label = %(label)s)
    GROUP BY r.label, r.norm
), ranked AS (
    SELECT label, norm, sum(mentions) AS mentions
    FROM (SELECT label, norm, mentions FROM lists UNION ALL SELECT label, norm, mentions FROM tail) AS u
    GROUP BY label, norm
    ORDER BY sum(mentions) DESC, label, norm
    LIMIT %(limit)s
), label_unlisted AS (
    SELECT label, sum(unlisted_max) AS total FROM buckets GROUP BY label
), present AS (
    SELECT p.label, p.norm, sum(p.mentions_error) AS listed_error, sum(b.unlisted_max) AS covered,
           (array_agg(p.text ORDER BY p.bucket DESC, p.resolution))[1] AS text
    FROM lists AS p
    JOIN ranked AS r ON r.label = p.label AND r.norm = p.norm
    JOIN buckets AS b ON b.resolution = p.resolution AND b.bucket = p.bucket AND b.label = p.label
    GROUP BY p.label, p.norm
)
SELECT coalesce(t.text, p.text) AS text, r.label, r.mentions,
       coalesce(p.listed_error, 0) + coalesce(u.total, 0) - coalesce(p.covered, 0) AS error
FROM ranked AS r
LEFT JOIN label_unlisted AS u ON u.label = r.label
LEFT JOIN present AS p ON p.label = r.label AND p.norm = r.norm
LEFT JOIN tail AS t ON t.label = r.label AND t.norm = r.norm
ORDER BY r.mentions DESC, r.label, r.norm;

-- name: label_mix
-- Exact mentions per label in the window (every label: the mix does not follow `label`), plus the raw
-- tail when with_tail.
SELECT label, sum(mentions) AS mentions
FROM (SELECT b.label, b.mentions
      FROM analytics.entity_buckets AS b
      WHERE b.source = %(source)s
        AND ((b.resolution = 'minute' AND b.bucket >= %(minute_start)s AND b.bucket < %(minute_end)s)
          OR (b.resolution = 'hour' AND b.bucket >= %(hour_start)s AND b.bucket < %(hour_end)s))
      UNION ALL
      SELECT r.label, 1
      FROM analytics.recent_mentions AS r
      WHERE %(with_tail)s AND r.processed_at >= %(window_start)s AND (%(source)s = '' OR r.source = %(source)s)
     ) AS u
GROUP BY label
ORDER BY sum(mentions) DESC, label;

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
