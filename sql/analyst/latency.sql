-- Model time (ner_ms) by text size, per model version, over a window, from the rollups on the replica.
--
--   psql "$STATS_REPLICA_DSN" -v window='1 hour' -v source=spring-sale -f sql/analyst/latency.sql
--
-- ner_ms is the model time attributed to each comment (a micro-batch's time split by text length); the
-- end-to-end request latency is in the function logs (Kibana: duration_ms). Averages are exact; p50/p95
-- are read from a histogram of quarter-octave bins: the bin's upper edge, at most 19 % above the truth.
\if :{?window} \else \set window '1 hour' \endif
\if :{?source} \else \set source '' \endif

SELECT d.model_name, d.model_version,
       CASE d.length_class WHEN 0 THEN '1: <= 200' WHEN 1 THEN '2: 201-1000' ELSE '3: > 1000' END AS text_chars,
       sum(d.documents) AS documents,
       round(sum(d.text_chars)::numeric / nullif(sum(d.documents), 0)) AS avg_chars,
       round((sum(d.ner_ms_sum) / nullif(sum(d.documents), 0))::numeric, 3) AS avg_ner_ms,
       round(analytics.hist_percentile(analytics.hist_sum(d.ner_ms_hist), 0.5)::numeric, 3) AS p50_ner_ms_max,
       round(analytics.hist_percentile(analytics.hist_sum(d.ner_ms_hist), 0.95)::numeric, 3) AS p95_ner_ms_max,
       round(sum(d.entities)::numeric / nullif(sum(d.documents), 0), 2) AS avg_entities
FROM analytics.window_buckets(:'window'::interval) AS w
JOIN analytics.document_buckets AS d
  ON d.resolution = w.resolution AND d.source = :'source'
 AND d.bucket >= w.from_bucket AND d.bucket < w.to_bucket
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;
