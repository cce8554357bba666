-- Top entities per label over a window (most mentioned first), from the rollups on the replica.
--
--   psql "$STATS_REPLICA_DSN" -v window='24 hours' -v label=ORG -v top=10 -v source=spring-sale \
--        -f sql/analyst/top_entities.sql
--
-- Variables (all optional): window (any interval up to 30 days, default '24 hours'), label (default:
-- every label), top (entities per label, default 5), source (a campaign; default: every source). An entity
-- is (label, norm): spellings that differ only in case or spacing count together, shown with the newest
-- spelling. mentions is exact when mentions_error is 0, else a lower bound (at most mentions_error more).
-- The window covers whole rollup buckets: window_start / window_end say which (freshness.sql: how fresh).
\if :{?window} \else \set window '24 hours' \endif
\if :{?label} \else \set label '' \endif
\if :{?top} \else \set top 5 \endif
\if :{?source} \else \set source '' \endif

WITH labels AS (
    SELECT DISTINCT label
    FROM analytics.label_mix(:'window'::interval, :'source')
    WHERE :'label' = '' OR label = upper(:'label')
)
SELECT l.label, row_number() OVER (PARTITION BY l.label ORDER BY t.mentions DESC) AS rank, t.text AS entity,
       t.mentions, t.mentions_error, w.window_start, w.window_end
FROM labels AS l
CROSS JOIN LATERAL analytics.top_entities(:'window'::interval, :top, l.label, :'source') AS t
CROSS JOIN (SELECT min(window_start) AS window_start, max(window_end) AS window_end
            FROM analytics.window_buckets(:'window'::interval)) AS w
ORDER BY l.label, rank;
