"""Slow database: an admin transaction holds ACCESS EXCLUSIVE on nlp.entities while 8 clients send.

Every request must end with a 503 (+ Retry-After) bounded by the lock/statement timeout and the pool
timeout, far below the watchdog's exec_timeout (30 s), with nothing half-written; once the lock is
released the same process answers 2xx again.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.faults.support import Load, audit, report, status_counts

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

EXEC_TIMEOUT_S = 30.0  # of-watchdog exec_timeout in stack.yml
STATEMENT_TIMEOUT_MS = 1000
POOL_TIMEOUT_S = 1.5  # DB_POOL_TIMEOUT_S default
# Group commit: a request waits for the group being written when it arrived, then for its own group.
BOUND_S = 2 * STATEMENT_TIMEOUT_MS / 1000 + POOL_TIMEOUT_S + 0.5


def test_locked_entity_table_gives_bounded_503s_then_recovers(function_factory, healthy, admin_dsn):
    fn = function_factory("ner-processor", DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS))
    warm = Load(fn.port, clients=2, max_requests=10).start()
    assert warm.wait_for(lambda o: len(o) >= 10, 20)
    assert all(o.ok for o in warm.stop())

    locked = threading.Event()
    release = threading.Event()

    def hold_lock():
        with psycopg.connect(admin_dsn) as conn:  # not autocommit: the lock lives until rollback
            conn.execute("LOCK TABLE nlp.entities IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(60)
            conn.rollback()

    holder = threading.Thread(target=hold_lock, daemon=True)
    holder.start()
    assert locked.wait(10)
    load = Load(fn.port, clients=8, max_requests=48).start()
    try:
        finished = load.wait_for(lambda o: len(o) >= 48, EXEC_TIMEOUT_S + 10)
    finally:
        locked_outcomes = load.stop()
        release.set()
        holder.join(10)
    after = Load(fn.port, clients=4, max_requests=20).start()
    after.wait_for(lambda o: len(o) >= 20, 30)
    after_outcomes = after.stop()

    result = audit(admin_dsn, locked_outcomes + after_outcomes)
    latencies = sorted(o.elapsed for o in locked_outcomes)
    report("slow_database_lock", sent=len(locked_outcomes), statuses=status_counts(locked_outcomes),
           error_codes=sorted({o.error for o in locked_outcomes if o.error}),
           max_latency_s=round(latencies[-1], 3), median_latency_s=round(latencies[len(latencies) // 2], 3),
           after_release=status_counts(after_outcomes), lost=len(result.lost),
           half_written=len(result.half_written), stored_without_ack=result.stored_unacknowledged)

    assert finished, "requests against a locked table must not hang"
    assert all(o.status == 503 for o in locked_outcomes), status_counts(locked_outcomes)
    assert {o.error for o in locked_outcomes} <= {"database_timeout", "database_unavailable"}
    assert all(o.retry_after for o in locked_outcomes)
    assert latencies[-1] < EXEC_TIMEOUT_S, "a request ran past the watchdog's exec_timeout"
    assert latencies[-1] < BOUND_S, f"503s must come within the lock/statement + pool timeouts ({BOUND_S}s)"
    assert result.half_written == [] and result.stored_unacknowledged == 0, "a failed write left rows behind"
    assert all(o.ok for o in after_outcomes), status_counts(after_outcomes)
    assert result.lost == []
    assert fn.process.poll() is None
