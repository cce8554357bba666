-- Top entities per label over a window (most mentioned first), from the replica.
--
--   psql "$STATS_REPLICA_DSN" -v window='24 hours' -v label=ORG -v top=10 -f sql/analyst/top_entities.sql
--
-- Variables (all optional): window (any interval, default '24 hours'), label (default: every label),
-- top (entities per label, default 5). An entity is (label, norm): spellings that differ only in case
-- or spacing are counted together and shown with their most frequent spelling.
\if :{?window} \else \set window '24 hours' \endif
\if :{?label} \else \set label '' \endif
\if :{?top} \else \set top 5 \endif

SELECT label, rank, entity, mentions, documents, last_seen
FROM (
    SELECT label,
           row_number() OVER (PARTITION BY label ORDER BY count(*) DESC, norm) AS rank,
           mode() WITHIN GROUP (ORDER BY text) AS entity,
           count(*) AS mentions,
           count(DISTINCT request_id) AS documents,
           date_trunc('second', max(processed_at)) AS last_seen
    FROM analytics.entity_mentions
    WHERE processed_at >= now() - :'window'::interval
      AND (:'label' = '' OR label = upper(:'label'))
    GROUP BY label, norm
) AS ranked
WHERE rank <= :top
ORDER BY label, rank;
