-- How fresh is what this server shows? Run it next to any other query.
--
--   psql "$STATS_REPLICA_DSN" -f sql/analyst/freshness.sql
--
-- Replication: lag_seconds is 0 when the replica has replayed everything it received, else the age of the
-- last replayed commit; pending_bytes is WAL received but not yet replayed. Rollups: every comment committed
-- before `watermark` is counted by the rollup files; rollup_lag_seconds is how far that is behind now.
SELECT f.in_recovery, f.receive_lsn, f.replay_lsn, f.last_replayed_commit_at,
       round(f.lag_seconds::numeric, 3) AS lag_seconds, f.pending_bytes,
       r.watermark, r.watermark_lsn, round(extract(epoch FROM f.checked_at - r.watermark)::numeric, 3)
           AS rollup_lag_seconds, f.checked_at
FROM analytics.freshness AS f
CROSS JOIN analytics.rollup_state AS r
WHERE r.name = 'entities';
