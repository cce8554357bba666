"""An in-memory stand-in for a psycopg_pool pool and its connections, for the unit tests of the connector
layer (functions/runtime/db.py: health, probes, per-transaction timeouts).

It answers the connector's own named queries (sql/queries/db.sql, loaded by name exactly as the runtime
loads them) and raises on anything else: the stores have their own in-memory fakes at the store seam
(functions/runtime/stores/memory.py). A pool with no connection for the next N requests: ``pool_timeouts``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from psycopg_pool import PoolTimeout

from functions.runtime import queries


class _Result:
    def __init__(self, rows: list[tuple]):
        self._rows = rows

    def fetchone(self):
        return self._rows[0] if self._rows else None

    def fetchall(self):
        return list(self._rows)


class InMemoryDatabase:
    """A log of the (query name, params) the connector ran, per transaction too."""

    def __init__(self):
        self.statements: list[tuple[str, Any]] = []
        self.transactions: list[list[str]] = []  # query names per committed or rolled back transaction
        self.commits = 0
        self.rollbacks = 0
        self.pool_timeouts = 0  # the next N connection requests time out
        self.names = {text: name for name, text in queries.load("db").items()}


class InMemoryConnection:
    def __init__(self, database: InMemoryDatabase):
        self.database = database
        self._tx: list[str] | None = None
        self.autocommit = True

    @contextlib.contextmanager
    def transaction(self):
        self._tx = []
        try:
            yield self
        except BaseException:
            self.database.rollbacks += 1
            raise
        else:
            self.database.commits += 1
        finally:
            self.database.transactions.append(self._tx)
            self._tx = None

    def execute(self, query: str, params: Any = None) -> _Result:
        name = self.database.names.get(query)
        if name is None:
            raise AssertionError(f"the in-memory connector does not know this query: {query[:80]!r}")
        self.database.statements.append((name, params))
        if self._tx is not None:
            self._tx.append(name)
        if name == "begin_timeouts":
            return _Result([(params["timeout_ms"], params["timeout_ms"])])
        return _Result([(1,)])


class InMemoryPool:
    """What the runtime uses of a psycopg_pool.ConnectionPool."""

    def __init__(self, database: InMemoryDatabase | None = None, *, timeout: float = 1.0):
        self.database = database or InMemoryDatabase()
        self.timeout = timeout
        self.opened = False
        self.closed = False
        self.requested_timeouts: list[float | None] = []

    def open(self, wait: bool = True) -> None:
        self.opened = True

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None):
        self.requested_timeouts.append(timeout)
        if self.database.pool_timeouts:
            self.database.pool_timeouts -= 1
            raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec")
        yield InMemoryConnection(self.database)
