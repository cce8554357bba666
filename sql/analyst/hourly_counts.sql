-- Entity mentions per hour and label, newest hour first, from the rollups on the replica.
--
--   psql "$STATS_REPLICA_DSN" -v hours=24 -v label=PERSON -v source=spring-sale -f sql/analyst/hourly_counts.sql
--
-- Variables (optional): hours (how far back, default 24), label (default: every label), source (default:
-- every source). Hours are UTC buckets; the newest (unfinished) hour is summed from its minute buckets.
-- distinct_entities is exact per minute and a lower bound for a whole hour.
\if :{?hours} \else \set hours 24 \endif
\if :{?label} \else \set label '' \endif
\if :{?source} \else \set source '' \endif

WITH state AS (
    SELECT hours_merged_before FROM analytics.rollup_state WHERE name = 'entities'
)
SELECT date_trunc('hour', b.bucket, 'UTC') AS hour, b.label, sum(b.mentions) AS mentions,
       max(b.distinct_entities) AS distinct_entities
FROM analytics.entity_buckets AS b, state AS s
WHERE b.source = :'source'
  AND (:'label' = '' OR b.label = upper(:'label'))
  AND b.bucket >= date_trunc('hour', now(), 'UTC') - make_interval(hours => :hours)
  AND ((b.resolution = 'hour' AND b.bucket < s.hours_merged_before)
    OR (b.resolution = 'minute' AND b.bucket >= s.hours_merged_before))
GROUP BY 1, 2
ORDER BY hour DESC, mentions DESC, b.label;
