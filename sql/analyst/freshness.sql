-- How fresh is the data on this server? Run it next to any other query.
--
--   psql "$STATS_REPLICA_DSN" -f sql/analyst/freshness.sql
--
-- lag_seconds is 0 when the replica has replayed everything it received, else the age of the last
-- replayed commit; pending_bytes is WAL received but not yet replayed. On the primary: in_recovery = f.
SELECT in_recovery, receive_lsn, replay_lsn, last_replayed_commit_at, round(lag_seconds::numeric, 3)
       AS lag_seconds, pending_bytes, checked_at
FROM analytics.freshness;
