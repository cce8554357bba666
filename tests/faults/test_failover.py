"""Failover: the primary is SIGKILLed under load (8 clients), the replica is promoted
(devtools.pgcluster.promote_replica) and a new replica is cloned from it, while one ner-processor process
keeps running with a multi-host DSN (``target_session_attrs=read-write``): writes get 503 + Retry-After
during the gap and 2xx again within 5 s of the promotion, without a restart.

Synchronous mode (the replica in ``synchronous_standby_names``, ``synchronous_commit = on``): every
acknowledged request id is on the new primary. Asynchronous mode: the loss is measured and reported,
not hidden (a promoted asynchronous replica may lack the last commits the old primary acknowledged).
The cost of synchronous mode is measured as a write-throughput ratio against asynchronous.

Runs on a private primary + replica (a failover swaps the servers' roles), not the session cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import statistics
import threading
import time

import psycopg
import pytest

from devtools.pgcluster import PgBinariesNotFound, find_pg_bin
from functions.runtime.db import make_pool
from functions.runtime.persistence import EntityWriter
from functions.runtime.shapes import DocumentRecord
from functions.runtime.stores.documents import PgDocumentStore
from tests.faults.support import Load, audit, report, status_counts
from tests.fixtures.pg import private_cluster

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

UNAVAILABLE_CODES = {"database_unavailable", "database_timeout"}
RECOVERY_BOUND_S = 5.0  # the issue: 2xx again within 5 s of the promotion
GAP_S = 2.0  # primary dead, nothing promoted yet


@pytest.fixture(scope="module")
def ha_cluster():
    try:
        find_pg_bin()
    except PgBinariesNotFound as exc:
        pytest.skip(str(exc))
    with private_cluster(synchronous=True, pgbouncer=True) as cluster:
        yield cluster


@pytest.fixture
def ha(ha_cluster, tmp_path):
    """The private pair (+ PgBouncer), healthy (a failed test may have left it half failed over), and a
    secrets dir whose writer DSN names both servers with target_session_attrs=read-write."""
    ha_cluster.start()
    return ha_cluster, ha_cluster.write_secrets(tmp_path / "secrets", route="multihost")


def _failover_under_load(cluster, fn, gap_s: float = GAP_S) -> dict:
    load = Load(fn.port, clients=8).start()
    try:
        assert load.wait_for(lambda o: sum(x.ok for x in o) >= 100, 30), "no steady load before the kill"
        killed_at = time.monotonic()
        cluster.kill_primary()
        time.sleep(gap_s)
        promote_s = cluster.promote_replica()
        promoted_at = time.monotonic()
        recovered = load.wait_for(lambda o: any(x.ok and x.started >= promoted_at for x in o), 15)
        rebuild_started = time.monotonic()
        cluster.rebuild_replica()  # under load; synchronous mode comes back at its end
        rebuild_s = time.monotonic() - rebuild_started
        time.sleep(1.5)
    finally:
        outcomes = load.stop()
    result = audit(cluster.dsn("admin", "primary"), outcomes)
    first_ok = min((o.started + o.elapsed for o in outcomes if o.ok and o.started >= promoted_at), default=None)
    gap = [o for o in outcomes if o.started >= killed_at + 0.05 and o.started + o.elapsed <= promoted_at]
    failures = [o for o in outcomes if not o.ok]
    return {
        "outcomes": outcomes, "result": result, "gap": gap, "failures": failures, "recovered": recovered,
        "figures": dict(
            sent=len(outcomes), acknowledged_2xx=sum(o.ok for o in outcomes), statuses=status_counts(outcomes),
            documents_acknowledged=result.acknowledged, lost=len(result.lost),
            half_written=len(result.half_written), stored_without_ack=result.stored_unacknowledged,
            requests_in_gap=len(gap), max_503_latency_s=round(max((o.elapsed for o in failures), default=0.0), 3),
            promote_s=round(promote_s, 3),
            first_2xx_after_promotion_s=None if first_ok is None else round(first_ok - promoted_at, 2),
            rebuild_replica_s=round(rebuild_s, 2)),
    }


def _check_availability(run: dict, fn) -> None:
    failures, figures = run["failures"], run["figures"]
    assert run["gap"] and all(o.status == 503 for o in run["gap"]), \
        f"requests while there is no primary must be 503: {status_counts(run['gap'])}"
    assert all(o.status == 503 and o.error in UNAVAILABLE_CODES and o.retry_after for o in failures), \
        f"only 503 database_* with Retry-After may fail: {status_counts(failures)} {failures[:3]}"
    assert run["recovered"], "no 2xx after the promotion"
    assert figures["first_2xx_after_promotion_s"] < RECOVERY_BOUND_S, figures
    assert run["result"].half_written == []
    assert fn.process.poll() is None, "the function must keep running (no restart)"


@pytest.mark.parametrize("route", ["multihost", "pgbouncer"])
def test_synchronous_failover_loses_no_acknowledged_write(route, ha, function_factory, tmp_path):
    """multihost: libpq picks the new primary; pgbouncer: the pooler is re-pointed at it by the tool (what
    the -rw service does for CloudNativePG's Pooler)."""
    cluster, secrets = ha
    if route == "pgbouncer":
        secrets = cluster.write_secrets(tmp_path / "pooled", route="pgbouncer")
    cluster.set_synchronous(True)
    assert cluster.status()["synchronous_standby_names"] == "nlp_replica"
    fn = function_factory("ner-processor", SECRETS_DIR=str(secrets))
    pid = fn.process.pid
    # Behind PgBouncer a query waits up to query_wait_timeout (2 s) for a server before it fails: a longer
    # gap, so that some requests fail (503) before the promotion.
    run = _failover_under_load(cluster, fn, gap_s=GAP_S if route == "multihost" else 3.5)
    report(f"failover_synchronous_{route}", **run["figures"])
    assert run["result"].lost == [], f"acknowledged but not on the new primary: {run['result'].lost[:10]}"
    _check_availability(run, fn)
    assert fn.process.pid == pid
    assert cluster.status()["synchronous_standby_names"] == "nlp_replica", "sync mode must come back"


def test_asynchronous_failover_availability_and_measured_loss(ha, function_factory):
    cluster, secrets = ha
    cluster.set_synchronous(False)
    fn = function_factory("ner-processor", SECRETS_DIR=str(secrets))
    run = _failover_under_load(cluster, fn)
    # No assertion on `lost`: asynchronous replication promises none; the figure is the measurement.
    report("failover_asynchronous", **run["figures"])
    _check_availability(run, fn)
    cluster.set_synchronous(True)


_TEXT = "Order 17 from Siemens in Hamburg was late, said Maria Garcia on Monday."
_ENTITIES = [("Siemens", "ORG", 14, 21), ("Hamburg", "GPE", 25, 32), ("Maria Garcia", "PERSON", 48, 60)]


def _record(request_id: str) -> DocumentRecord:
    return DocumentRecord(request_id, "faults", "m", "1", _TEXT, hashlib.sha256(_TEXT.encode()).hexdigest(),
                          _ENTITIES)


def _writer_docs_per_s(dsn: str, prefix: str, clients: int, seconds: float) -> float:
    """Documents committed per second by one EntityWriter (group commit, as in the function) fed by
    ``clients`` threads that each write one document at a time."""
    pool = make_pool(dsn, name="faults-sync-cost", min_size=1, max_size=4, timeout=5, connect_timeout=3)
    writer = EntityWriter(PgDocumentStore.over_pool(pool, statement_timeout_ms=10000), write_timeout=30)
    writer.open()
    counts = [0] * clients
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(index: int) -> None:
        try:
            while not stop.is_set():
                writer.write([_record(f"{prefix}-{index}-{counts[index]}")])
                counts[index] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    try:
        pool.wait(timeout=10)
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not errors, errors[:3]
        return sum(counts) / (time.perf_counter() - started)
    finally:
        writer.close()


def _interleaved(measure, rounds: int) -> dict:
    """Run ``measure(mode)`` for both modes ``rounds`` times, alternating which goes first (the machine is
    shared and noisy: a slow minute must hit both). Returns per mode the median and the range."""
    rates = {"async": [], "sync": []}
    for round_ in range(rounds):
        for mode in (("async", "sync") if round_ % 2 == 0 else ("sync", "async")):
            rates[mode].append(measure(mode))
    result = {mode: {"median": round(statistics.median(v), 1), "min": round(min(v), 1), "max": round(max(v), 1)}
              for mode, v in rates.items()}
    result["sync_over_async"] = round(result["sync"]["median"] / result["async"]["median"], 3)
    return result


def test_cost_of_synchronous_replication_in_write_throughput(ha, function_factory):
    cluster, secrets = ha
    dsn = cluster.dsn("writer", "primary")
    figures = {}
    for clients in (1, 8):
        def writer(mode: str, clients: int = clients) -> float:
            cluster.set_synchronous(mode == "sync")
            return _writer_docs_per_s(dsn, f"cost-{clients}-{mode}-{time.time_ns()}", clients, 2.0)
        figures[f"writer_{clients}_clients_docs_per_s"] = _interleaved(writer, rounds=4)
    # Through the function (model included), 8 closed-loop clients.
    fn = function_factory("ner-processor", SECRETS_DIR=str(secrets))

    def function(mode: str) -> float:
        cluster.set_synchronous(mode == "sync")
        load = Load(fn.port, clients=8, max_requests=300).start()
        started = time.monotonic()
        assert load.wait_for(lambda o: len(o) >= 300, 60)
        outcomes = load.stop()
        assert all(o.ok for o in outcomes), status_counts(outcomes)
        return len(outcomes) / (time.monotonic() - started)
    figures["function_8_clients_docs_per_s"] = _interleaved(function, rounds=4)
    cluster.set_synchronous(True)
    report("synchronous_replication_cost", **figures)
    assert all(f["sync_over_async"] > 0 for f in figures.values())


def _stalled_replica_failover(cluster, fn, stall_s: float) -> dict:
    """SIGSTOP the primary's WAL sender (a replica that stays connected but receives nothing: network
    stall, overloaded node; stopping the replica's receiver would not do, the kernel's socket buffers
    would still take the WAL), keep writing for ``stall_s``, SIGKILL the primary and promote: what the
    old primary acknowledged during the stall never reached the replica."""
    with psycopg.connect(cluster.dsn("admin", "primary"), autocommit=True) as conn:
        sender = conn.execute("SELECT pid FROM pg_stat_replication").fetchone()[0]
    load = Load(fn.port, clients=8).start()
    try:
        assert load.wait_for(lambda o: sum(x.ok for x in o) >= 50, 30), "no steady load before the stall"
        os.kill(sender, signal.SIGSTOP)
        stalled_at = time.monotonic()
        try:
            time.sleep(stall_s)
        finally:
            cluster.kill_primary()  # SIGKILL ends the stopped sender too
            with contextlib.suppress(ProcessLookupError):
                os.kill(sender, signal.SIGCONT)
        killed_at = time.monotonic()
        time.sleep(0.5)
        cluster.promote_replica()
        promoted_at = time.monotonic()
        load.wait_for(lambda o: any(x.ok and x.started >= promoted_at for x in o), 15)
        time.sleep(1.0)
    finally:
        outcomes = load.stop()
    result = audit(cluster.dsn("admin", "primary"), outcomes)
    # (0.1 s margin: a COMMIT answered right after the SIGSTOP may have been sent before it)
    acked_in_stall = sum(o.ok and stalled_at + 0.1 <= o.started + o.elapsed <= killed_at for o in outcomes)
    cluster.rebuild_replica()
    return {"result": result, "outcomes": outcomes, "figures": dict(
        stall_s=stall_s, sent=len(outcomes), statuses=status_counts(outcomes),
        acknowledged_during_stall=acked_in_stall, documents_acknowledged=result.acknowledged,
        lost=len(result.lost), half_written=len(result.half_written))}


@pytest.mark.parametrize("mode", ["asynchronous", "synchronous"])
def test_failover_after_a_replica_stall_shorter_than_the_statement_timeout(mode, ha, function_factory):
    """Asynchronous: every write acknowledged during the stall is lost (measured). Synchronous: COMMITs
    wait for the stalled replica, nothing is acknowledged during the stall, nothing is lost."""
    cluster, secrets = ha
    cluster.set_synchronous(mode == "synchronous")
    fn = function_factory("ner-processor", SECRETS_DIR=str(secrets), DB_STATEMENT_TIMEOUT_MS="3000")
    run = _stalled_replica_failover(cluster, fn, stall_s=1.5)
    report(f"failover_after_replica_stall_{mode}", **run["figures"])
    assert run["result"].half_written == []
    if mode == "synchronous":
        assert run["figures"]["acknowledged_during_stall"] == 0
        assert run["result"].lost == [], run["result"].lost[:10]
    else:
        # The measurement this test exists for; it can only be > 0 if writes were acknowledged.
        assert run["figures"]["acknowledged_during_stall"] > 0
    cluster.set_synchronous(True)


def test_synchronous_stall_longer_than_the_statement_timeout_still_acknowledges_nothing_unreplicated(
        ha, function_factory):
    """PostgreSQL disables the statement timeout before it commits, so the timeout never cuts a COMMIT's
    wait for the standby short (which would commit locally and acknowledge): with a 1 s timeout and a
    3 s stall, nothing is acknowledged during the stall and nothing is lost by the failover."""
    cluster, secrets = ha
    cluster.set_synchronous(True)
    fn = function_factory("ner-processor", SECRETS_DIR=str(secrets), DB_STATEMENT_TIMEOUT_MS="1000")
    run = _stalled_replica_failover(cluster, fn, stall_s=3.0)
    report("failover_after_long_replica_stall_synchronous", statement_timeout_ms=1000, **run["figures"])
    assert run["result"].half_written == []
    assert run["figures"]["acknowledged_during_stall"] == 0
    assert run["result"].lost == [], run["result"].lost[:10]


def test_synchronous_replica_stall_without_failover_bounds_writes_by_the_request_timeout(ha, function_factory):
    """A connected replica that stalls holds every COMMIT (synchronous mode; nothing interrupts that wait
    but the standby or a configuration change): requests answer 503 database_timeout after
    REQUEST_TIMEOUT_S, then 2xx once the replica moves again; nothing is lost."""
    cluster, secrets = ha
    cluster.set_synchronous(True)
    fn = function_factory("ner-processor", SECRETS_DIR=str(secrets), REQUEST_TIMEOUT_S="2")
    with psycopg.connect(cluster.dsn("admin", "primary"), autocommit=True) as conn:
        sender = conn.execute("SELECT pid FROM pg_stat_replication").fetchone()[0]
    load = Load(fn.port, clients=8).start()
    try:
        assert load.wait_for(lambda o: sum(x.ok for x in o) >= 50, 30)
        os.kill(sender, signal.SIGSTOP)
        stalled_at = time.monotonic()
        try:
            time.sleep(5.0)
        finally:
            os.kill(sender, signal.SIGCONT)
        resumed_at = time.monotonic()
        recovered = load.wait_for(lambda o: any(x.ok and x.started >= resumed_at for x in o), 15)
        time.sleep(1.0)
    finally:
        outcomes = load.stop()
    result = audit(cluster.dsn("admin", "primary"), outcomes)
    during = [o for o in outcomes if stalled_at + 0.1 <= o.started and o.started + o.elapsed <= resumed_at]
    failures = [o for o in outcomes if not o.ok]
    report("synchronous_replica_stall_5s", sent=len(outcomes), statuses=status_counts(outcomes),
           finished_during_stall=status_counts(during),
           max_latency_s=round(max(o.elapsed for o in outcomes), 2), lost=len(result.lost),
           stored_without_ack=result.stored_unacknowledged)
    assert during and all(o.status == 503 and o.error == "database_timeout" for o in during)
    assert all(o.status == 503 and o.retry_after for o in failures)
    assert max(o.elapsed for o in outcomes) < 2.0 + 1.0
    assert recovered and result.lost == [] and result.half_written == []
