"""entity-stats' store: one server's rollups and its position (``sql/queries/analytics.sql``).

Shapes::

    store = PgStatsStore(database)                       # replica or primary, role nlp_analyst
    read = store.read(StatsQuery(window, label, limit, source))   # StatsRead, one snapshot
    read = store.read(query, wait_for="0/16B3748", deadline=t)    # None if not replayed by t (monotonic s)
    read = store.read(query, with_tail=True)             # + raw rows after the watermark (read-your-writes)
    store.flush_position(replay_lsn, probe=True)         # (primary flush LSN, bytes behind) or (None, None)

Errors: :class:`functions.runtime.db.ServerDown` when no working connection can be had; psycopg's
``QueryCanceled``/``LockNotAvailable`` when a query exceeds the statement timeout or waits that long for a
lock; :class:`RollupsBehind` when a read-your-writes answer would have to count too many raw rows.
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
# A read-your-writes answer counts at most this many raw mentions after the watermark.
MAX_TAIL_MENTIONS = 200_000


class RollupsBehind(Exception):
    """The rollup worker is too far behind for a read-your-writes answer to count the raw rows."""


@dataclass(frozen=True)
class StatsQuery:
    """What to read: ``window`` back from the watermark, one ``label`` (None: all), the top ``limit``
    entities, one ``source`` ('' : all sources)."""

    window: timedelta
    label: str | None
    limit: int
    source: str = ""


@dataclass(frozen=True)
class RollupPosition:
    """How far this server's rollups reach: every row with a change id up to ``last_change_id``, every
    commit before ``watermark`` (and at or before ``watermark_lsn``); hour lists before
    ``hours_merged_before``."""

    last_change_id: int
    watermark: datetime
    watermark_lsn: str
    hours_merged_before: datetime


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
    """One answer's data: ``top`` rows ``(text, label, count, count_error)``, ``mix`` rows
    ``(label, count)``, over [``window_start``, ``window_end``] (bucket boundaries, at least the window
    asked for: analytics.window_buckets); ``with_tail``: raw rows after the watermark are included."""

    position: ServerPosition
    rollup: RollupPosition
    window_start: datetime
    window_end: datetime
    top: list[tuple[str, str, int, int]]
    mix: list[tuple[str, int]]
    with_tail: bool = False


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

    def read(self, query: StatsQuery, *, wait_for: str | None = None, deadline: float | None = None,
             with_tail: bool = False) -> StatsRead | None:
        """The data for ``query``; with ``wait_for``, first wait until the server has replayed that LSN
        (None when it has not by ``deadline``, a ``time.monotonic()`` value, or replay is paused);
        ``with_tail``: add the raw mentions after the watermark (the window then ends now)."""
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

    def read(self, query: StatsQuery, *, wait_for: str | None = None, deadline: float | None = None,
             with_tail: bool = False) -> StatsRead | None:
        with self.database.connection() as conn:
            if wait_for is not None and not self._wait_replayed(conn, wait_for, deadline):
                return None
            # Position first: the data queries take their snapshot afterwards.
            position = ServerPosition(*conn.execute(self._sql["replica_freshness"]).fetchone())
            with self.database.transaction(conn):
                rollup = RollupPosition(*conn.execute(self._sql["rollup_position"]).fetchone())
                if with_tail and conn.execute(self._sql["tail_size"], {"bound": MAX_TAIL_MENTIONS}).fetchone()[0] \
                        >= MAX_TAIL_MENTIONS:
                    raise RollupsBehind(f"more than {MAX_TAIL_MENTIONS} mentions are not rolled up yet")
                params = {"window": query.window, "until": position.checked_at if with_tail else None,
                          "source": query.source, "label": query.label, "limit": query.limit}
                start, end = conn.execute(self._sql["window"], params).fetchone()
                top = conn.execute(self._sql["top_entities"], params).fetchall()
                mix = conn.execute(self._sql["label_mix"], params).fetchall()
        return StatsRead(position, rollup, start, end, top, mix, with_tail)

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
