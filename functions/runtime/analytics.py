"""The read side of entity-stats: top entities and label mix from the rollups (functions/runtime/rollup.py),
routed between the streaming replica and the primary, with an honest freshness report. Callers present a
bearer token from the secret ``entity-stats-token`` (functions/runtime/auth.py); no query runs otherwise.
It depends on two :class:`functions.runtime.stores.stats.StatsStore` (replica, primary) only; :func:`build`
makes them from the secrets.

Routing (:meth:`AnalyticsService.query`):

* ``eventual`` (default): the replica. If the replica cannot be reached, the primary when
  ``STATS_PRIMARY_FALLBACK`` allows it, else 503 ``database_unavailable``.
* ``strong`` or a ``min_lsn``: read-your-writes. The target LSN is ``min_lsn`` (e.g. the ``commit_lsn``
  ner-processor returned) or, for ``strong`` alone, the primary's current flush position. The replica
  is polled for up to ``STATS_STRONG_WAIT_MS`` until it has replayed the target and then answers;
  otherwise (replica behind, paused or down) the primary answers. Reading the primary here is the
  purpose of ``strong``, so it does not depend on the fallback setting. ``strong`` without ``min_lsn``
  needs the primary to know the target: primary down means 503. Such an answer adds the raw mentions
  committed after the rollup watermark to the rollups (TimescaleDB's real-time aggregation), so it
  counts the caller's own comments even before the rollup worker has.

Windows resolve to rollup buckets (``analytics.window_buckets``, migration 0004): every answer says which
(``window_start``, ``window_end``), how fresh the rollups are (``freshness.watermark``), and per entity how
many mentions it may have had beyond its count (``count_error``; ``approximate`` when any is above 0).

Every answer says who served it (``served_by``) and how fresh it is (``freshness``): the replica's
``replay_lsn``; ``lag_bytes`` = the primary's flush LSN minus the replay LSN; ``lag_seconds`` = 0 when
that is 0, else the age of the last replayed commit (the served data is at least that old; null if no
commit was replayed since the standby started). If the primary cannot be asked quickly, ``primary_lsn``
is null and both numbers come from the standby alone (received-but-not-replayed WAL), which cannot see
a receiver that is behind or disconnected. Served by the primary, both are 0.

Both pools are created once per process and opened in the background (``open(wait=False)``), so
importing the handler never waits for a database. A server that failed recently is only probed with a
short timeout until it answers again, so an outage costs one pool timeout, not one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import psycopg

from functions.runtime import app, credentials, db, request_context
from functions.runtime.auth import BearerTokens
from functions.runtime.contract import Event
from functions.runtime.db import Database, Failure, ServerDown, make_pool
from functions.runtime.errors import MethodNotAllowed, Timeout, Unavailable
from functions.runtime.http import json_response
from functions.runtime.settings import Settings
from functions.runtime.shapes import Freshness, StatsAnswer
from functions.runtime.stats_params import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_WINDOW,
    Consistency,
    StatsRequest,
    format_window,
    parse_query_params,
)
from functions.runtime.stores.stats import PgStatsStore, RollupsBehind, StatsQuery, StatsRead, StatsStore

log = logging.getLogger(__name__)

REPLICA_SECRET = credentials.SECRETS["stats-replica-dsn"].name
PRIMARY_SECRET = credentials.SECRETS["stats-primary-dsn"].name
TOKEN_SECRET = credentials.SECRETS["entity-stats-token"].name


class AnalyticsService(app.Service):
    """Top entities, label mix and freshness, routed between replica and primary (see module doc).

    Thread-safe; create one per process (:func:`build`). ``query`` raises Unavailable (503, with
    Retry-After) when no allowed server answers, Timeout (504) when a query exceeds the statement timeout.
    """

    def __init__(self, settings: Settings, replica: StatsStore, primary: StatsStore):
        super().__init__(settings)
        self.replica = replica
        self.primary = primary
        self.tokens = BearerTokens(settings, TOKEN_SECRET)
        for store, secret in ((replica, REPLICA_SECRET), (primary, PRIMARY_SECRET)):
            if not store.configured:
                log.warning(f"secret {secret} is not set: entity-stats cannot use the {store.name}",
                            extra={"event": "db.not_configured", "db.server": store.name})
        self._closed = False

    @classmethod
    def from_dsns(cls, settings: Settings, *, replica_dsn: str | None = None,
                  primary_dsn: str | None = None) -> AnalyticsService:
        """The service over read-only pools for these DSNs (default: the secrets), not yet open."""
        def store(name: str, dsn: str | None) -> PgStatsStore:
            pool = make_pool(dsn, name=f"entity-stats-{name}", read_only=True,
                             **settings.pool_options()) if dsn else None
            # A failed server is only probed briefly for RETRY_AFTER_S, then gets the full timeout again.
            return PgStatsStore(Database(pool, name=name, statement_timeout_ms=settings.db_statement_timeout_ms,
                                         cooldown_s=float(settings.retry_after_s)))

        return cls(settings, store("replica", replica_dsn or settings.secret(REPLICA_SECRET)),
                   store("primary", primary_dsn or settings.secret(PRIMARY_SECRET)))

    # -- lifecycle --

    def open(self) -> AnalyticsService:
        """Start connecting in the background; never blocks on the database."""
        self.replica.open()
        self.primary.open()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._closed = True  # queries answer 503 shutting_down from now on
        for store in (self.replica, self.primary):
            store.close(timeout)  # idempotent

    def ready(self) -> bool:
        """True when the replica answers, or the primary does and fallback is allowed."""
        if self.replica.ready():
            return True
        return self.settings.stats_primary_fallback and self.primary.ready()

    def ready_checks(self) -> Mapping[str, Callable[[], bool]]:
        return {"database": self.ready}

    # -- HTTP edge --

    def parse(self, event: Event) -> StatsRequest:
        """A valid bearer token first (401 otherwise, before anything else), then GET only (405 + Allow
        otherwise); query parameters as :func:`parse_query_params` checks them."""
        ctx = request_context.for_headers(event.headers)
        self.tokens.check(event.headers)
        if (event.method or "GET").upper() != "GET":
            raise MethodNotAllowed(f"entity-stats answers GET only, not {event.method}", allow="GET")
        return StatsRequest(request_id=ctx.request_id, **parse_query_params(event.query))

    def process(self, request: StatsRequest) -> StatsAnswer:
        return self.query(request.window, request.label, request.limit, request.consistency, request.min_lsn,
                          window_text=request.window_text, source=request.source)

    def respond(self, request: StatsRequest, result: StatsAnswer) -> dict:
        return json_response(200, result, request_id=request.request_id, headers={
            "Cache-Control": "no-store",
            "X-Served-By": result["served_by"],
        })

    # -- queries --

    def query(self, window: timedelta, label: str | None = None, limit: int = DEFAULT_LIMIT,
              consistency: Consistency = "eventual", min_lsn: str | None = None,
              window_text: str | None = None, source: str = "") -> StatsAnswer:
        """The answer for ``window`` (0 < window <= 30 days), ``label`` (None: all), ``limit``
        (1..100), ``source`` ('': all); ``window`` in the answer is ``window_text`` (the caller's
        spelling) or the largest whole unit. Raises ValueError for out-of-range arguments (the handler
        validated them already), Unavailable (503) when no allowed server answers or the rollups are too
        far behind for a read-your-writes answer, Timeout (504) when a query exceeds
        ``DB_STATEMENT_TIMEOUT_MS`` or waits that long for a lock."""
        if consistency not in ("eventual", "strong"):
            raise ValueError(f"unknown consistency {consistency!r}")
        if not timedelta(0) < window <= MAX_WINDOW:
            raise ValueError("window out of range")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError("limit out of range")
        if self._closed:
            raise Unavailable("entity-stats is shutting down", code="shutting_down",
                              retry_after=self.settings.retry_after_s)
        stats_query = StatsQuery(window, label, limit, source)
        started = time.perf_counter()
        try:
            if consistency == "eventual" and min_lsn is None:
                result = self._eventual(stats_query)
            else:
                result = self._read_your_writes(stats_query, min_lsn)
        except RollupsBehind as exc:
            raise Unavailable(f"{exc}; read with consistency=eventual or retry later", code="rollups_behind",
                              retry_after=self.settings.retry_after_s) from None
        except psycopg.Error as exc:
            if db.classify(exc) is not Failure.TIMEOUT:
                raise
            raise Timeout("the analytics query exceeded the statement timeout; use a shorter window "
                          "or a label") from None
        db_ms = (time.perf_counter() - started) * 1000.0
        request_context.log_fields().update(served_by=result["served_by"], db_ms=round(db_ms, 3),
                                            lag_seconds=result["freshness"]["lag_seconds"],
                                            lag_bytes=result["freshness"]["lag_bytes"],
                                            rollup_lag_seconds=result["freshness"]["rollup_lag_seconds"])
        result.update(window=window_text or format_window(window), window_seconds=int(window.total_seconds()),
                      label=label, source=source or None, limit=limit, consistency=consistency, min_lsn=min_lsn)
        return result

    def _eventual(self, query: StatsQuery) -> StatsAnswer:
        try:
            return self._from_replica(self.replica.read(query))
        except ServerDown:
            if not self.settings.stats_primary_fallback:
                raise self._unavailable("the analytics replica is unavailable") from None
        try:
            return self._from_primary(self.primary.read(query))
        except ServerDown:
            raise self._unavailable("neither the analytics replica nor the primary is available") from None

    def _read_your_writes(self, query: StatsQuery, min_lsn: str | None) -> StatsAnswer:
        deadline = time.monotonic() + self.settings.stats_strong_wait_ms / 1000.0
        target_lsn = min_lsn
        if target_lsn is None:
            try:
                target_lsn = self.primary.flush_position(None)[0]
            except ServerDown:
                # Without the primary we cannot know what "everything committed" is.
                raise self._unavailable("the primary is unavailable, so a strong read cannot be "
                                        "guaranteed; retry or pass min_lsn") from None
        try:
            read = self.replica.read(query, wait_for=target_lsn, deadline=deadline, with_tail=True)
        except ServerDown:
            read = None
        if read is not None:
            return self._from_replica(read)
        try:
            return self._from_primary(self.primary.read(query, with_tail=True))
        except ServerDown:
            raise self._unavailable("the primary is unavailable and the replica has not replayed "
                                    f"{target_lsn}") from None

    def _unavailable(self, message: str) -> Unavailable:
        return Unavailable(message, code="database_unavailable", retry_after=self.settings.retry_after_s)

    def _from_replica(self, read: StatsRead) -> StatsAnswer:
        """The answer of a replica read, its lag measured against the primary when it answers quickly."""
        position = read.position
        primary_lsn, lag_bytes = self.primary.flush_position(position.replay_lsn, probe=True)
        if lag_bytes is None:
            # Primary unknown: the standby's own view (received vs replayed) is the best we have.
            lag_bytes, lag_seconds = int(position.pending_bytes or 0), position.local_lag_seconds
        elif lag_bytes == 0:
            lag_seconds = 0.0
        else:
            # Behind the primary: the data is at least as old as the last commit replayed. None when
            # no commit has been replayed since the standby started (age unknown).
            age = position.replay_age_seconds
            lag_seconds = max(age, 0.0) if age is not None else None
        return _answer("replica" if position.in_recovery else "primary", read, {
            "lag_seconds": None if lag_seconds is None else round(float(lag_seconds), 3),
            "lag_bytes": int(lag_bytes),
            "replay_lsn": position.replay_lsn,
            "primary_lsn": primary_lsn,
            "checked_at": _iso(position.checked_at),
        })

    @staticmethod
    def _from_primary(read: StatsRead) -> StatsAnswer:
        lsn = read.position.replay_lsn
        return _answer("primary", read, {"lag_seconds": 0.0, "lag_bytes": 0, "replay_lsn": lsn,
                                         "primary_lsn": lsn, "checked_at": _iso(read.position.checked_at)})


def _answer(served_by: str, read: StatsRead, freshness: dict) -> StatsAnswer:
    """The answer body; ``freshness`` gets the rollup watermark (a read-your-writes answer with the raw
    tail is current up to ``checked_at``)."""
    rollup, checked_at = read.rollup, read.position.checked_at
    covered_to = checked_at if read.with_tail else rollup.watermark
    full: Freshness = {**freshness, "watermark": _iso(rollup.watermark), "watermark_lsn": rollup.watermark_lsn,
                       "rollup_lag_seconds": round(max(0.0, (checked_at - covered_to).total_seconds()), 3)}
    top = [{"text": text, "label": label, "count": int(count), "count_error": int(error)}
           for text, label, count, error in read.top]
    return {
        "top_entities": top,
        "label_mix": [{"label": label, "count": int(count)} for label, count in read.mix],
        "served_by": served_by,
        "freshness": full,
        "window_start": _iso(read.window_start),
        "window_end": _iso(read.window_end),
        "approximate": any(entity["count_error"] > 0 for entity in top),
    }


def _iso(value: datetime | None) -> str:
    value = value or datetime.now(UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(settings: Settings) -> AnalyticsService:
    """The process's service: stores for the replica and the primary from their secrets, connecting in
    the background."""
    return AnalyticsService.from_dsns(settings).open()
