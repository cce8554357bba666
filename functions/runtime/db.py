"""The one database layer of every function: pool factory, connection set-up, error classification,
health (short probes while a server is down, a 1-second readiness cache) and per-transaction timeouts.

Shapes::

    pool = make_pool(dsn, name="ner-writer", read_only=False, **settings.pool_options())
    database = Database(pool, name="primary", statement_timeout_ms=3000, cooldown_s=None)
    with database.connection() as conn:            # raises ServerDown when no working connection
        with database.transaction(conn):           # BEGIN + statement/lock timeout for this transaction
            conn.execute(...)

No session state carries the timeouts: each transaction sets them with ``set_config(..., true)`` as its
first statement, so they hold in any pooling mode (PgBouncer session or transaction pooling). Every
statement that reads or writes a table runs inside :meth:`Database.transaction`; outside one, callers
only run reads of server functions (``ping``, WAL positions, ``analytics.freshness``), which take no lock
and cannot run long.
``prepare_threshold=None`` (the default, ``DB_PREPARE_THRESHOLD`` empty) keeps psycopg from creating
server-side prepared statements, which transaction pooling would hand to the wrong server connection.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import select
import threading
import time
from collections.abc import Iterator

import psycopg
import psycopg.errors
import psycopg_pool
import psycopg_pool.base
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolClosed

from functions.runtime import queries

log = logging.getLogger(__name__)

# A server that just failed is probed with this short pool timeout until it answers again (writes) or
# until its cool-down has passed (reads), so an outage costs one full pool timeout, not one per request.
PROBE_TIMEOUT_S = 0.25
# A server that answered this recently counts as ready without a probe (probes cost nothing under load).
READY_CACHE_S = 1.0
# Readiness probes have their own deadline (Kubernetes: 1 s by default).
READY_PROBE_CAP_S = 0.5

# psycopg_pool re-checks a second broken connection in a row, and retries a failed reconnect, only after
# an exponential backoff that starts at 1 s. With a 1 s pool timeout that turns the connections a server
# restart or pg_terminate_backend left in the pool into a PoolTimeout (503) although the server is up.
# Starting the backoff at 50 ms lets the next request get a fresh connection at once. psycopg_pool has no
# public setting for it, so this shim sets the class attribute of the versions it was tested with
# (tests/unit/test_db.py fails on an upgrade to an unknown version instead of production silently
# keeping the slow backoff); it applies to every pool because every pool is made by make_pool below.
BACKOFF_INITIAL_DELAY_S = 0.05
BACKOFF_TESTED_VERSIONS = ("3.2.", "3.3.")


def tune_backoff() -> bool:
    """Set psycopg_pool's initial reconnect/re-check backoff; True if applied, False (and a warning) on
    a psycopg_pool version it was not tested with."""
    attempt = getattr(psycopg_pool.base, "AttemptWithBackoff", None)
    version = getattr(psycopg_pool, "__version__", "?")
    if attempt is None or not version.startswith(BACKOFF_TESTED_VERSIONS):
        log.warning("psycopg_pool backoff left at its default", extra={
            "event": "db.backoff_untuned", "psycopg_pool.version": version})
        return False
    attempt.INITIAL_DELAY = BACKOFF_INITIAL_DELAY_S
    return True


tune_backoff()


class Failure(enum.Enum):
    """What a database exception means for the caller."""

    SERVER_DOWN = "server_down"  # no connection, or it broke: retry later or on another server
    TIMEOUT = "timeout"  # statement or lock timeout: the server is up, the work too slow or blocked
    QUERY = "query"  # anything else: about this query or its data


def classify(exc: BaseException) -> Failure:
    """The one classifier of database errors (pool errors included)."""
    if isinstance(exc, ServerDown):
        return Failure.SERVER_DOWN
    if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return Failure.TIMEOUT
    # PoolTimeout and TooManyRequests are OperationalErrors; a standby's recovery conflict
    # (SerializationFailure) is one too: another server, or a later try, will do.
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return Failure.SERVER_DOWN
    return Failure.QUERY


def safe_message(exc: BaseException) -> str:
    """First line of an error, bounded: psycopg messages name host and port at most, never the
    password, and the first line never holds PostgreSQL's DETAIL (which can quote a row)."""
    text = str(exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


class ServerDown(Exception):
    """No working connection could be had (``acquired`` False), or it broke while in use (True)."""

    def __init__(self, server: str, cause: BaseException | None, *, acquired: bool = False):
        super().__init__(server)
        self.server = server
        self.cause = cause
        self.acquired = acquired


def configure_connection(read_only: bool):
    """The ``configure`` callback of every pool: autocommit (explicit transactions only, so a
    connection never goes back to the pool mid-transaction); read pools start every transaction as
    ``BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ`` (the data queries of one answer share a snapshot)."""

    def configure(conn: psycopg.Connection) -> None:
        conn.autocommit = True
        if read_only:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            conn.execute(queries.load("db")["read_only_session"])

    return configure


def check_connection(conn: psycopg.Connection) -> None:
    """The ``check`` callback of every pool: raises when a pooled connection is broken, so the pool
    replaces it before handing it out.

    An idle connection has nothing to read: the server sends nothing unasked. When it closes the
    connection (restart, crash, ``pg_terminate_backend``, idle timeout) the socket becomes readable (the
    FATAL message, then EOF), so a zero-timeout poll of the socket (a system call, no round trip) tells a
    healthy idle connection from a suspect one; only a suspect one pays psycopg's round-trip check. A
    connection used moments ago costs no round trip per checkout this way."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


def make_pool(dsn: str, *, name: str, read_only: bool = False, min_size: int = 1, max_size: int = 4,
              timeout: float = 1.0, connect_timeout: float = 2.0,
              prepare_threshold: int | None = None) -> ConnectionPool:
    """The one pool factory: a checked pool, created closed (``open(wait=False)`` later, so nothing
    waits for a database at import). ``timeout`` (s) bounds waiting for a connection,
    ``connect_timeout`` (s, rounded, at least 1) one connection attempt. Statement timeouts are not a
    connection setting: :meth:`Database.transaction` applies them. Connection errors never include the
    DSN (psycopg's messages name host/port only)."""
    return ConnectionPool(
        dsn,
        name=name,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        check=check_connection,
        configure=configure_connection(read_only),
        kwargs={"application_name": name, "prepare_threshold": prepare_threshold,
                "connect_timeout": max(1, round(connect_timeout))},
        # psycopg_pool backs off exponentially while reconnecting; giving up after a few seconds frees
        # the slot so the next request starts a fresh (immediate) attempt: recovery after an outage of
        # any length takes one attempt, not as long as the outage lasted.
        reconnect_timeout=max(5.0, 2.0 * timeout),
        max_lifetime=1800,
    )


class Database:
    """One pool (one server, one role) and what we last learnt about its health. Thread-safe.

    ``cooldown_s``: after a failure, borrow with the short probe timeout for this many seconds; None
    means until the next success.
    """

    def __init__(self, pool: ConnectionPool | None, *, name: str, statement_timeout_ms: int,
                 cooldown_s: float | None = None):
        self.pool = pool
        self.name = name
        self.statement_timeout_ms = statement_timeout_ms
        self.cooldown_s = cooldown_s
        self.timeout = pool.timeout if pool is not None else 0.0
        self.last_ok = 0.0
        self._down = False
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._closed = False
        self._sql = queries.load("db")

    @property
    def configured(self) -> bool:
        return self.pool is not None

    # -- lifecycle --

    def open(self) -> None:
        """Start connecting in the background; never blocks on the database."""
        if self.pool is not None:
            self.pool.open(wait=False)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self.pool is not None:
            self.pool.close(timeout=timeout)

    # -- health --

    def is_down(self) -> bool:
        if not self._down:
            return False
        return self.cooldown_s is None or time.monotonic() < self._down_until

    def acquire_timeout(self, cap: float | None = None) -> float:
        """The full pool timeout while healthy; a short probe right after a failure (seconds)."""
        timeout = PROBE_TIMEOUT_S if self.is_down() else self.timeout
        if cap is not None:
            timeout = min(timeout, cap)
        return max(0.01, min(timeout, self.timeout))

    def failed(self, exc: BaseException | None) -> None:
        with self._lock:
            was_up = not self.is_down()
            self._down = True
            self._down_until = time.monotonic() + (self.cooldown_s or 0.0)
        if was_up:
            log.warning("database unreachable", extra={
                "event": "db.unavailable", "db.server": self.name,
                "error.type": type(exc).__name__ if exc else "NotConfigured"})

    def succeeded(self) -> None:
        self.last_ok = time.monotonic()
        if self._down:
            with self._lock:
                recovered, self._down = self._down, False
            if recovered:
                log.info("database reachable again", extra={"event": "db.recovered", "db.server": self.name})

    def ready(self) -> bool:
        """True when the server answers a trivial query (cached for READY_CACHE_S after any success)."""
        if self.pool is None or self._closed:
            return False
        if time.monotonic() - self.last_ok < READY_CACHE_S:
            return True
        try:
            with self.connection(self.acquire_timeout(cap=READY_PROBE_CAP_S)) as conn:
                conn.execute(self._sql["ping"]).fetchone()
        except (ServerDown, psycopg.Error):
            return False
        return True

    # -- use --

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection (``timeout`` s to get one, default :meth:`acquire_timeout`).

        Raises ServerDown when none can be had or it broke in use (and records the failure); other
        exceptions pass through unchanged. A clean exit records a success."""
        if self.pool is None:
            raise ServerDown(self.name, None)
        acquired = False
        try:
            with self.pool.connection(timeout=self.acquire_timeout() if timeout is None else timeout) as conn:
                acquired = True
                yield conn
        except PoolClosed as exc:  # shutting down: not the server's fault
            raise ServerDown(self.name, exc, acquired=acquired) from None
        except Exception as exc:
            if classify(exc) is Failure.SERVER_DOWN and not isinstance(exc, ServerDown):
                self.failed(exc)
                raise ServerDown(self.name, exc, acquired=acquired) from exc
            raise
        self.succeeded()

    @contextlib.contextmanager
    def transaction(self, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
        """``BEGIN`` on ``conn`` with this database's statement and lock timeout for this transaction
        only; COMMIT on a clean exit, ROLLBACK on an exception."""
        with conn.transaction():
            conn.execute(self._sql["begin_timeouts"], {"timeout_ms": str(self.statement_timeout_ms)})
            yield conn

    @contextlib.contextmanager
    def pipelined_transaction(self, conn: psycopg.Connection, *, after_commit: str) -> Iterator[Pipelined]:
        """:meth:`transaction` in psycopg's pipeline mode, for a write that needs few answers: ``BEGIN``
        and this transaction's timeouts travel with the block's first statement (one round trip when the
        block fetches its result), and on a clean exit ``COMMIT`` travels with ``after_commit`` (a query
        without parameters, e.g. the WAL position), whose first row lands in ``Pipelined.after_commit``.

        A connection that breaks after the server confirmed ``COMMIT`` leaves ``after_commit`` None (the
        write stands); any other error rolls back and propagates, as in :meth:`transaction`."""
        tx = Pipelined()
        commit = after = None
        try:
            with conn.pipeline():
                conn.execute(self._sql["begin"])
                conn.execute(self._sql["begin_timeouts"], {"timeout_ms": str(self.statement_timeout_ms)})
                yield tx
                commit = conn.execute(self._sql["commit"])
                after = conn.execute(after_commit)
            # Leaving the pipeline sent COMMIT and the query after it, and read both answers.
            tx.after_commit = after.fetchone()
        except BaseException as exc:
            if isinstance(exc, psycopg.OperationalError) and commit is not None and commit.statusmessage == "COMMIT":
                return  # the connection broke after the server confirmed COMMIT: the write stands
            if not conn.broken and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(self._sql["rollback"])
            raise


class Pipelined:
    """What :meth:`Database.pipelined_transaction` learnt after ``COMMIT``: the first row of its
    ``after_commit`` query, or None when it is unknown."""

    __slots__ = ("after_commit",)

    def __init__(self):
        self.after_commit: tuple | None = None
