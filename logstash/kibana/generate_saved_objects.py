"""Writes logstash/kibana/saved-objects.ndjson: the data view, saved searches, visualizations and the SRE
dashboard for the nlp-enrichment function logs.

Kibana stores most of a visualization as JSON *inside* JSON strings (visState, searchSourceJSON,
panelsJSON); writing that by hand is how broken imports happen, so the file is generated:

    build/venv/bin/python logstash/kibana/generate_saved_objects.py        # rewrite the NDJSON
    build/venv/bin/python logstash/kibana/generate_saved_objects.py --check  # exit 1 if it is stale

The objects use the 7.17 export format (legacy aggregation-based visualizations, TSVB for ratios,
``migrationVersion`` 7.17.0), which Kibana 7.17 and 8.x import and migrate themselves. Every field
named here must be one that functions/runtime/logs.py emits or that the Logstash pipeline sets on the
watchdog's lines: tests/logging checks both against parsed events.

Two views of every request: the caller's (of-watchdog's access line, its 504 at exec_timeout and its 500
when the function is unreachable: what the gateway got) and the function's (its own request line). Traffic,
error rate, latency and the alert count the caller's; the error rate and the latency table also show the
function's, so a gap between the two (504s the function never saw fail) is visible.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

OUTPUT = Path(__file__).with_name("saved-objects.ndjson")

INDEX_PATTERN = "nlp-pipeline-*"  # matches the pipeline's output index nlp-pipeline-%{+YYYY.MM.dd}
DATA_VIEW_ID = "nlp-pipeline-data-view"
TRAIL_SEARCH_ID = "nlp-request-trail"
ERRORS_SEARCH_ID = "nlp-errors-and-warnings"
QUEUE_WORKER_FAILURES_SEARCH_ID = "nlp-queue-worker-failures"
DASHBOARD_ID = "nlp-enrichment-sre"
FORMAT_VERSION = "7.17.0"

# The OntoNotes labels of the bundled spaCy model (en_core_web_sm): one stacked series each.
# tests/logging checks this list against the installed model's NER labels.
NER_LABELS = ("CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP",
              "ORDINAL", "ORG", "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART")

# KQL snippets shared by several objects.
# The caller's view: one event per answer the watchdog gave (access line, 504, 500); its scrapes of
# /metrics are "watchdog.internal_request" and stay out. 429s from max_inflight have no line at all: they
# are in the watchdog's Prometheus metrics on :8081 (logstash/README.md).
CALLER_EVENTS = ("watchdog.request", "watchdog.request_timeout", "watchdog.upstream_failed")
CALLER_KQL = 'component : "watchdog" and event : (' + " or ".join(f'"{e}"' for e in CALLER_EVENTS) + ")"
# The function's view: its last line of each request carries the status code (other lines may carry
# duration_ms too: server.started logs its start-up time in it).
FUNCTION_KQL = 'component : "function" and status_code : *'
SERVER_ERRORS_KQL = "status_code >= 500"
CLIENT_ERRORS_KQL = "status_code >= 400 and status_code < 500"
ERROR_LINES_KQL = 'log.level : ("error" or "critical")'


def _and(*queries: str) -> str:
    return " and ".join(f"({query})" for query in queries)


# OpenFaaS's queue-worker (cluster): a final outcome that was not a 2xx (status_code, lifted from the
# X-Function-Status its line reports, when it does) or a line it logged at error level.
QUEUE_WORKER_FAILURES_KQL = _and('component : "queue-worker"', f"status_code >= 300 or {ERROR_LINES_KQL}")


def _uuid(name: str) -> str:
    """Stable ids for TSVB's internal series/metric ids (regenerating must not change the file)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nlp-enrichment/kibana/{name}"))


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _search_source(query: str) -> str:
    return _dumps({"query": {"query": query, "language": "kuery"}, "filter": [],
                   "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"})


def _index_reference() -> list[dict]:
    return [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
             "id": DATA_VIEW_ID}]


# --- data view and saved searches ----------------------------------------------------------------------


def data_view() -> dict:
    # Clicking a request_id anywhere opens the trail search filtered on it.
    trail_url = ("/app/discover#/view/" + TRAIL_SEARCH_ID + "?_g=(time:(from:now-7d,to:now))"
                 "&_a=(query:(language:kuery,query:'request_id : \"{{value}}\"'))")
    return {
        "type": "index-pattern",
        "id": DATA_VIEW_ID,
        "attributes": {
            "title": INDEX_PATTERN,
            "name": "nlp-enrichment function logs",
            "timeFieldName": "@timestamp",
            "fieldFormatMap": _dumps({
                "request_id": {"id": "url", "params": {"urlTemplate": trail_url,
                                                       "labelTemplate": "{{value}}"}},
                "duration_ms": {"id": "number", "params": {"pattern": "0,0.0"}},
                "load_ms": {"id": "number", "params": {"pattern": "0,0"}},
            }),
        },
        "references": [],
        "migrationVersion": {"index-pattern": FORMAT_VERSION},
    }


def saved_search(object_id: str, title: str, description: str, query: str, columns: list[str],
                 sort_order: str) -> dict:
    return {
        "type": "search",
        "id": object_id,
        "attributes": {
            "title": title,
            "description": description,
            "hits": 0,
            "columns": columns,
            "sort": [["@timestamp", sort_order]],
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)},
        },
        "references": _index_reference(),
        "migrationVersion": {"search": FORMAT_VERSION},
    }


def trail_search() -> dict:
    return saved_search(
        TRAIL_SEARCH_ID,
        "Trail of one request_id",
        'Every log line of one request, oldest first: the function\'s lines, then the watchdog\'s access line '
        "(component) with the status the caller got. Replace the query with request_id : \"<id>\" (the "
        "X-Request-Id response header, = the gateway's X-Call-Id), or click a request_id value in any table.",
        "request_id : *",
        ["request_id", "component", "function", "event", "log.level", "message", "status_code", "duration_ms",
         "ner_ms", "db_ms", "error.type", "error.message"],
        "asc",
    )


def errors_search() -> dict:
    return saved_search(
        ERRORS_SEARCH_ID,
        "nlp-enrichment errors and warnings",
        "Newest first, the function's and the watchdog's (component): 5xx, timeouts, panics (error), 4xx and "
        "degraded paths (warning), with their error.type.",
        'log.level : ("error" or "critical" or "warning")',
        ["function", "component", "log.level", "event", "request_id", "status_code", "error.type",
         "error.message"],
        "desc",
    )


# --- visualizations ------------------------------------------------------------------------------------


def _agg(agg_id: str, agg_type: str, schema: str, **params) -> dict:
    return {"id": agg_id, "enabled": True, "type": agg_type, "params": params, "schema": schema}


def _date_histogram(agg_id: str) -> dict:
    return _agg(agg_id, "date_histogram", "segment", field="@timestamp", useNormalizedEsInterval=True,
                scaleMetricValues=False, interval="auto", drop_partials=False, min_doc_count=1,
                extended_bounds={})


def _terms(agg_id: str, field: str, schema: str, order_by: str = "1", order: str = "desc",
           size: int = 10) -> dict:
    return _agg(agg_id, "terms", schema, field=field, orderBy=order_by, order=order, size=size,
                otherBucket=False, otherBucketLabel="Other", missingBucket=False,
                missingBucketLabel="Missing")


def _xy_params(chart: str, series: list[tuple[str, str]], y_title: str, mode: str = "normal") -> dict:
    """Parameters of a legacy line/histogram/area chart; ``series`` = (agg id, label) per metric."""
    return {
        "type": chart,
        "grid": {"categoryLines": False},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                          "style": {}, "scale": {"type": "linear"},
                          "labels": {"show": True, "filter": True, "truncate": 100}, "title": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left",
                       "show": True, "style": {}, "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                       "title": {"text": y_title}}],
        "seriesParams": [{"show": True, "type": "histogram" if chart == "histogram" else "line",
                          "mode": mode, "data": {"label": label, "id": agg_id},
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "lineWidth": 2,
                          "interpolate": "linear", "showCircles": True} for agg_id, label in series],
        "addTooltip": True,
        "addLegend": True,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": False,
        "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
        "labels": {},
        "detailedTooltip": True,
        "fittingFunction": "linear",
        "radiusRatio": 9,
        "palette": {"type": "palette", "name": "default"},
        "isVislibVis": True,
    }


def _metric_params() -> dict:
    return {"addTooltip": True, "addLegend": False, "type": "metric",
            "metric": {"percentageMode": False, "useRanges": False, "colorSchema": "Green to Red",
                       "metricColorMode": "None", "colorsRange": [{"from": 0, "to": 10000}],
                       "labels": {"show": True}, "invertColors": False,
                       "style": {"bgFill": "#000", "bgColor": False, "labelColor": False, "subText": "",
                                 "fontSize": 36}}}


def _table_params() -> dict:
    return {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
            "totalFunc": "sum", "percentageCol": ""}


def visualization(object_id: str, title: str, description: str, vis_type: str, params: dict,
                  aggs: list[dict], query: str = "") -> dict:
    return {
        "type": "visualization",
        "id": object_id,
        "attributes": {
            "title": title,
            "description": description,
            "visState": _dumps({"title": title, "type": vis_type, "params": params, "aggs": aggs}),
            "uiStateJSON": "{}",
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)},
        },
        "references": _index_reference(),
        "migrationVersion": {"visualization": FORMAT_VERSION},
    }


def requests_per_function() -> dict:
    return visualization(
        "nlp-requests-per-function", "Requests per function",
        "Answers callers got, per function (one watchdog line per answer, 504s and 500s included).",
        "histogram", _xy_params("histogram", [("1", "Requests")], "Requests", mode="stacked"),
        [_agg("1", "count", "metric"), _date_histogram("2"), _terms("3", "function", "group")],
        CALLER_KQL)


def error_ratio_per_function() -> dict:
    """TSVB: the only legacy editor with a ratio (filter_ratio) per split."""

    def series(name: str, label: str, numerator: str, denominator: str, color: str) -> dict:
        return {
            "id": _uuid(f"error-ratio/{name}"),
            "label": label,
            "color": color,
            "split_mode": "terms",
            "terms_field": "function",
            "terms_size": "10",
            "terms_order_by": "_count",
            "metrics": [{"id": _uuid(f"error-ratio/{name}/ratio"), "type": "filter_ratio",
                         "numerator": {"query": _and(denominator, numerator), "language": "kuery"},
                         "denominator": {"query": denominator, "language": "kuery"},
                         "metric_agg": "count"}],
            "separate_axis": 0,
            "axis_position": "right",
            "formatter": "percent",
            "chart_type": "line",
            "line_width": 2,
            "point_size": 1,
            "fill": 0,
            "stacked": "none",
            "split_color_mode": "kibana",
            "override_index_pattern": 0,
            "series_drop_last_bucket": 0,
        }

    params = {
        "id": _uuid("error-ratio"),
        "type": "timeseries",
        "series": [series("5xx", "5xx ratio (callers)", SERVER_ERRORS_KQL, CALLER_KQL, "#E7664C"),
                   series("4xx", "4xx ratio (callers)", CLIENT_ERRORS_KQL, CALLER_KQL, "#D6BF57"),
                   series("5xx-function", "5xx ratio (function's own answers)", SERVER_ERRORS_KQL, FUNCTION_KQL,
                          "#9170B8")],
        "time_field": "@timestamp",
        "index_pattern": INDEX_PATTERN,
        "use_kibana_indexes": False,
        "interval": "auto",
        "axis_position": "left",
        "axis_formatter": "number",
        "axis_scale": "normal",
        "show_legend": 1,
        "show_grid": 1,
        "tooltip_mode": "show_all",
        "drop_last_bucket": 0,
        "isModelInvalid": False,
        "annotations": [],
        "filter": {"query": "", "language": "kuery"},
    }
    obj = visualization(
        "nlp-error-ratio-per-function", "Error rate per function (5xx and 4xx share of requests)",
        "Share of answers callers got that were 5xx (alert-worthy; the watchdog's 504s at exec_timeout "
        "included) and 4xx (callers' mistakes), and the 5xx share of the function's own answers.",
        "metrics", params, [])
    # TSVB reads its index pattern from params; it has no search source of its own.
    obj["attributes"]["kibanaSavedObjectMeta"] = {"searchSourceJSON": _dumps(
        {"query": {"query": "", "language": "kuery"}, "filter": []})}
    obj["references"] = []
    return obj


def latency_percentiles_over_time() -> dict:
    return visualization(
        "nlp-latency-percentiles", "Latency p50 / p95 / p99 per function (duration_ms)",
        "What callers waited, per function, over time: the watchdog's time per answer (a 504 counts "
        "as exec_timeout). The function's own time is in the latency table.",
        "line", _xy_params("line", [("1", "duration_ms percentiles")], "ms"),
        [_agg("1", "percentiles", "metric", field="duration_ms", percents=[50, 95, 99]),
         _date_histogram("2"), _terms("3", "function", "group", order_by="_key", order="asc")],
        CALLER_KQL)


def latency_percentiles_table() -> dict:
    return visualization(
        "nlp-latency-table", "Latency per function, caller vs function: p50 / p95 / p99, requests, NER and DB time",
        "Two rows per function: component watchdog = what callers waited, function = its own processing time "
        "(with mean ner_ms and db_ms).",
        "table", _table_params(),
        [_agg("1", "percentiles", "metric", field="duration_ms", percents=[50, 95, 99]),
         _agg("2", "count", "metric", customLabel="Requests"),
         _agg("3", "avg", "metric", field="ner_ms", customLabel="Mean ner_ms"),
         _agg("4", "avg", "metric", field="db_ms", customLabel="Mean db_ms"),
         _terms("5", "function", "bucket", order_by="2"),
         _terms("6", "component", "bucket", order_by="_key", order="desc", size=2)],
        f"({CALLER_KQL}) or ({FUNCTION_KQL})")


def long_text_latency() -> dict:
    return visualization(
        "nlp-long-text-latency", "Average latency of texts over 1,000 characters (last hour)",
        "Mean and p95 duration_ms the function measured for requests whose text_length > 1000 (only its "
        "lines know the text length); the dashboard pins this panel to the last hour.",
        "metric", _metric_params(),
        [_agg("1", "avg", "metric", field="duration_ms", customLabel="Mean duration_ms"),
         _agg("2", "percentiles", "metric", field="duration_ms", percents=[95]),
         _agg("3", "count", "metric", customLabel="Requests")],
        "text_length > 1000")


def cold_starts() -> dict:
    return visualization(
        "nlp-cold-starts", "Cold starts (model.loaded) and model load time",
        "Each process start logs model.loaded once: count = cold starts, load_ms = time to load the "
        "baked model.",
        "metric", _metric_params(),
        [_agg("1", "count", "metric", customLabel="Cold starts"),
         _agg("2", "avg", "metric", field="load_ms", customLabel="Mean load_ms"),
         _agg("3", "max", "metric", field="load_ms", customLabel="Max load_ms"),
         _terms("4", "function", "group", order_by="1")],
        'event : "model.loaded"')


def db_write_failures() -> dict:
    return visualization(
        "nlp-db-write-failures", "Database write failures by error.type",
        "event db.write_failed over time, split by the exception class.",
        "histogram", _xy_params("histogram", [("1", "Failures")], "Failures", mode="stacked"),
        [_agg("1", "count", "metric"), _date_histogram("2"), _terms("3", "error.type", "group")],
        'event : "db.write_failed"')


def dead_letters() -> dict:
    return visualization(
        "nlp-dead-letters", "Dead letters by status and error code",
        "event dead_letter.recorded over time (the queue-worker's final failures and the inputs the function "
        "refused), split by the final HTTP status (dead_letter.status: status_code marks a request's one line) "
        "and the function's error code. Listed and redriven with "
        "python -m functions.runtime.dead_letters (docs/operations.md, Dead letters).",
        "histogram", _xy_params("histogram", [("1", "Dead letters")], "Dead letters", mode="stacked"),
        [_agg("1", "count", "metric"), _date_histogram("2"), _terms("3", "dead_letter.status", "group"),
         _terms("4", "error.code", "group")],
        'event : "dead_letter.recorded"')


def entities_per_label() -> dict:
    metrics = [_agg(str(i), "sum", "metric", field=f"entities_by_label.{label}", customLabel=label)
               for i, label in enumerate(NER_LABELS, start=1)]
    series = [(m["id"], m["params"]["customLabel"]) for m in metrics]
    return visualization(
        "nlp-entities-per-label", "Entities found per label over time",
        "Sum of entities_by_label.<LABEL> of the processed comments.",
        "area", _xy_params("area", series, "Entities", mode="stacked"),
        [*metrics, _date_histogram(str(len(metrics) + 1))],
        "entity_count > 0")


def queue_worker_failures_search() -> dict:
    return saved_search(
        QUEUE_WORKER_FAILURES_SEARCH_ID,
        "OpenFaaS queue-worker: failed outcomes and errors",
        "Newest first, the cluster's queue-worker (component queue-worker, namespace openfaas): asynchronous "
        "invocations whose final status was not a 2xx (status_code, when its line reports X-Function-Status) "
        "and the lines it logged at error level. Its whole JSON line is under queue_worker; request_id is "
        "the call id when the line gives one (click it for the trail). Needs "
        "jetstreamQueueWorker.logs.format: json (logstash/README.md).",
        QUEUE_WORKER_FAILURES_KQL,
        ["request_id", "function", "status_code", "log.level", "event", "message"],
        "desc",
    )


# --- dashboard -----------------------------------------------------------------------------------------


def dashboard(panels: list[tuple[dict, dict, dict]]) -> dict:
    """``panels`` = (saved object, gridData without "i", extra embeddableConfig)."""
    panels_json, references = [], []
    for number, (obj, grid, config) in enumerate(panels):
        panel_index = str(number + 1)
        panels_json.append({
            "version": FORMAT_VERSION,
            "type": obj["type"],
            "gridData": {**grid, "i": panel_index},
            "panelIndex": panel_index,
            "embeddableConfig": {"enhancements": {}, **config},
            "panelRefName": f"panel_{number}",
        })
        references.append({"name": f"panel_{number}", "type": obj["type"], "id": obj["id"]})
    return {
        "type": "dashboard",
        "id": DASHBOARD_ID,
        "attributes": {
            "title": "nlp-enrichment SRE",
            "description": "Traffic, errors, latency, cold starts, database write failures and entities "
                           "of the NER functions. See logstash/README.md for what each panel answers.",
            "hits": 0,
            "panelsJSON": _dumps(panels_json),
            "optionsJSON": _dumps({"useMargins": True, "syncColors": False, "hidePanelTitles": False}),
            "version": 1,
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps(
                {"query": {"query": "", "language": "kuery"}, "filter": []})},
        },
        "references": references,
        "migrationVersion": {"dashboard": FORMAT_VERSION},
    }


def build() -> list[dict]:
    visualizations = {
        "requests": requests_per_function(),
        "errors": error_ratio_per_function(),
        "latency": latency_percentiles_over_time(),
        "latency_table": latency_percentiles_table(),
        "long_texts": long_text_latency(),
        "cold_starts": cold_starts(),
        "db": db_write_failures(),
        "entities": entities_per_label(),
        "dead_letters": dead_letters(),
    }
    trail, errors, queue_worker = trail_search(), errors_search(), queue_worker_failures_search()
    last_hour = {"timeRange": {"from": "now-1h", "to": "now"}}
    board = dashboard([
        (visualizations["requests"], {"x": 0, "y": 0, "w": 24, "h": 12}, {}),
        (visualizations["errors"], {"x": 24, "y": 0, "w": 24, "h": 12}, {}),
        (visualizations["latency"], {"x": 0, "y": 12, "w": 24, "h": 12}, {}),
        (visualizations["latency_table"], {"x": 24, "y": 12, "w": 24, "h": 12}, {}),
        (visualizations["long_texts"], {"x": 0, "y": 24, "w": 12, "h": 10}, last_hour),
        (visualizations["cold_starts"], {"x": 12, "y": 24, "w": 12, "h": 10}, {}),
        (visualizations["db"], {"x": 24, "y": 24, "w": 24, "h": 10}, {}),
        (visualizations["entities"], {"x": 0, "y": 34, "w": 48, "h": 12}, {}),
        (visualizations["dead_letters"], {"x": 0, "y": 46, "w": 48, "h": 10}, {}),
        (errors, {"x": 0, "y": 56, "w": 48, "h": 15}, {}),
        (queue_worker, {"x": 0, "y": 71, "w": 48, "h": 12}, {}),
    ])
    return [data_view(), trail, errors, queue_worker, *visualizations.values(), board]


def render() -> str:
    return "".join(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n" for obj in build())


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(text.splitlines())} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
