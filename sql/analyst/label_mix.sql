-- Label mix: mentions per label over the last hour, day and week, and each label's share of the day,
-- from the rollups on the replica (exact counts).
--
--   psql "$STATS_REPLICA_DSN" -v source=spring-sale -f sql/analyst/label_mix.sql
\if :{?source} \else \set source '' \endif

WITH h AS (SELECT label, mentions FROM analytics.label_mix('1 hour', :'source')),
     d AS (SELECT label, mentions FROM analytics.label_mix('24 hours', :'source')),
     w AS (SELECT label, mentions FROM analytics.label_mix('7 days', :'source'))
SELECT w.label, coalesce(h.mentions, 0) AS mentions_1h, coalesce(d.mentions, 0) AS mentions_24h,
       w.mentions AS mentions_7d,
       round(100.0 * coalesce(d.mentions, 0) / nullif(sum(d.mentions) OVER (), 0), 2) AS share_24h_pct
FROM w
LEFT JOIN d ON d.label = w.label
LEFT JOIN h ON h.label = w.label
ORDER BY mentions_24h DESC, mentions_7d DESC, w.label;
