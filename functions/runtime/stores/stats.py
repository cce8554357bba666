"""entity-stats' store: one server's analytics and its position (``sql/queries/analytics.sql``).

Shapes::

    store = PgStatsStore(database)                       # replica or primary, role nlp_analyst
    read = store.read(StatsQuery(window, label, limit))  # StatsRead: position + top + mix, one snapshot
    read = store.read(query, wait_for="0/16B3748", deadline=t)  # None if not replayed by t (monotonic s)
    store.flush_position(replay_lsn, probe=True)         # (primary flush LSN, bytes behind) or (None, None)

Errors: :class:`functions.runtime.db.ServerDown` when no working connection can be had; psycopg's
``QueryCanceled``/``LockNotAvailable`` when a query exceeds the statement timeout or waits that long for a
lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import psycopg

from functions.runtime import db, queries
from functions.runtime.db import Database, ServerDown

# Strong reads poll the replica's replay position this often (grows up to the maximum), seconds.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.05


@dataclass(frozen=True)
class StatsQuery:
    """What to read: ``window`` back from now, one ``label`` (None: all), the top ``limit`` entities."""

    window: timedelta
    label: str | None
    limit: int


@dataclass(frozen=True)
class ServerPosition:
    """Where a server's data stands (``analytics.freshness``), read before the data in the same
    transaction, so the data is at least as new as ``replay_lsn``. On a primary ``replay_lsn`` is its
    flush position."""

    in_recovery: bool
    replay_lsn: str | None
    local_lag_seconds: float | None  # the standby's own view: 0 when all it received is replayed
    pending_bytes: int | None  # received but not replayed
    replay_age_seconds: float | None  # age of the last replayed commit (None: none since start)
    checked_at: datetime


@dataclass(frozen=True)
class StatsRead:
    """One answer's data: ``top`` rows ``(text, label, count)``, ``mix`` rows ``(label, count)``."""

    position: ServerPosition
    top: list[tuple[str, str, int]]
    mix: list[tuple[str, int]]


class StatsStore(Protocol):
    """The analytics of one server (replica or primary)."""

    name: str

    @property
    def configured(self) -> bool:
        """False when no DSN was given: every call raises ServerDown."""
        ...

    def open(self) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...

    def ready(self) -> bool: ...

    def read(self, query: StatsQuery, *, wait_for: str | None = None,
             deadline: float | None = None) -> StatsRead | None:
        """The data for ``query``; with ``wait_for``, first wait until the server has replayed that LSN
        (None when it has not by ``deadline``, a ``time.monotonic()`` value, or replay is paused)."""
        ...

    def flush_position(self, replay_lsn: str | None, *, probe: bool = False) -> tuple[str | None, int | None]:
        """(this server's flush LSN, bytes ``replay_lsn`` is behind it). ``probe``: ask only if it answers
        quickly, else (None, None) — freshness must not make a read slow or fail."""
        ...


class PgStatsStore:
    """:class:`StatsStore` on PostgreSQL through ``database``."""

    def __init__(self, database: Database):
        self.database = database
        self.name = database.name
        self._sql = queries.load("analytics")

    @property
    def configured(self) -> bool:
        return self.database.configured

    def open(self) -> None:
        self.database.open()

    def close(self, timeout: float = 5.0) -> None:
        self.database.close(timeout)

    def ready(self) -> bool:
        return self.database.ready()

    def read(self, query: StatsQuery, *, wait_for: str | None = None,
             deadline: float | None = None) -> StatsRead | None:
        with self.database.connection() as conn:
            if wait_for is not None and not self._wait_replayed(conn, wait_for, deadline):
                return None
            # Position first: the data queries take their snapshot afterwards.
            position = ServerPosition(*conn.execute(self._sql["replica_freshness"]).fetchone())
            params = {"window": query.window, "label": query.label, "limit": query.limit}
            name = "top_entities" if query.label is None else "top_entities_for_label"
            with self.database.transaction(conn):
                top = conn.execute(self._sql[name], params).fetchall()
                mix = conn.execute(self._sql["label_mix"], params).fetchall()
        return StatsRead(position, top, mix)

    def flush_position(self, replay_lsn: str | None, *, probe: bool = False) -> tuple[str | None, int | None]:
        if not self.configured:
            return None, None
        timeout = self.database.acquire_timeout(cap=db.PROBE_TIMEOUT_S) if probe else None
        try:
            with self.database.connection(timeout) as conn:
                lsn, lag = conn.execute(self._sql["primary_position"], {"replay_lsn": replay_lsn}).fetchone()
        except (ServerDown, psycopg.Error):
            if not probe:
                raise
            return None, None
        return lsn, (None if lag is None else int(lag))

    def _wait_replayed(self, conn: psycopg.Connection, lsn: str, deadline: float | None) -> bool:
        delay = POLL_FIRST_S
        while True:
            replayed, paused = conn.execute(self._sql["replica_replayed"], {"lsn": lsn}).fetchone()
            if replayed:
                return True
            if paused or deadline is None:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, POLL_MAX_S)
