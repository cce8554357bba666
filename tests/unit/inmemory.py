"""An in-memory stand-in for a psycopg_pool pool and its connections, for the writer's unit tests.

Modelled on procrastinate's ``InMemoryConnector``: it does not parse SQL; it recognises the project's
named queries (sql/queries/*.sql, loaded by name exactly as the runtime loads them) and implements each
one on Python dicts, with transactions (snapshot on BEGIN, restore on ROLLBACK). Tests inject faults
per query name (``fail_on``), a concurrent writer (``before_insert``), and a pool with no connection
(``pool_timeout``). Anything it does not know raises, so a new query cannot be silently ignored.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable
from typing import Any

from psycopg_pool import PoolTimeout

from functions.runtime import queries


def _named(*stems: str) -> dict[str, str]:
    """{sql text: query name} of the named query files."""
    return {text: name for stem in stems for name, text in queries.load(stem).items()}


class _Result:
    def __init__(self, rows: list[tuple]):
        self._rows = rows

    def __iter__(self):
        return iter(self._rows)

    def fetchone(self):
        return self._rows[0] if self._rows else None

    def fetchall(self):
        return list(self._rows)


class InMemoryDatabase:
    """The tables the writer touches, and a log of (query name, params) it ran."""

    def __init__(self):
        self.documents: dict[str, dict[str, Any]] = {}
        self.entities: list[tuple] = []
        self.statements: list[tuple[str, Any]] = []
        self.transactions: list[list[str]] = []  # query names per committed or rolled back transaction
        self.commits = 0
        self.rollbacks = 0
        self.lsn = itertools.count(1)
        # name -> list of exceptions to raise, one per call, before the statement runs
        self.fail_on: dict[str, list[BaseException]] = {}
        # called with the ids about to be inserted (simulates another writer committing first)
        self.before_insert: Callable[[list[str]], None] | None = None
        # called with the parameters of insert_documents; may raise (a value the server refuses)
        self.check_insert: Callable[[dict], None] | None = None
        self.pool_timeouts = 0  # the next N connection requests time out
        self._names = _named("writer", "db")
        self._snapshots: list[tuple[dict, list]] = []  # state at BEGIN of the open transactions

    def commit_elsewhere(self, request_id: str, text_sha256: str, model_name: str, model_version: str) -> None:
        """Another writer commits ``request_id`` now: it stays even when our transaction rolls back."""
        row = {"request_id": request_id, "text_sha256": text_sha256, "model_name": model_name,
               "model_version": model_version}
        self.documents.setdefault(request_id, row)
        for saved_documents, _ in self._snapshots:
            saved_documents.setdefault(request_id, dict(row))

    def stored(self, request_id: str) -> tuple[dict[str, Any], list[tuple]]:
        return self.documents[request_id], [e for e in self.entities if e[0] == request_id]


class InMemoryConnection:
    def __init__(self, database: InMemoryDatabase):
        self.database = database
        self._tx: list[str] | None = None
        self.autocommit = True

    # -- transactions --

    @contextlib.contextmanager
    def transaction(self):
        db = self.database
        saved = (copy.deepcopy(db.documents), list(db.entities))
        db._snapshots.append(saved)
        self._tx = []
        try:
            yield self
        except BaseException:
            db.documents, db.entities = saved
            db.rollbacks += 1
            raise
        else:
            db.commits += 1
        finally:
            db._snapshots.remove(saved)
            db.transactions.append(self._tx)
            self._tx = None

    # -- statements --

    def execute(self, query: str, params: Any = None) -> _Result:
        db = self.database
        name = db._names.get(query)
        if name is None:
            raise AssertionError(f"the in-memory database does not know this query: {query[:80]!r}")
        db.statements.append((name, params))
        if self._tx is not None:
            self._tx.append(name)
        failures = db.fail_on.get(name)
        if failures:
            raise failures.pop(0)
        return _Result(getattr(self, "_q_" + name)(params))

    def _q_begin_timeouts(self, params):
        return [(params["timeout_ms"], params["timeout_ms"])]

    def _q_ping(self, params):
        return [(1,)]

    def _q_existing_documents(self, params):
        docs = self.database.documents
        return [(rid, docs[rid]["text_sha256"], docs[rid]["model_name"], docs[rid]["model_version"])
                for rid in params["request_ids"] if rid in docs]

    def _q_insert_documents(self, params):
        db = self.database
        if db.check_insert is not None:
            db.check_insert(params)
        if db.before_insert is not None:
            db.before_insert(list(params["request_ids"]))
        columns = ["request_ids", "sources", "model_names", "model_versions", "text_lengths", "text_sha256s",
                   "bodies", "metadata", "entity_counts", "ner_ms"]
        inserted = []
        for values in zip(*(params[c] for c in columns), strict=True):
            row = dict(zip(["request_id", "source", "model_name", "model_version", "text_length",
                            "text_sha256", "body", "metadata", "entity_count", "ner_ms"], values, strict=True))
            if row["request_id"] in db.documents:  # ON CONFLICT (request_id) DO NOTHING
                continue
            db.documents[row["request_id"]] = row
            inserted.append((row["request_id"],))
        return inserted

    def _q_current_lsn(self, params):
        return [(f"0/{next(self.database.lsn):X}",)]

    @contextlib.contextmanager
    def cursor(self):
        yield _Cursor(self)


class _Cursor:
    def __init__(self, conn: InMemoryConnection):
        self.conn = conn

    @contextlib.contextmanager
    def copy(self, query: str):
        db = self.conn.database
        name = db._names.get(query)
        assert name == "copy_entities", query
        if self.conn._tx is not None:
            self.conn._tx.append(name)
        failures = db.fail_on.get(name)
        if failures:
            raise failures.pop(0)
        yield _Copy(db)


class _Copy:
    def __init__(self, database: InMemoryDatabase):
        self.database = database

    def write_row(self, row: tuple) -> None:
        self.database.entities.append(tuple(row))


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
