-- Average latency inputs: model time (ner_ms) by text size, per model version, over a window.
--
--   psql "$STATS_REPLICA_DSN" -v window='1 hour' -f sql/analyst/latency.sql
--
-- ner_ms is the model time attributed to each comment (a micro-batch's time split by text length);
-- end-to-end request latency is in the function logs (Kibana: duration_ms). Hourly history per model:
-- SELECT * FROM analytics.documents_summary ORDER BY hour DESC;
\if :{?window} \else \set window '1 hour' \endif

SELECT model_name,
       model_version,
       CASE WHEN text_length <= 200 THEN '1: <= 200'
            WHEN text_length <= 1000 THEN '2: 201-1000'
            ELSE '3: > 1000' END AS text_chars,
       count(*) AS documents,
       round(avg(text_length)) AS avg_chars,
       round(avg(ner_ms)::numeric, 3) AS avg_ner_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY ner_ms))::numeric, 3) AS p95_ner_ms,
       round(avg(entity_count), 2) AS avg_entities
FROM analytics.documents
WHERE processed_at >= now() - :'window'::interval
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;
