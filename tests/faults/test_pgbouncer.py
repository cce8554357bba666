"""Through a real PgBouncer 1.18 in transaction mode (the Debian package, started by devtools.pgcluster in
front of the session's primary), as the CloudNativePG Pooler runs in a deployment.

* Many writes from many clients give 0 errors (psycopg never prepares statements by default, which
  PgBouncer < 1.21 cannot carry from one transaction to the next).
* With ACCESS EXCLUSIVE held on nlp.entities every write answers 503 within DB_STATEMENT_TIMEOUT_MS + 1 s
  (the timeouts are set per transaction, so they hold whichever server connection runs it), on the
  pooled path and on the direct one.
* Another client of the same PgBouncer pool sees the server default for statement_timeout/lock_timeout
  on every server connection the function used: nothing of the function's settings outlives its
  transactions. A control in the same test shows the scan does see a session SET when there is one.
* A primary SIGKILLed under load behind PgBouncer loses no acknowledged write, and the same function
  process serves 2xx again once the primary is back.
"""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg
import pytest

from tests.faults.support import Http, Load, audit, bearer, report, status_counts

pytestmark = [pytest.mark.integration]

UNAVAILABLE_CODES = {"database_unavailable", "database_timeout"}


def _writes(fn, *, clients: int, count: int, timeout: float):
    load = Load(fn.port, clients=clients, max_requests=count).start()
    started = time.monotonic()
    try:
        finished = load.wait_for(lambda o: len(o) >= count, timeout)
    finally:
        outcomes = load.stop()
    return outcomes, finished, time.monotonic() - started


def _check_many_writes(name, fn, admin_dsn, *, clients: int, count: int, timeout: float) -> None:
    outcomes, finished, elapsed = _writes(fn, clients=clients, count=count, timeout=timeout)
    result = audit(admin_dsn, outcomes)
    errors = [o for o in outcomes if not o.ok]
    report(name, sent=len(outcomes), clients=clients, statuses=status_counts(outcomes),
           error_codes=sorted({str(o.error) for o in errors}), lost=len(result.lost),
           half_written=len(result.half_written), seconds=round(elapsed, 1),
           docs_per_s=round(len(outcomes) / elapsed, 1))
    assert finished, f"{count} writes did not finish within {timeout}s"
    assert errors == [], f"{len(errors)} errors through PgBouncer: {status_counts(errors)} {errors[:3]}"
    assert result.lost == [] and result.half_written == []


def test_writes_from_16_clients_through_pgbouncer_all_succeed(function_factory, pooled_secrets_dir, healthy,
                                                              admin_dsn):
    fn = function_factory("ner-processor", SECRETS_DIR=str(pooled_secrets_dir))
    _check_many_writes("pgbouncer_writes_16_clients", fn, admin_dsn, clients=16, count=800, timeout=120)


@pytest.mark.faults
@pytest.mark.slow
def test_ten_thousand_writes_from_16_clients_through_pgbouncer_give_zero_errors(
        function_factory, pooled_secrets_dir, healthy, admin_dsn):
    fn = function_factory("ner-processor", SECRETS_DIR=str(pooled_secrets_dir))
    _check_many_writes("pgbouncer_10k_writes_16_clients", fn, admin_dsn, clients=16, count=10_000, timeout=900)


@contextlib.contextmanager
def _entities_locked(admin_dsn: str):
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        with psycopg.connect(admin_dsn) as conn:  # not autocommit: the lock lives until rollback
            conn.execute("LOCK TABLE nlp.entities IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(120)
            conn.rollback()

    holder = threading.Thread(target=hold_lock, daemon=True)
    holder.start()
    assert locked.wait(10), "could not take the lock"
    try:
        yield
    finally:
        release.set()
        holder.join(10)


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.parametrize("route", ["pgbouncer", "direct"])
def test_locked_entity_table_gives_503_within_statement_timeout_plus_one_second(
        route, function_factory, pooled_secrets_dir, healthy, admin_dsn):
    statement_timeout_ms = 3000  # the default of DB_STATEMENT_TIMEOUT_MS, set explicitly: it is the bound
    secrets = pooled_secrets_dir if route == "pgbouncer" else healthy.secrets_dir
    fn = function_factory("ner-processor", SECRETS_DIR=str(secrets),
                          DB_STATEMENT_TIMEOUT_MS=str(statement_timeout_ms))
    warm, _, _ = _writes(fn, clients=2, count=10, timeout=30)
    assert all(o.ok for o in warm), status_counts(warm)
    with _entities_locked(admin_dsn):
        locked, finished, _ = _writes(fn, clients=8, count=32, timeout=120)
    after, _, _ = _writes(fn, clients=4, count=20, timeout=30)
    result = audit(admin_dsn, locked + after)
    latencies = sorted(o.elapsed for o in locked)
    bound = statement_timeout_ms / 1000 + 1.0
    report(f"locked_entities_{route}", sent=len(locked), statuses=status_counts(locked),
           error_codes=sorted({str(o.error) for o in locked}), max_latency_s=round(latencies[-1], 3),
           median_latency_s=round(latencies[len(latencies) // 2], 3), bound_s=bound,
           after_release=status_counts(after), lost=len(result.lost))
    assert finished, "requests against a locked table must not hang"
    assert all(o.status == 503 and o.error in UNAVAILABLE_CODES and o.retry_after for o in locked), \
        status_counts(locked)
    assert latencies[-1] < bound, f"slowest 503 took {latencies[-1]:.2f}s, bound {bound}s"
    assert result.half_written == [] and result.stored_unacknowledged == 0
    assert all(o.ok for o in after), status_counts(after)
    assert result.lost == []


def _writer_server_pids(pgbouncer_admin_dsn: str, user: str = "nlp_writer") -> set[int]:
    """Backend pids of PgBouncer's server connections in the <user>/nlp pool (admin console)."""
    with psycopg.connect(pgbouncer_admin_dsn, autocommit=True) as conn:
        cur = conn.execute("SHOW SERVERS")
        columns = [d.name for d in cur.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    return {int(r["remote_pid"]) for r in rows if r["user"] == user and r["database"] == "nlp"}


def _settings_on_every_server_connection(dsn: str, pgbouncer_admin_dsn: str,
                                         user: str = "nlp_writer") -> dict[int, tuple[str, str]]:
    """statement_timeout and lock_timeout as seen by a fresh client on each server connection of the pool:
    one open transaction per existing server connection forces PgBouncer to hand each of them out (an
    idle server connection is reused before a new one is opened). Returns {backend pid: settings}."""
    existing = _writer_server_pids(pgbouncer_admin_dsn, user)
    assert existing, "the pool has no server connection to inspect"
    conns = [psycopg.connect(dsn, prepare_threshold=None) for _ in existing]  # not autocommit: BEGIN
    try:
        seen = {}
        for conn in conns:
            pid, statement, lock = conn.execute(
                "SELECT pg_backend_pid(), current_setting('statement_timeout'), current_setting('lock_timeout')"
            ).fetchone()
            seen[pid] = (statement, lock)
    finally:
        for conn in conns:
            conn.close()
    assert existing <= set(seen), f"server connections {existing - set(seen)} were not inspected"
    return seen


def test_another_client_of_the_same_pgbouncer_sees_the_server_default_timeouts(
        function_factory, pooled_secrets_dir, healthy, admin_dsn, writer_pooled_dsn, pgbouncer_admin_dsn):
    with psycopg.connect(healthy.dsn("writer", "primary"), autocommit=True) as conn:  # direct, fresh session
        default = conn.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
                               ).fetchone()
    fn = function_factory("ner-processor", SECRETS_DIR=str(pooled_secrets_dir), DB_STATEMENT_TIMEOUT_MS="1234",
                          DB_POOL_MIN_SIZE="4")
    outcomes, finished, _ = _writes(fn, clients=8, count=200, timeout=60)
    assert finished and all(o.ok for o in outcomes), status_counts(outcomes)
    after_function = _settings_on_every_server_connection(writer_pooled_dsn, pgbouncer_admin_dsn)

    # Control: a session-level SET through the same PgBouncer does stay on a server connection, and the
    # scan above finds it (so an empty finding is meaningful).
    with psycopg.connect(writer_pooled_dsn, autocommit=True, prepare_threshold=None) as leaker:
        leaker.execute("SELECT set_config('statement_timeout', '4321', false)")
    control = _settings_on_every_server_connection(writer_pooled_dsn, pgbouncer_admin_dsn)
    # Tidy up for later tests: end the server connection that carries the control's setting.
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for pid in _writer_server_pids(pgbouncer_admin_dsn):
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    report("pgbouncer_session_settings", server_connections=len(after_function),
           seen_after_function=sorted(set(after_function.values())), server_default=default,
           control_seen=sorted(set(control.values())))
    assert set(after_function.values()) == {default}, \
        f"the function's timeouts leaked to another client: {after_function}"
    assert ("4321ms", default[1]) in set(control.values()), f"the leak control was not detected: {control}"


@pytest.mark.faults
@pytest.mark.slow
def test_primary_sigkill_under_load_behind_pgbouncer_loses_no_acknowledged_write(
        function_factory, pooled_secrets_dir, healthy, admin_dsn):
    cluster = healthy
    fn = function_factory("ner-processor", SECRETS_DIR=str(pooled_secrets_dir))
    load = Load(fn.port, clients=8).start()
    try:
        assert load.wait_for(lambda o: sum(x.ok for x in o) >= 100, 30), "no steady load before the kill"
        killed_at = time.monotonic()
        cluster.kill_primary()
        time.sleep(4.0)  # longer than PgBouncer's query_wait_timeout (2 s): queued queries give up
        cluster.start_primary()
        restarted_at = time.monotonic()
        recovered = load.wait_for(lambda o: any(x.ok and x.started >= restarted_at for x in o), 30)
        time.sleep(1.0)
    finally:
        outcomes = load.stop()
    result = audit(admin_dsn, outcomes)
    failures = [o for o in outcomes if not o.ok]
    first_ok = min((o.started + o.elapsed for o in outcomes if o.ok and o.started >= restarted_at),
                   default=None)
    report("pgbouncer_primary_sigkill", sent=len(outcomes), acknowledged_2xx=sum(o.ok for o in outcomes),
           statuses=status_counts(outcomes), lost=len(result.lost), half_written=len(result.half_written),
           max_503_latency_s=round(max((o.elapsed for o in failures), default=0.0), 3),
           recovered_after_s=None if first_ok is None else round(first_ok - restarted_at, 2),
           started_during_outage=sum(killed_at <= o.started < restarted_at for o in outcomes))
    assert result.lost == [] and result.half_written == []
    # PgBouncer queues a query for up to query_wait_timeout (2 s, devtools/pgcluster/) before the
    # function gets an error to turn into a 503; the bound leaves 2 s for a loaded 2-core runner (3.3 s
    # seen there) and still fails on PgBouncer's default query_wait_timeout (120 s).
    assert max((o.elapsed for o in failures), default=0.0) < 4.0
    assert failures and all(o.status == 503 and o.error in UNAVAILABLE_CODES and o.retry_after
                            for o in failures), status_counts(failures)
    assert recovered and fn.process.poll() is None


def test_entity_stats_primary_pool_through_pgbouncer_answers_and_leaves_no_session_setting(
        function_factory, pg_cluster, pooled_secrets_dir, healthy, pgbouncer_admin_dsn, tmp_path, stats_token):
    # Only the primary DSN (through PgBouncer): every read takes the primary path.
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "stats-primary-dsn").write_text((pooled_secrets_dir / "stats-primary-dsn").read_text())
    (secrets / "entity-stats-token").write_text(stats_token + "\n")
    fn = function_factory("entity-stats", SECRETS_DIR=str(secrets), DB_STATEMENT_TIMEOUT_MS="1234")
    client = Http(fn.port, headers=bearer(stats_token))
    try:
        replies = [client.request("GET", f"/?window=1h&limit={5 + i % 3}", content_type=None) for i in range(30)]
    finally:
        client.close()
    assert [r.status for r in replies] == [200] * 30, [r.body[:200] for r in replies if r.status != 200][:3]
    assert {r.json["served_by"] for r in replies} == {"primary"}
    analyst_pooled = pg_cluster.dsn("analyst", "pgbouncer")
    seen = _settings_on_every_server_connection(analyst_pooled, pgbouncer_admin_dsn, "nlp_analyst")
    with psycopg.connect(pg_cluster.dsn("analyst", "primary"), autocommit=True) as conn:
        default = conn.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
                               ).fetchone()
    report("pgbouncer_entity_stats_primary", requests=len(replies), server_connections=len(seen),
           seen=sorted(set(seen.values())))
    assert set(seen.values()) == {default}, f"entity-stats left its timeout on a server connection: {seen}"
