-- Label mix: mentions per label over the last hour, day and week, and each label's share of the day.
--
--   psql "$STATS_REPLICA_DSN" -f sql/analyst/label_mix.sql
SELECT label, mentions_1h, mentions_24h, mentions_7d, share_24h_pct
FROM analytics.label_mix
ORDER BY mentions_24h DESC, mentions_7d DESC, label;
