"""Retention: whole days dropped as partitions while writers go on, history rows and idempotency keys
deleted in batches, as nlp_owner only."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from functions.runtime import retention
from functions.runtime.db import make_pool
from functions.runtime.persistence import EntityWriter
from functions.runtime.shapes import DocumentRecord, Entity
from functions.runtime.stores.documents import PgDocumentStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _seed(owner_dsn: str, prefix: str, count: int, age_days: int, entities_each: int = 2) -> None:
    with psycopg.connect(owner_dsn) as conn, conn.transaction():
        for i in range(count):
            request_id = f"{prefix}-{i}"
            conn.execute(
                "INSERT INTO nlp.documents (request_id, model_name, model_version, text_length, text_sha256,"
                " entity_count, processed_at) VALUES (%s, 'm', '1', 1, repeat('a', 64), %s,"
                " now() - make_interval(days => %s))",
                (request_id, entities_each, age_days),
            )
            for ordinal in range(entities_each):
                conn.execute(
                    "INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char,"
                    " processed_at) SELECT request_id, %s, 'ORG', 'Acme', 'acme', 0, 4, processed_at"
                    " FROM nlp.documents WHERE request_id = %s",
                    (ordinal, request_id),
                )


def _counts(dsn: str, prefix: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM nlp.documents WHERE request_id LIKE %(p)s),"
            " (SELECT count(*) FROM nlp.entities WHERE request_id LIKE %(p)s)",
            {"p": f"{prefix}-%"},
        ).fetchone()


def test_purge_deletes_only_old_documents_with_their_entities_in_batches(pg_clean, owner_dsn):
    _seed(owner_dsn, "old", 5, age_days=40)
    _seed(owner_dsn, "new", 2, age_days=1)

    dry = retention.purge(owner_dsn, days=30, dry_run=True)
    assert (dry.documents_deleted, dry.entities_deleted) == (5, 10)
    assert _counts(owner_dsn, "old") == (5, 10)

    report = retention.purge(owner_dsn, days=30, batch_size=2)
    assert (report.documents_deleted, report.entities_deleted, report.batches) == (5, 10, 3)
    assert _counts(owner_dsn, "old") == (0, 0)
    assert _counts(owner_dsn, "new") == (2, 4)


def test_the_writer_role_cannot_run_retention(pg_running, writer_dsn):
    with pytest.raises(errors.InsufficientPrivilege):
        retention.purge(writer_dsn, days=30)


def test_cli_prints_one_json_summary(pg_running):
    env = {**os.environ, "SECRETS_DIR": str(pg_running.secrets_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "functions.runtime.retention", "--days", "3650", "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["event"] == "retention.done" and summary["dry_run"] is True


def _fill_day(owner_dsn: str, day, mentions: int) -> None:
    """``mentions`` entity rows (and a fifth as many documents) with processed_at spread over ``day``."""
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO nlp.documents (request_id, model_name, model_version, text_length, text_sha256,"
            " entity_count, processed_at) SELECT 'day-' || g, 'm', '1', 100, repeat('a', 64), 5,"
            " %(day)s + make_interval(secs => g %% 86400) FROM generate_series(1, %(docs)s) AS g",
            {"day": day, "docs": mentions // 5})
        conn.execute(
            "INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char,"
            " processed_at) SELECT 'day-' || (g / 5), g %% 5, 'ORG', 'Acme', 'acme', 0, 4,"
            " %(day)s + make_interval(secs => (g / 5) %% 86400) FROM generate_series(5, %(n)s + 4) AS g",
            {"day": day, "n": mentions})


class _LockWaits:
    """Samples pg_stat_activity every few milliseconds: the longest lock wait seen per writer backend, and
    the replica's replay lag (pg_stat_replication.replay_lag) meanwhile."""

    def __init__(self, admin_dsn: str):
        self.admin_dsn = admin_dsn
        self.waiting: dict[int, list[float]] = {}
        self.replay_lag_s = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                now = time.monotonic()
                for (pid,) in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'retention-writer%%'"
                        " AND wait_event_type = 'Lock'"):
                    self.waiting.setdefault(pid, [now, now])[1] = now
                lag = conn.execute("SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)"
                                   " FROM pg_stat_replication").fetchone()[0]
                self.replay_lag_s = max(self.replay_lag_s, float(lag))
                time.sleep(0.003)

    @property
    def longest_wait_s(self) -> float:
        return max((last - first for first, last in self.waiting.values()), default=0.0)


def test_a_day_of_mentions_is_dropped_in_under_a_second_while_16_writers_never_wait(
        pg_running, owner_dsn, writer_dsn, admin_dsn):
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute("SELECT nlp.ensure_partitions(7)")
        day = conn.execute("SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
                           " + interval '3 days'").fetchone()[0]
    suffix = day.strftime("%Y%m%d")
    _fill_day(owner_dsn, day, 300_000)
    stop, errors_seen, written = threading.Event(), [], [0]

    def write(worker: int) -> None:
        store = PgDocumentStore.over_pool(make_pool(writer_dsn, name=f"retention-writer-{worker}", min_size=1,
                                                    max_size=1, timeout=5))
        writer = EntityWriter(store, write_timeout=30)
        writer.open()
        try:
            i = 0
            while not stop.is_set():
                text = f"Acme in Berlin {worker}-{i}"
                writer.write([DocumentRecord(f"ret-{worker}-{i}-{time.time_ns()}", None, "m", "1", text,
                                             hashlib.sha256(text.encode()).hexdigest(),
                                             [Entity("Acme", "ORG", 0, 4), Entity("Berlin", "GPE", 8, 14)])])
                written[0] += 1
                i += 1
        except Exception as exc:  # reported by the assertion below
            errors_seen.append(exc)
        finally:
            writer.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(16)]
    sampler = _LockWaits(admin_dsn)
    for thread in threads:
        thread.start()
    time.sleep(1.5)  # writers at full speed
    sampler.thread.start()
    time.sleep(0.3)
    before = written[0]
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")
        entities_s = retention.drop_partition(conn, "entities", f"entities_p{suffix}")
        documents_s = retention.drop_partition(conn, "documents", f"documents_p{suffix}")
    time.sleep(0.5)
    sampler.stop.set()
    stop.set()
    for thread in threads:
        thread.join(30)
    sampler.thread.join(5)
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM nlp.partition_ranges() WHERE partition LIKE %s",
                            (f"%{suffix}",)).fetchone()[0]
        conn.execute("SELECT nlp.ensure_partitions(7)")  # the day comes back (empty) for later tests
    print(f"FIGURES drop_a_day: entities_s={entities_s:.3f} documents_s={documents_s:.3f} "
          f"longest_writer_lock_wait_s={sampler.longest_wait_s:.3f} max_replay_lag_s={sampler.replay_lag_s:.3f} "
          f"writes_during={written[0] - before}")
    assert errors_seen == [] and left == 0
    assert entities_s <= 1.0 and documents_s <= 1.0
    assert sampler.longest_wait_s <= 0.1
    assert sampler.replay_lag_s <= 2.0
    assert written[0] > before  # the writers kept writing through it


def test_purge_drops_whole_days_before_the_cutoff_and_creates_the_days_ahead(pg_running, owner_dsn):
    report = retention.purge(owner_dsn, days=30, dry_run=True)
    assert report.partitions_dropped == []  # every daily partition is recent
    report = retention.purge(owner_dsn, days=30, days_ahead=9)
    assert report.partitions_created >= 1
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        horizon = conn.execute("SELECT max(range_end) - now() FROM nlp.partition_ranges()").fetchone()[0]
    assert horizon.days >= 9
