-- Entity mentions per hour and label (the view keeps the last 7 days), newest hour first.
--
--   psql "$STATS_REPLICA_DSN" -v hours=24 -v label=PERSON -f sql/analyst/hourly_counts.sql
--
-- Variables (optional): hours (how far back, default 24, at most 168), label (default: every label).
-- Hours are in the session's time zone: `SET TIME ZONE 'Europe/Paris';` first to change it.
\if :{?hours} \else \set hours 24 \endif
\if :{?label} \else \set label '' \endif

SELECT hour, label, mentions, documents, distinct_entities
FROM analytics.hourly_entity_counts
WHERE hour >= date_trunc('hour', now()) - make_interval(hours => :hours)
  AND (:'label' = '' OR label = upper(:'label'))
ORDER BY hour DESC, mentions DESC, label;
