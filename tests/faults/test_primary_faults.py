"""The primary fails under sustained load: SIGKILL, pool connections terminated, a clean fast stop.

Each test drives 8 client threads with unique request ids against one real ner-processor process,
breaks the primary, brings it back and then audits the primary row by row: every request id that got
a 2xx must be stored with exactly the entities its response listed (lost = 0), nothing may be stored
half (a document without its entity rows), failures must be fast 503s with Retry-After, and the same
process must serve 2xx again without a restart.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from tests.faults.support import Http, Load, audit, report, status_counts

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

OUTAGE_503_BOUND_S = 2.0  # the issue: requests during the outage get 503 + Retry-After within 2 s
UNAVAILABLE_CODES = {"database_unavailable", "database_timeout"}


def _first_ok_after(outcomes, moment: float) -> float | None:
    times = [o.started + o.elapsed for o in outcomes if o.ok and o.started >= moment]
    return min(times) - moment if times else None


def _check_failures_are_fast_503s(outcomes) -> list:
    failures = [o for o in outcomes if not o.ok]
    unexpected = [o for o in failures if o.status != 503 or o.error not in UNAVAILABLE_CODES]
    assert not unexpected, f"only 503 database_* may fail, got {status_counts(unexpected)}: {unexpected[:3]}"
    assert all(o.retry_after and int(o.retry_after) >= 1 for o in failures), "every 503 needs Retry-After"
    return failures


def test_primary_sigkill_under_load_loses_no_acknowledged_write(function_factory, healthy, admin_dsn):
    cluster = healthy
    fn = function_factory("ner-processor")
    pid = fn.process.pid
    load = Load(fn.port, clients=8).start()
    try:
        assert load.wait_for(lambda o: sum(x.ok for x in o) >= 100, 20), "no steady load before the kill"
        time.sleep(1.0)
        killed_at = time.monotonic()
        cluster.kill_primary()
        time.sleep(4.0)  # sustained load against a dead primary
        cluster.start_primary()
        restarted_at = time.monotonic()
        recovered = load.wait_for(lambda o: any(x.ok and x.started >= restarted_at for x in o), 30)
        time.sleep(2.0)  # and on after recovery
    finally:
        outcomes = load.stop()

    result = audit(admin_dsn, outcomes)
    failures = [o for o in outcomes if not o.ok]
    during = [o for o in outcomes if o.started >= killed_at + 0.05 and o.started + o.elapsed <= restarted_at]
    max_503 = max((o.elapsed for o in failures if o.status == 503), default=0.0)
    figures = report(
        "primary_sigkill_under_load",
        sent=len(outcomes), acknowledged_2xx=sum(o.ok for o in outcomes),
        status_503=sum(o.status == 503 for o in outcomes),
        other=sum(not o.ok and o.status != 503 for o in outcomes),
        documents_acknowledged=result.acknowledged, lost=len(result.lost),
        half_written=len(result.half_written), stored_without_ack=result.stored_unacknowledged,
        requests_during_outage=len(during), max_503_latency_s=round(max_503, 3),
        slowest_503s_s=sorted((round(o.elapsed, 2) for o in failures if o.status == 503), reverse=True)[:5],
        recovered_after_s=None if not recovered else round(_first_ok_after(outcomes, restarted_at), 2),
        statuses=status_counts(outcomes))

    assert result.lost == [], f"acknowledged but lost or incomplete on the primary: {result.lost[:10]}"
    assert result.half_written == [], f"documents without all their entities: {result.half_written[:10]}"
    assert during and all(o.status == 503 for o in during), "requests while the primary is dead must be 503"
    _check_failures_are_fast_503s(outcomes)
    assert recovered, "the same process must serve 2xx again after start_primary()"
    assert fn.process.poll() is None and fn.process.pid == pid
    assert figures["max_503_latency_s"] < OUTAGE_503_BOUND_S, \
        f"503s must come within {OUTAGE_503_BOUND_S}s under load, slowest took {max_503:.2f}s"


def _terminate_writer_backends(admin_dsn: str) -> int:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'ner-writer' AND usename = 'nlp_writer'").fetchone()[0]


def test_terminated_pool_connections_are_replaced_and_nothing_is_lost(function_factory, healthy, admin_dsn):
    fn = function_factory("ner-processor", DB_POOL_MIN_SIZE="2")
    probe = Http(fn.port)
    run = uuid.uuid4().hex[:8]
    # Quiet phase: the pool holds idle connections; kill them all; the very next requests must succeed
    # (the pool checks a connection before handing it out and replaces dead ones).
    for i in range(4):
        reply = probe.post_json({"text": f"Warm-up {i} at Siemens in Munich.", "request_id": f"{run}-w{i}"})
        assert reply.status == 200
    quiet_killed = _terminate_writer_backends(admin_dsn)
    assert quiet_killed >= 1, "the writer pool should hold connections named ner-writer"
    next_statuses = [probe.post_json({"text": f"After the kill {i}: Nokia in Helsinki.",
                                      "request_id": f"{run}-n{i}"}).status for i in range(10)]
    assert next_statuses == [200] * 10, f"requests after pg_terminate_backend must succeed: {next_statuses}"

    # Under load: kill the pool's connections three times; in-flight groups may get a 503, then 2xx again.
    load = Load(fn.port, clients=8).start()
    killed, probes = 0, []
    try:
        assert load.wait_for(lambda o: sum(x.ok for x in o) >= 50, 20)
        for round_ in range(3):
            killed += _terminate_writer_backends(admin_dsn)
            time.sleep(0.3)
            probes.append(probe.post_json({"text": f"Probe {round_} after the kill: Lidl in Hamburg.",
                                           "request_id": f"{run}-p{round_}"}).status)
            time.sleep(0.7)
        time.sleep(0.5)
    finally:
        outcomes = load.stop()
        probe.close()
    result = audit(admin_dsn, outcomes)
    report("terminated_pool_connections", sent=len(outcomes), acknowledged_2xx=sum(o.ok for o in outcomes),
           status_503=sum(o.status == 503 for o in outcomes),
           other=sum(not o.ok and o.status != 503 for o in outcomes), lost=len(result.lost),
           half_written=len(result.half_written), connections_terminated=quiet_killed + killed,
           probes_after_kill=probes, statuses=status_counts(outcomes))
    assert result.lost == [] and result.half_written == []
    _check_failures_are_fast_503s(outcomes)
    assert probes == [200, 200, 200], "a request sent after the kill must get a fresh connection"
    assert fn.process.poll() is None


def test_clean_fast_stop_of_the_primary_under_load_then_start(function_factory, healthy, admin_dsn):
    cluster = healthy
    fn = function_factory("ner-processor")
    load = Load(fn.port, clients=8).start()
    try:
        assert load.wait_for(lambda o: sum(x.ok for x in o) >= 50, 20)
        stopping = time.monotonic()
        cluster.stop_primary(mode="fast")
        stopped_s = time.monotonic() - stopping
        time.sleep(2.0)
        cluster.start_primary()
        restarted_at = time.monotonic()
        recovered = load.wait_for(lambda o: any(x.ok and x.started >= restarted_at for x in o), 30)
        time.sleep(1.0)
    finally:
        outcomes = load.stop()
    result = audit(admin_dsn, outcomes)
    max_503 = max((o.elapsed for o in outcomes if o.status == 503), default=0.0)
    report("primary_fast_stop_under_load", sent=len(outcomes), acknowledged_2xx=sum(o.ok for o in outcomes),
           status_503=sum(o.status == 503 for o in outcomes),
           other=sum(not o.ok and o.status != 503 for o in outcomes), lost=len(result.lost),
           half_written=len(result.half_written), pg_stop_s=round(stopped_s, 2),
           max_503_latency_s=round(max_503, 3),
           recovered_after_s=None if not recovered else round(_first_ok_after(outcomes, restarted_at), 2))
    assert result.lost == [] and result.half_written == []
    _check_failures_are_fast_503s(outcomes)
    assert recovered and fn.process.poll() is None
