"""Retention at campaign volume: drop whole days of raw rows, delete the idempotency keys of those days.

Usage (as nlp_owner, e.g. a nightly CronJob with the `migrations-dsn` secret)::

    python -m functions.runtime.retention --days 90 [--batch-size 5000] [--days-ahead 7] [--dry-run] [--dsn DSN]

Each run:

1. creates the daily partitions of ``nlp.documents`` / ``nlp.entities`` for the next ``--days-ahead`` days
   (``nlp.ensure_partitions``): writes to a day without a partition would fail;
2. detaches (``DETACH PARTITION ... CONCURRENTLY``: writers are not blocked) and drops every daily
   partition whose whole day is older than the cutoff — a metadata operation whatever the day holds;
3. deletes the history partitions' rows (from before time partitioning) older than the cutoff in small
   batches, and drops those partitions once all of them is;
4. deletes the idempotency keys (``nlp.document_keys``) older than the cutoff in small batches.

Batches are short transactions (``FOR UPDATE SKIP LOCKED``: they never wait on a writer), oldest first.
The cutoff is computed once, so the job always terminates. Rollups have their own retention (the rollup
worker). Output: one JSON log line (``retention.done`` or ``retention.failed``); never the DSN.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql as pgsql

from functions.runtime import db, ops, queries

log = logging.getLogger("functions.runtime.retention")

@dataclass
class RetentionReport:
    cutoff: str
    partitions_dropped: list[str] = field(default_factory=list)
    rows_dropped_estimate: int = 0  # the planner's estimate of the rows of the dropped partitions
    partitions_created: int = 0
    documents_deleted: int = 0  # from the history partitions
    entities_deleted: int = 0
    keys_deleted: int = 0
    batches: int = 0  # of history rows
    key_batches: int = 0
    dry_run: bool = False
    duration_ms: float = 0.0


def drop_partition(conn: psycopg.Connection, parent: str, partition: str) -> float:
    """Detach ``nlp.<partition>`` from ``nlp.<parent>`` concurrently and drop it; returns the seconds it
    took. ``conn`` must be in autocommit mode. Raises psycopg errors (e.g. ``LockNotAvailable`` under the
    session's lock_timeout; a rerun finishes a detach left pending)."""
    names = {"parent": pgsql.Identifier(parent), "partition": pgsql.Identifier(partition)}
    text = queries.load("retention")
    started = time.perf_counter()
    conn.execute(pgsql.SQL(text["detach_partition"]).format(**names))
    conn.execute(pgsql.SQL(text["drop_partition"]).format(**names))
    return time.perf_counter() - started


def purge(dsn: str, days: float, *, batch_size: int = 5000, dry_run: bool = False, pause_s: float = 0.0,
          max_batches: int | None = None, days_ahead: int = 7) -> RetentionReport:
    """Apply the retention of ``days`` days (see the module doc). ``dry_run`` only counts. ``pause_s``
    sleeps between batches. Raises ValueError for days < 0 or batch_size < 1, psycopg errors when the
    database is unreachable or the role lacks the rights (run it as nlp_owner, not as the writer)."""
    if days < 0:
        raise ValueError("days must be >= 0")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    started = time.perf_counter()
    text = queries.load("retention")
    with psycopg.connect(dsn, autocommit=True) as conn:
        cutoff = conn.execute(text["cutoff"], {"seconds": days * 86400.0}).fetchone()[0]
        report = RetentionReport(cutoff=cutoff.isoformat(), dry_run=dry_run)
        droppable = conn.execute(text["droppable"], {"cutoff": cutoff}).fetchall()
        if dry_run:
            report.partitions_dropped = [partition for _, partition, _, _ in droppable]
            report.rows_dropped_estimate = sum(rows for *_, rows in droppable)
            if conn.execute(text["history_exists"]).fetchone()[0]:
                report.documents_deleted, report.entities_deleted = conn.execute(
                    text["count_history"], {"cutoff": cutoff}).fetchone()
            report.keys_deleted = conn.execute(text["count_keys"], {"cutoff": cutoff}).fetchone()[0]
        else:
            report.partitions_created = conn.execute(text["ensure_partitions"],
                                                     {"days_ahead": days_ahead}).fetchone()[0]
            for parent, partition in conn.execute(text["pending_detach"]).fetchall():
                conn.execute(pgsql.SQL(text["finalize_detach"]).format(
                    parent=pgsql.Identifier(parent), partition=pgsql.Identifier(partition)))
            for parent, partition, _, rows in droppable:
                drop_partition(conn, parent, partition)
                report.partitions_dropped.append(partition)
                report.rows_dropped_estimate += rows
            if conn.execute(text["history_exists"]).fetchone()[0]:
                _delete_history(conn, text, cutoff, report, batch_size, pause_s, max_batches)
            _delete_keys(conn, text, cutoff, report, batch_size, pause_s, max_batches)
    report.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    return report


def _delete_history(conn, text, cutoff, report: RetentionReport, batch_size: int, pause_s: float,
                    max_batches: int | None) -> None:
    while max_batches is None or report.batches < max_batches:
        with conn.transaction():
            ids = [r[0] for r in conn.execute(text["pick_history_batch"], {"cutoff": cutoff, "limit": batch_size})]
            if not ids:
                return
            report.entities_deleted += conn.execute(text["delete_history_entities"], {"ids": ids}).rowcount
            report.documents_deleted += conn.execute(text["delete_history_documents"], {"ids": ids}).rowcount
        report.batches += 1
        if len(ids) < batch_size:
            return
        if pause_s:
            time.sleep(pause_s)


def _delete_keys(conn, text, cutoff, report: RetentionReport, batch_size: int, pause_s: float,
                 max_batches: int | None) -> None:
    while max_batches is None or report.key_batches < max_batches:
        deleted = conn.execute(text["delete_keys"], {"cutoff": cutoff, "limit": batch_size}).rowcount
        report.keys_deleted += deleted
        report.key_batches += 1
        if deleted < batch_size:
            return
        if pause_s:
            time.sleep(pause_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions.runtime.retention", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--days", type=float, required=True, help="keep this many days of documents")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds to sleep between batches")
    parser.add_argument("--days-ahead", type=int, default=7, help="daily partitions to create ahead")
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted")
    ops.add_dsn_arguments(parser)
    args = parser.parse_args(argv)
    dsn = ops.start("retention", args, log, "retention.failed")
    if not dsn:
        return 2
    try:
        report = purge(dsn, args.days, batch_size=args.batch_size, dry_run=args.dry_run, pause_s=args.pause,
                       days_ahead=args.days_ahead)
    except (ValueError, psycopg.Error) as exc:
        ops.failed(log, "retention.failed", type(exc).__name__, db.safe_message(exc))
        return 1
    log.info("retention done", extra={"event": "retention.done", **asdict(report)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
