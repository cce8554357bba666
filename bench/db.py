"""Database figures: persistence cost per document (group commit vs one row per commit) and replica lag.

The bulk path is the runtime's own :class:`functions.runtime.persistence.EntityWriter` (group commit,
array INSERTs) driven directly with pre-computed entities, so the figure is the database cost alone,
without the model. Replica lag is measured two ways while the function path runs at full speed:
``pg_stat_replication.replay_lag`` as the primary reports it, and end to end: take the primary's
``pg_current_wal_lsn()``, poll the replica until ``pg_last_wal_replay_lsn()`` has passed it, time it.
"""

from __future__ import annotations

import hashlib
import threading
import time

import psycopg

from bench.common import percentile
from functions.runtime.db import make_pool
from functions.runtime.persistence import EntityWriter
from functions.runtime.shapes import DocumentRecord
from functions.runtime.stores.documents import PgDocumentStore


def _records(texts: list[str], entities: list[list], id_prefix: str, model: dict) -> list[DocumentRecord]:
    return [
        DocumentRecord(
            document_id=f"{id_prefix}-{i}",
            source="bench",
            model_name=model["name"],
            model_version=model["version"],
            text=text,
            text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            entities=[tuple(e) for e in ents],
            ner_ms=1.0,
        )
        for i, (text, ents) in enumerate(zip(texts, entities, strict=True))
    ]


def writer_throughput(
    writer_dsn: str, texts: list[str], entities: list[list], *, group: int, id_prefix: str, model: dict
) -> dict:
    """Write ``texts`` through a fresh EntityWriter, ``group`` documents per ``write()`` call, one call
    after the other (each call is one transaction: the cost of one micro-batch's commit)."""
    records = _records(texts, entities, id_prefix, model)
    pool = make_pool(
        writer_dsn,
        name="bench-writer",
        min_size=1,
        max_size=2,
        timeout=5,
        connect_timeout=3,
    )
    writer = EntityWriter(PgDocumentStore.over_pool(pool, statement_timeout_ms=30000), write_timeout=60)
    writer.open()
    try:
        pool.wait(timeout=10)
        writer.write(_records(["warm-up"], [[]], id_prefix + "-warm", model))
        db_ms = 0.0
        started = time.perf_counter()
        for i in range(0, len(records), group):
            db_ms += writer.write(records[i : i + group]).db_ms
        seconds = time.perf_counter() - started
    finally:
        writer.close()
    entity_rows = sum(len(e) for e in entities)
    return {
        "docs": len(records),
        "rows": len(records) + entity_rows,
        "seconds": seconds,
        "db_ms_sum": db_ms,
        "group": group,
    }


class LagSampler(threading.Thread):
    """Samples replica lag until :meth:`stop`; ``interval_s`` between samples."""

    def __init__(self, primary_dsn: str, replica_dsn: str, interval_s: float = 0.1, poll_s: float = 0.002):
        super().__init__(name="lag-sampler", daemon=True)
        self.primary_dsn, self.replica_dsn = primary_dsn, replica_dsn
        self.interval_s, self.poll_s = interval_s, poll_s
        self.e2e_s: list[float] = []
        self.replay_lag_s: list[float] = []
        self.lag_bytes: list[int] = []
        self.error: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with (
                psycopg.connect(self.primary_dsn, autocommit=True) as primary,
                psycopg.connect(self.replica_dsn, autocommit=True) as replica,
            ):
                while not self._stop_event.is_set():
                    started = time.perf_counter()
                    lsn, replay_lag, lag_bytes = primary.execute(
                        "SELECT pg_current_wal_lsn()::text,"
                        " (SELECT EXTRACT(EPOCH FROM replay_lag)::float8 FROM pg_stat_replication LIMIT 1),"
                        " (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint"
                        "  FROM pg_stat_replication LIMIT 1)"
                    ).fetchone()
                    while not replica.execute(
                        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
                    ).fetchone()[0]:
                        if time.perf_counter() - started > 30:
                            break
                        time.sleep(self.poll_s)
                    self.e2e_s.append(time.perf_counter() - started)
                    # replay_lag is NULL when the replica has nothing left to replay: no lag.
                    self.replay_lag_s.append(replay_lag or 0.0)
                    self.lag_bytes.append(lag_bytes or 0)
                    self._stop_event.wait(self.interval_s)
        except Exception as exc:  # reported, never fatal for the run
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    def stop(self) -> dict:
        self._stop_event.set()
        self.join(10)
        return {
            "samples": len(self.e2e_s),
            "e2e_p50_s": percentile(self.e2e_s, 50),
            "e2e_p99_s": percentile(self.e2e_s, 99),
            "e2e_max_s": max(self.e2e_s) if self.e2e_s else None,
            "replay_lag_p50_s": percentile(self.replay_lag_s, 50),
            "replay_lag_p99_s": percentile(self.replay_lag_s, 99),
            "lag_bytes_p99": percentile(self.lag_bytes, 99),
            "error": self.error,
        }
