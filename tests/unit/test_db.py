"""functions/runtime/db.py without a server: the one error classifier, the pool factory's settings, the
backoff shim's version check, health (short probes after a failure, the readiness cache) and the
per-transaction timeouts."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import psycopg
import psycopg.errors
import psycopg_pool
import psycopg_pool.base
import pytest
from psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

from functions.runtime import db
from functions.runtime.db import Database, Failure, ServerDown, classify, make_pool
from functions.runtime.settings import Settings
from tests.unit.inmemory import InMemoryPool

REPO = Path(__file__).resolve().parents[2]


# -- classification ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("exc", "failure"), [
    (PoolTimeout("no connection"), Failure.SERVER_DOWN),
    (TooManyRequests("queue full"), Failure.SERVER_DOWN),
    (psycopg.OperationalError("server closed the connection"), Failure.SERVER_DOWN),
    (psycopg.InterfaceError("the connection is closed"), Failure.SERVER_DOWN),
    (psycopg.errors.SerializationFailure("conflict with recovery"), Failure.SERVER_DOWN),
    (psycopg.errors.AdminShutdown("terminating connection"), Failure.SERVER_DOWN),
    (ServerDown("replica", None), Failure.SERVER_DOWN),
    (psycopg.errors.QueryCanceled("statement timeout"), Failure.TIMEOUT),
    (psycopg.errors.LockNotAvailable("lock timeout"), Failure.TIMEOUT),
    (psycopg.errors.UniqueViolation("duplicate key"), Failure.QUERY),
    (psycopg.errors.UntranslatableCharacter("bad escape"), Failure.QUERY),
    (psycopg.errors.InsufficientPrivilege("permission denied"), Failure.QUERY),
    (ValueError("a bug"), Failure.QUERY),
])
def test_classify_tells_server_down_from_timeouts_from_query_problems(exc, failure):
    assert classify(exc) is failure


def test_safe_message_keeps_the_first_line_only_and_bounds_it():
    exc = psycopg.errors.NotNullViolation("null value in column\nDETAIL:  Failing row contains (secret text)")
    assert db.safe_message(exc) == "null value in column"
    assert len(db.safe_message(ValueError("x" * 1000))) == 300
    assert db.safe_message(ValueError()) == "ValueError"


# -- the pool factory ----------------------------------------------------------------------------------

def test_make_pool_is_closed_checked_and_never_prepares_by_default():
    pool = make_pool("host=127.0.0.1 port=1 dbname=x user=x", name="unit", **Settings().pool_options())
    assert pool.closed  # created closed: nothing connects at import
    assert pool.kwargs["prepare_threshold"] is None
    assert pool.kwargs["application_name"] == "unit" and pool.kwargs["connect_timeout"] == 2
    assert pool.timeout == 1.0 and pool.max_size == 4 and pool.min_size == 1
    assert pool.reconnect_timeout == 5.0


def test_make_pool_passes_the_prepare_threshold_setting():
    options = Settings.from_env({"DB_PREPARE_THRESHOLD": "3"}).pool_options()
    assert make_pool("dbname=x", name="unit", **options).kwargs["prepare_threshold"] == 3


def test_connect_timeout_is_at_least_one_second():
    assert make_pool("dbname=x", name="unit", connect_timeout=0.2).kwargs["connect_timeout"] == 1


class _RecordingConnection:
    def __init__(self):
        self.autocommit = False
        self.read_only = None
        self.isolation_level = None
        self.executed: list[str] = []

    def execute(self, query, params=None):
        self.executed.append(query)


def test_write_pools_get_autocommit_and_no_session_settings():
    conn = _RecordingConnection()
    db.configure_connection(read_only=False)(conn)
    assert conn.autocommit is True and conn.executed == [] and conn.read_only is None


def test_read_pools_start_read_only_repeatable_read_transactions():
    conn = _RecordingConnection()
    db.configure_connection(read_only=True)(conn)
    assert conn.autocommit is True and conn.read_only is True
    assert conn.isolation_level == psycopg.IsolationLevel.REPEATABLE_READ
    assert not any("statement_timeout" in q for q in conn.executed)  # timeouts are per transaction


# -- backoff shim --------------------------------------------------------------------------------------

def test_the_installed_psycopg_pool_is_a_version_the_backoff_shim_was_tested_with():
    # An upgrade to an untested psycopg_pool fails here (check the class and attribute still exist and
    # mean the same, then add the version), not silently in production.
    assert psycopg_pool.__version__.startswith(db.BACKOFF_TESTED_VERSIONS), psycopg_pool.__version__
    assert db.tune_backoff() is True
    assert psycopg_pool.base.AttemptWithBackoff.INITIAL_DELAY == db.BACKOFF_INITIAL_DELAY_S


def test_the_backoff_shim_leaves_an_unknown_version_alone(monkeypatch):
    monkeypatch.setattr(psycopg_pool, "__version__", "9.0.0")
    monkeypatch.setattr(psycopg_pool.base.AttemptWithBackoff, "INITIAL_DELAY", 1.0)
    assert db.tune_backoff() is False
    assert psycopg_pool.base.AttemptWithBackoff.INITIAL_DELAY == 1.0


def test_the_shim_changes_the_delay_psycopg_pool_really_waits():
    attempt = psycopg_pool.base.AttemptWithBackoff(timeout=10.0)
    attempt.update_delay(time.monotonic())
    assert attempt.delay <= db.BACKOFF_INITIAL_DELAY_S * 1.2


# -- health ---------------------------------------------------------------------------------------------

def test_after_a_failure_writes_probe_briefly_until_the_next_success():
    pool = InMemoryPool(timeout=1.0)
    database = Database(pool, name="primary", statement_timeout_ms=100, cooldown_s=None)
    assert database.acquire_timeout() == 1.0
    database.failed(PoolTimeout())
    assert database.is_down() and database.acquire_timeout() == db.PROBE_TIMEOUT_S
    database.succeeded()
    assert not database.is_down() and database.acquire_timeout() == 1.0


def test_after_a_failure_reads_probe_briefly_for_the_cooldown_only(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(db.time, "monotonic", lambda: now[0])
    database = Database(InMemoryPool(timeout=1.0), name="replica", statement_timeout_ms=100, cooldown_s=2.0)
    database.failed(psycopg.OperationalError("down"))
    assert database.acquire_timeout() == db.PROBE_TIMEOUT_S
    now[0] += 2.5
    assert database.acquire_timeout() == 1.0


def test_acquire_timeout_is_capped_and_never_longer_than_the_pool_timeout():
    database = Database(InMemoryPool(timeout=0.1), name="x", statement_timeout_ms=100)
    assert database.acquire_timeout() == 0.1
    assert database.acquire_timeout(cap=0.05) == 0.05


def test_connection_failures_become_server_down_and_mark_the_server():
    pool = InMemoryPool()
    pool.database.pool_timeouts = 1
    database = Database(pool, name="primary", statement_timeout_ms=100)
    with pytest.raises(ServerDown) as info, database.connection():
        pass
    assert info.value.acquired is False and isinstance(info.value.cause, PoolTimeout)
    assert database.is_down()
    with pytest.raises(ServerDown) as info, database.connection():
        raise psycopg.OperationalError("lost in use")
    assert info.value.acquired is True


def test_query_problems_pass_through_unchanged_and_do_not_mark_the_server():
    database = Database(InMemoryPool(), name="primary", statement_timeout_ms=100)
    with pytest.raises(psycopg.errors.QueryCanceled), database.connection():
        raise psycopg.errors.QueryCanceled("statement timeout")
    assert not database.is_down()


def test_a_closed_pool_is_server_down_without_blaming_the_server():
    class _Closed(InMemoryPool):
        def connection(self, timeout=None):
            raise PoolClosed("closed")

    database = Database(_Closed(), name="primary", statement_timeout_ms=100)
    with pytest.raises(ServerDown), database.connection():
        pass
    assert not database.is_down()


def test_an_unconfigured_database_is_down_and_never_ready():
    database = Database(None, name="replica", statement_timeout_ms=100)
    assert not database.configured and database.ready() is False
    with pytest.raises(ServerDown), database.connection():
        pass


def test_readiness_is_cached_for_a_second_after_any_success(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(db.time, "monotonic", lambda: now[0])
    pool = InMemoryPool()
    database = Database(pool, name="primary", statement_timeout_ms=100)
    assert database.ready() is True
    pings = lambda: [n for n, _ in pool.database.statements].count("ping")  # noqa: E731
    assert pings() == 1
    now[0] += 0.5
    assert database.ready() is True and pings() == 1
    now[0] += 1.0
    assert database.ready() is True and pings() == 2
    assert pool.requested_timeouts[-1] == db.READY_PROBE_CAP_S


def test_a_transaction_starts_with_this_transactions_timeouts():
    pool = InMemoryPool()
    database = Database(pool, name="primary", statement_timeout_ms=2500)
    with database.connection() as conn, database.transaction(conn):
        conn.execute(db.queries.load("db")["ping"])
    assert pool.database.transactions == [["begin_timeouts", "ping"]]
    assert pool.database.statements[0] == ("begin_timeouts", {"timeout_ms": "2500"})


def test_the_timeouts_query_is_transaction_local():
    text = db.queries.load("db")["begin_timeouts"]
    assert text.count("set_config(") == 2 and text.count(", true)") == 2


# -- one of each -----------------------------------------------------------------------------------------

def _definitions(kind: type, names: set[str]) -> list[str]:
    found = []
    for path in sorted((REPO / "functions").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, kind) and node.name in names:
                found.append(f"{path.relative_to(REPO)}:{node.name}")
    return found


def test_one_pool_factory_and_one_error_classifier_exist():
    assert _definitions(ast.FunctionDef, {"make_pool", "_make_pool", "make_pools"}) == \
        ["functions/runtime/db.py:make_pool"]
    classifiers = {"classify", "_translate", "_is_connection_failure", "is_connection_failure"}
    assert _definitions(ast.FunctionDef, classifiers) == ["functions/runtime/db.py:classify"]
    # (logs.configure configures logging, not connections)
    assert _definitions(ast.FunctionDef, {"configure_connection", "_configure", "_configure_connection"}) == \
        ["functions/runtime/db.py:configure_connection"]


def test_only_db_py_creates_pools_or_touches_psycopg_pool_internals():
    for path in sorted((REPO / "functions").rglob("*.py")):
        if path.name == "db.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "ConnectionPool(" not in text, path
        assert "psycopg_pool.base" not in text, path


def test_every_transaction_starts_by_setting_its_own_timeouts():
    pool = InMemoryPool()
    database = Database(pool, name="primary", statement_timeout_ms=1234)
    for _ in range(2):
        with database.connection() as conn, database.transaction(conn):
            pass
    assert pool.database.transactions == [["begin_timeouts"]] * 2
    assert [p for n, p in pool.database.statements if n == "begin_timeouts"] == [{"timeout_ms": "1234"}] * 2


def test_no_connection_costs_one_full_pool_timeout_then_short_probes_until_it_answers():
    pool = InMemoryPool(timeout=1.0)
    database = Database(pool, name="primary", statement_timeout_ms=100, cooldown_s=None)
    pool.database.pool_timeouts = 1
    with pytest.raises(ServerDown), database.connection():
        pass
    with database.connection():
        pass
    with database.connection():
        pass
    assert pool.requested_timeouts == [1.0, db.PROBE_TIMEOUT_S, 1.0]
