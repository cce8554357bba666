"""Delete processed comments (and their entities) older than N days, in small batches.

Usage (as nlp_owner, e.g. a nightly CronJob with the `migrations-dsn` secret)::

    python -m functions.runtime.retention --days 90 [--batch-size 5000] [--dry-run] [--dsn DSN]

Why batches: one huge DELETE would hold row locks and bloat WAL in one burst, stall the replica's replay
and the writers' group commits. Each batch is its own short transaction (``FOR UPDATE SKIP LOCKED``, so
it never waits on a writer), oldest rows first, using the ``documents(processed_at)`` index. Entities are
deleted set-wise before their documents (cheaper than row-by-row ON DELETE CASCADE triggers; the cascade
remains as a safety net). The cutoff is computed once, so rows that age past it during the run are left
for the next run and the job always terminates.

Output: one log line of the project's JSON log contract summarising the run (``retention.done`` or
``retention.failed``); never the DSN. SQL: ``sql/queries/retention.sql``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, dataclass

import psycopg

from functions.runtime import db, ops, queries

log = logging.getLogger("functions.runtime.retention")


@dataclass
class RetentionReport:
    cutoff: str
    documents_deleted: int = 0
    entities_deleted: int = 0
    batches: int = 0
    dry_run: bool = False
    duration_ms: float = 0.0


def purge(
    dsn: str,
    days: float,
    *,
    batch_size: int = 5000,
    dry_run: bool = False,
    pause_s: float = 0.0,
    max_batches: int | None = None,
) -> RetentionReport:
    """Delete documents with processed_at older than ``days`` days and their entities.

    ``dry_run`` only counts. ``pause_s`` sleeps between batches to leave I/O to the writers and the
    replica. Raises ValueError for days < 0 or batch_size < 1, psycopg errors when the database is
    unreachable or the role lacks DELETE (run it as nlp_owner, not as the writer).
    """
    if days < 0:
        raise ValueError("days must be >= 0")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    started = time.perf_counter()
    sql = queries.load("retention")
    with psycopg.connect(dsn, autocommit=True) as conn:
        cutoff = conn.execute(sql["cutoff"], {"seconds": days * 86400.0}).fetchone()[0]
        report = RetentionReport(cutoff=cutoff.isoformat(), dry_run=dry_run)
        if dry_run:
            docs, ents = conn.execute(sql["count_older"], {"cutoff": cutoff}).fetchone()
            report.documents_deleted, report.entities_deleted = docs, ents
        else:
            while max_batches is None or report.batches < max_batches:
                with conn.transaction():
                    ids = [r[0] for r in conn.execute(sql["pick_batch"], {"cutoff": cutoff, "limit": batch_size})]
                    if not ids:
                        break
                    ents = conn.execute(sql["delete_entities"], {"ids": ids}).rowcount
                    docs = conn.execute(sql["delete_documents"], {"ids": ids}).rowcount
                report.batches += 1
                report.documents_deleted += docs
                report.entities_deleted += ents
                if len(ids) < batch_size:
                    break
                if pause_s:
                    time.sleep(pause_s)
    report.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions.runtime.retention", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--days", type=float, required=True, help="keep this many days of documents")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds to sleep between batches")
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted")
    ops.add_dsn_arguments(parser)
    args = parser.parse_args(argv)
    dsn = ops.start("retention", args, log, "retention.failed")
    if not dsn:
        return 2
    try:
        report = purge(dsn, args.days, batch_size=args.batch_size, dry_run=args.dry_run, pause_s=args.pause)
    except (ValueError, psycopg.Error) as exc:
        ops.failed(log, "retention.failed", type(exc).__name__, db.safe_message(exc))
        return 1
    log.info("retention done", extra={"event": "retention.done", **asdict(report)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
