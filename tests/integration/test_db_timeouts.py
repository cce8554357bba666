"""The database layer against real PostgreSQL: timeouts live in each transaction, never in the session
(so they hold behind PgBouncer in any pooling mode), a statement past its timeout is classified as a
timeout, and ``DB_PREPARE_THRESHOLD`` decides whether psycopg prepares statements server-side."""

from __future__ import annotations

import psycopg
import pytest

from functions.runtime import db
from functions.runtime.db import Database, Failure, make_pool
from functions.runtime.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(params=["writer", "analyst_replica"])
def database(request):
    dsn = request.getfixturevalue(f"{request.param}_dsn")
    pool = make_pool(dsn, name=f"unit-{request.param}", read_only=request.param != "writer",
                     **Settings.from_env({"DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "1"}).pool_options())
    database = Database(pool, name=request.param, statement_timeout_ms=250)
    database.open()
    pool.wait(timeout=10)
    yield database
    database.close()


def settings_now(conn) -> tuple[str, str]:
    return conn.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')").fetchone()


def test_timeouts_apply_inside_a_transaction_and_leave_nothing_in_the_session(database):
    with database.connection() as conn:
        assert settings_now(conn) == ("0", "0")  # nothing set on the session by the pool
        with database.transaction(conn):
            assert settings_now(conn) == ("250ms", "250ms")
        assert settings_now(conn) == ("0", "0")  # gone with the transaction


def test_a_statement_past_its_timeout_is_classified_as_a_timeout(database):
    with database.connection() as conn, pytest.raises(psycopg.errors.QueryCanceled) as info, \
            database.transaction(conn):
        conn.execute("SELECT pg_sleep(2)")
    assert db.classify(info.value) is Failure.TIMEOUT
    assert not database.is_down()  # the server is fine: only the statement was too slow


def test_read_pools_run_read_only_transactions(analyst_replica_dsn, analyst_primary_dsn):
    for dsn in (analyst_replica_dsn, analyst_primary_dsn):
        database = Database(make_pool(dsn, name="ro", read_only=True, min_size=0), name="ro",
                            statement_timeout_ms=1000)
        database.open()
        try:
            with database.connection() as conn, database.transaction(conn):
                assert conn.execute("SELECT current_setting('transaction_read_only'),"
                                    " current_setting('transaction_isolation')").fetchone() == \
                    ("on", "repeatable read")
        finally:
            database.close()


def prepared_after_repeats(dsn: str, threshold: str) -> int:
    options = Settings.from_env({"DB_PREPARE_THRESHOLD": threshold, "DB_POOL_MIN_SIZE": "0"}).pool_options()
    database = Database(make_pool(dsn, name="prep", **options), name="prep", statement_timeout_ms=1000)
    database.open()
    try:
        with database.connection() as conn:
            for _ in range(6):
                conn.execute("SELECT %s::int + 1", (1,)).fetchone()
            return conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
    finally:
        database.close()


def test_by_default_nothing_is_prepared_server_side(writer_dsn):
    assert prepared_after_repeats(writer_dsn, "") == 0


def test_a_prepare_threshold_enables_server_side_prepared_statements(writer_dsn):
    assert prepared_after_repeats(writer_dsn, "2") >= 1
