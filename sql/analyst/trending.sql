-- New and trending entities: this window against the window before it.
--
--   psql "$STATS_REPLICA_DSN" -v window='1 hour' -v lookback='7 days' -v min_mentions=2 \
--        -f sql/analyst/trending.sql
--
-- Variables (optional): window (default '1 hour'), lookback (how far back "seen before" looks, default
-- '7 days'), min_mentions (in this window, default 2), top (rows, default 20).
--   current   mentions in [now - window, now)
--   previous  mentions in [now - 2 * window, now - window)
--   is_new    never mentioned in the lookback period before this window
--   growth    current / previous (NULL when previous is 0)
-- One scan of the index range [now - window - lookback, now); no per-entity lookups.
\if :{?window} \else \set window '1 hour' \endif
\if :{?lookback} \else \set lookback '7 days' \endif
\if :{?min_mentions} \else \set min_mentions 2 \endif
\if :{?top} \else \set top 20 \endif

WITH per_entity AS (
    SELECT label,
           norm,
           mode() WITHIN GROUP (ORDER BY text)
               FILTER (WHERE processed_at >= now() - :'window'::interval) AS entity,
           count(*) FILTER (WHERE processed_at >= now() - :'window'::interval) AS current,
           count(*) FILTER (WHERE processed_at < now() - :'window'::interval
                              AND processed_at >= now() - 2 * :'window'::interval) AS previous,
           count(*) FILTER (WHERE processed_at < now() - :'window'::interval) AS before
    FROM analytics.entity_mentions
    WHERE processed_at >= now() - :'window'::interval
                          - greatest(:'lookback'::interval, :'window'::interval)
    GROUP BY label, norm
)
SELECT label,
       entity,
       current,
       previous,
       current - previous AS delta,
       round(current::numeric / nullif(previous, 0), 2) AS growth,
       before = 0 AS is_new
FROM per_entity
WHERE current >= :min_mentions
ORDER BY is_new DESC, delta DESC, current DESC, label, norm
LIMIT :top;
