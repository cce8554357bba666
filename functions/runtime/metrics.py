"""Prometheus metrics of the function process, served by the runtime at ``GET /metrics``.

The gateway already counts invocations and their latency per function; these add what only the
process knows: documents and entities per label, model batch sizes and time, the queue in front of the
model (what to scale on) and database write time.
"""

from __future__ import annotations

import functools

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("nlp_requests", "Requests handled, by function and HTTP status",
                   ["function", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("nlp_request_duration_seconds", "Time spent in handle(), by function",
                            ["function"], registry=REGISTRY,
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
DOCUMENTS = Counter("nlp_documents", "Documents recognised and persisted", ["function"], registry=REGISTRY)
ENTITIES = Counter("nlp_entities", "Entities found, by label", ["label"], registry=REGISTRY)
MODEL_BATCH_DOCUMENTS = Histogram("nlp_model_batch_documents", "Documents per nlp.pipe call (micro-batching)",
                                  registry=REGISTRY, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
MODEL_BATCH_SECONDS = Histogram("nlp_model_batch_seconds", "Time of one model batch", registry=REGISTRY,
                                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
QUEUED_DOCUMENTS = Gauge("nlp_model_queued_documents", "Documents waiting for or in the model",
                         registry=REGISTRY)
DB_WRITE_SECONDS = Histogram("nlp_db_write_seconds", "Time of one group commit on the primary",
                             registry=REGISTRY,
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
DEAD_LETTERS = Counter("nlp_dead_letters", "Refused inputs kept as dead letters, by function and HTTP status",
                       ["function", "status"], registry=REGISTRY)
# The rollup worker's own (functions/runtime/rollup.py): served on ROLLUP_METRICS_PORT, not by the functions.
ROLLUP_REGISTRY = CollectorRegistry(auto_describe=True)
ROLLUP_LAG_SECONDS = Gauge("nlp_rollup_lag_seconds", "How far the rollup watermark is behind the clock",
                           registry=ROLLUP_REGISTRY)
ROLLUP_ROWS = Counter("nlp_rollup_change_ids", "Change ids rolled up", registry=ROLLUP_REGISTRY)
MODEL_INFO = Gauge("nlp_model_info", "The loaded model (value 1)", ["name", "version"], registry=REGISTRY)
MODEL_BLAS_INFO = Gauge("nlp_model_blas_info", "The model's matrix library (SPACY_BLAS) and BLIS's kernels (value 1)",
                        ["library", "blis_kernels"], registry=REGISTRY)


def observe_request(function: str, status: int, seconds: float, fields: dict) -> None:
    """One handled request: its status, its time in handle() (seconds), and for a 2xx the documents and
    the entities per label that ``fields`` (the request's log fields) counted."""
    requests, request_seconds, documents = _request_series(function, status)
    requests.inc()
    request_seconds.observe(seconds)
    if status < 300 and fields.get("document_count"):
        documents.inc(fields["document_count"])
        for label, count in (fields.get("entities_by_label") or {}).items():
            _entity_series(label).inc(count)


# labels() takes the metric's lock and builds its key on every call: the request path looks each series
# up once. The label sets are small (one function, a few statuses, the model's entity labels).
@functools.lru_cache(maxsize=256)
def _request_series(function: str, status: int) -> tuple:
    return REQUESTS.labels(function, str(status)), REQUEST_SECONDS.labels(function), DOCUMENTS.labels(function)


@functools.lru_cache(maxsize=256)
def _entity_series(label: str):
    return ENTITIES.labels(label)


def observe_model_batch(documents: int, seconds: float) -> None:
    """One model batch: its documents and wall time (seconds)."""
    MODEL_BATCH_DOCUMENTS.observe(documents)
    MODEL_BATCH_SECONDS.observe(seconds)


def serve_rollup_metrics(port: int) -> None:
    """Serve the rollup worker's metrics at ``http://0.0.0.0:port/metrics`` from a daemon thread."""
    start_http_server(port, registry=ROLLUP_REGISTRY)


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
