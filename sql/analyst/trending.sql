-- Trending entities: this window against the window before it, from the rollups on the replica.
--
--   psql "$STATS_REPLICA_DSN" -v window='1 hour' -v min_mentions=2 -v top=20 -f sql/analyst/trending.sql
--
-- Variables (optional): window (default '1 hour'), min_mentions (in this window, default 2), top (rows,
-- default 20), source (default: every source). Both windows are read from the rollups' top lists
-- (analytics.top_entities with 500 entities each): an entity outside the previous window's list counts
-- 0 there and is_new, which for a long-tail entity can also mean "below the list's cut".
--   current   mentions in the window (the last `window` up to the watermark)
--   previous  mentions in the window before it
--   growth    current / previous (NULL when previous is 0)
\if :{?window} \else \set window '1 hour' \endif
\if :{?min_mentions} \else \set min_mentions 2 \endif
\if :{?top} \else \set top 20 \endif
\if :{?source} \else \set source '' \endif

WITH now_top AS (
    SELECT label, norm, text, mentions FROM analytics.top_entities(:'window'::interval, 500, NULL, :'source')
), two_top AS (
    SELECT label, norm, mentions FROM analytics.top_entities(2 * :'window'::interval, 1000, NULL, :'source')
)
SELECT n.label, n.text AS entity, n.mentions AS current,
       greatest(coalesce(t.mentions, n.mentions) - n.mentions, 0) AS previous,
       n.mentions - greatest(coalesce(t.mentions, n.mentions) - n.mentions, 0) AS delta,
       round(n.mentions::numeric / nullif(greatest(coalesce(t.mentions, n.mentions) - n.mentions, 0), 0), 2)
           AS growth,
       coalesce(t.mentions, n.mentions) - n.mentions <= 0 AS is_new
FROM now_top AS n
LEFT JOIN two_top AS t ON t.label = n.label AND t.norm = n.norm
WHERE n.mentions >= :min_mentions
ORDER BY is_new DESC, delta DESC, current DESC, n.label, n.text
LIMIT :top;
