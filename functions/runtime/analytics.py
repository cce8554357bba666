"""The read side of entity-stats: top entities and label mix from the analytics views, with routing
between the streaming replica and the primary and an honest freshness report.

Routing (:meth:`AnalyticsService.query`):

* ``eventual`` (default): the replica. If the replica cannot be reached, the primary when
  ``STATS_PRIMARY_FALLBACK`` allows it, else 503 ``database_unavailable``.
* ``strong`` or a ``min_lsn``: read-your-writes. The target LSN is ``min_lsn`` (e.g. the ``commit_lsn``
  ner-processor returned) or, for ``strong`` alone, the primary's current flush position. The replica
  is polled for up to ``STATS_STRONG_WAIT_MS`` until it has replayed the target and then answers;
  otherwise (replica behind, paused or down) the primary answers. Reading the primary here is the
  purpose of ``strong``, so it does not depend on the fallback setting. ``strong`` without ``min_lsn``
  needs the primary to know the target: primary down means 503.

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
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from functions.runtime import app, db, queries, request_log
from functions.runtime.contract import Event
from functions.runtime.db import Database, Failure, ServerDown, make_pool
from functions.runtime.errors import InvalidField, MethodNotAllowed, Timeout, Unavailable
from functions.runtime.http import json_response, request_id
from functions.runtime.settings import Settings
from functions.runtime.shapes import Freshness, StatsAnswer

log = logging.getLogger(__name__)

Consistency = Literal["eventual", "strong"]

# Request limits (the handler validates; the service re-checks what it relies on).
MAX_WINDOW = timedelta(days=30)
MAX_LIMIT = 100
DEFAULT_WINDOW = "1h"
DEFAULT_LIMIT = 20
ONTONOTES_LABELS = frozenset({
    "CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL",
    "ORG", "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART",
})

_WINDOW_RE = re.compile(r"^\s*(\d{1,7})\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LABEL_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_LSN_RE = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")

# Strong reads poll the replica's replay position this often (grows up to the maximum).
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.05


# -- request parameters ---------------------------------------------------------------------------

def parse_window(raw: str | None) -> tuple[str, timedelta]:
    """``15m`` / ``1h`` / ``24h`` / ``7d`` (s, m, h, d, w) -> (normalized text, timedelta), at most 30 days.
    Raises InvalidField('window')."""
    text = DEFAULT_WINDOW if raw is None or raw.strip() == "" else raw
    match = _WINDOW_RE.match(text)
    if not match:
        raise InvalidField("window", "'window' must be a number and a unit s, m, h, d or w, like 15m, 1h, "
                                     "24h or 7d")
    amount, unit = int(match.group(1)), match.group(2).lower()
    window = timedelta(seconds=amount * _WINDOW_UNITS[unit])
    if amount <= 0:
        raise InvalidField("window", "'window' must be longer than zero")
    if window > MAX_WINDOW:
        raise InvalidField("window", "'window' must be at most 30d")
    return f"{amount}{unit}", window


def parse_label(raw: str | None) -> str | None:
    """An entity label (case-insensitive; e.g. ORG, PERSON, GPE or a custom uppercase token), or None for
    all labels. Raises InvalidField('label')."""
    if raw is None or raw.strip() == "":
        return None
    label = raw.strip().upper()
    if not _LABEL_RE.match(label):
        raise InvalidField("label", "'label' must be an entity label such as ORG, PERSON or GPE "
                                    "(letters, digits and '_', at most 32)")
    return label


def parse_limit(raw: str | None) -> int:
    if raw is None or raw.strip() == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw.strip())
    except ValueError:
        raise InvalidField("limit", f"'limit' must be an integer from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidField("limit", f"'limit' must be an integer from 1 to {MAX_LIMIT}")
    return limit


def parse_consistency(raw: str | None) -> Consistency:
    value = "eventual" if raw is None or raw.strip() == "" else raw.strip().lower()
    if value not in ("eventual", "strong"):
        raise InvalidField("consistency", "'consistency' must be 'eventual' or 'strong'")
    return value  # type: ignore[return-value]


def parse_lsn(raw: str | None, field: str = "min_lsn") -> str | None:
    """A PostgreSQL LSN ``X/Y`` (hex), normalized to upper case, or None. Raises InvalidField(field)."""
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().upper()
    if not _LSN_RE.match(value):
        raise InvalidField(field, f"'{field}' must be a PostgreSQL LSN like 0/16B3748 (hex X/Y)")
    return value


def parse_query_params(query: Any) -> dict[str, Any]:
    """Validate entity-stats query parameters (``event.query``: anything with ``.get``).

    Returns keyword arguments for :meth:`AnalyticsService.query` plus ``window_text``. Unknown
    parameters are ignored (dashboards add cache busters). Raises InvalidField naming the field.
    """
    window_text, window = parse_window(query.get("window"))
    return {
        "window": window,
        "window_text": window_text,
        "label": parse_label(query.get("label")),
        "limit": parse_limit(query.get("limit")),
        "consistency": parse_consistency(query.get("consistency")),
        "min_lsn": parse_lsn(query.get("min_lsn")),
    }


def format_window(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _WINDOW_UNITS[unit] == 0:
            return f"{seconds // _WINDOW_UNITS[unit]}{unit}"
    return f"{seconds}s"


# -- service --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatsRequest:
    """A validated entity-stats request; ``window_text`` is the caller's spelling ("24h" stays "24h")."""

    request_id: str
    window: timedelta
    window_text: str
    label: str | None
    limit: int
    consistency: Consistency
    min_lsn: str | None


class AnalyticsService(app.Service):
    """Top entities, label mix and freshness, routed between replica and primary (see module doc).

    Thread-safe; create one per process (:func:`build`). ``query`` raises Unavailable (503, with
    Retry-After) when no allowed server answers, Timeout (504) when a query exceeds the statement timeout.
    """

    def __init__(self, settings: Settings, *, replica_dsn: str | None = None,
                 primary_dsn: str | None = None, replica_pool=None, primary_pool=None):
        super().__init__(settings)
        self._sql = queries.load("analytics")
        if replica_pool is None:
            dsn = replica_dsn or settings.secret("stats-replica-dsn")
            replica_pool = make_pool(dsn, name="entity-stats-replica", read_only=True,
                                     **settings.pool_options()) if dsn else None
        if primary_pool is None:
            dsn = primary_dsn or settings.secret("stats-primary-dsn")
            primary_pool = make_pool(dsn, name="entity-stats-primary", read_only=True,
                                     **settings.pool_options()) if dsn else None
        # A failed server is only probed briefly for RETRY_AFTER_S, then gets the full timeout again.
        options = {"statement_timeout_ms": settings.db_statement_timeout_ms,
                   "cooldown_s": float(settings.retry_after_s)}
        self.replica = Database(replica_pool, name="replica", **options)
        self.primary = Database(primary_pool, name="primary", **options)
        for target, secret in ((self.replica, "stats-replica-dsn"), (self.primary, "stats-primary-dsn")):
            if not target.configured:
                log.warning(f"secret {secret} is not set: entity-stats cannot use the {target.name}",
                            extra={"event": "db.not_configured", "db.server": target.name})
        self._closed = False

    # -- lifecycle --

    def open(self) -> AnalyticsService:
        """Start connecting in the background; never blocks on the database."""
        self.replica.open()
        self.primary.open()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._closed = True  # queries answer 503 shutting_down from now on
        for database in (self.replica, self.primary):
            database.close(timeout)  # idempotent

    def ready(self) -> bool:
        """True when the replica answers, or the primary does and fallback is allowed."""
        if self.replica.ready():
            return True
        return self.settings.stats_primary_fallback and self.primary.ready()

    def ready_checks(self) -> Mapping[str, Callable[[], bool]]:
        return {"database": self.ready}

    # -- HTTP edge --

    def parse(self, event: Event) -> StatsRequest:
        """GET only (405 + Allow otherwise); query parameters as :func:`parse_query_params` checks them."""
        if (event.method or "GET").upper() != "GET":
            raise MethodNotAllowed(f"entity-stats answers GET only, not {event.method}", allow="GET")
        params = parse_query_params(event.query)
        rid = request_id(event.headers)
        request_log.fields()["request_id"] = rid
        return StatsRequest(request_id=rid, **params)

    def process(self, request: StatsRequest) -> StatsAnswer:
        return self.query(request.window, request.label, request.limit, request.consistency, request.min_lsn,
                          window_text=request.window_text)

    def respond(self, request: StatsRequest, result: StatsAnswer) -> dict:
        return json_response(200, result, request_id=request.request_id, headers={
            "Cache-Control": "no-store",
            "X-Served-By": result["served_by"],
        })

    # -- queries --

    def query(self, window: timedelta, label: str | None = None, limit: int = DEFAULT_LIMIT,
              consistency: Consistency = "eventual", min_lsn: str | None = None,
              window_text: str | None = None) -> StatsAnswer:
        """The answer for ``window`` (0 < window <= 30 days), ``label`` (None: all), ``limit``
        (1..100); ``window`` in the answer is ``window_text`` (the caller's spelling) or the largest
        whole unit. Raises ValueError for out-of-range arguments (the handler validated them already),
        Unavailable (503) when no allowed server answers, Timeout (504) when a query exceeds
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
        params = {"window": window, "label": label, "limit": limit}
        started = time.perf_counter()
        try:
            if consistency == "eventual" and min_lsn is None:
                result = self._eventual(params)
            else:
                result = self._read_your_writes(params, min_lsn)
        except psycopg.Error as exc:
            if db.classify(exc) is not Failure.TIMEOUT:
                raise
            raise Timeout("the analytics query exceeded the statement timeout; use a shorter window "
                          "or a label") from None
        db_ms = (time.perf_counter() - started) * 1000.0
        request_log.fields().update(served_by=result["served_by"], db_ms=round(db_ms, 3),
                                    lag_seconds=result["freshness"]["lag_seconds"],
                                    lag_bytes=result["freshness"]["lag_bytes"])
        result.update(window=window_text or format_window(window), window_seconds=int(window.total_seconds()),
                      label=label, limit=limit, consistency=consistency, min_lsn=min_lsn)
        return result

    def _eventual(self, params: dict) -> StatsAnswer:
        try:
            return self._read_replica(params)
        except ServerDown:
            if not self.settings.stats_primary_fallback:
                raise self._unavailable("the analytics replica is unavailable") from None
        try:
            return self._read_primary(params)
        except ServerDown:
            raise self._unavailable("neither the analytics replica nor the primary is available") from None

    def _read_your_writes(self, params: dict, min_lsn: str | None) -> StatsAnswer:
        deadline = time.monotonic() + self.settings.stats_strong_wait_ms / 1000.0
        target_lsn = min_lsn
        if target_lsn is None:
            try:
                target_lsn = self._primary_lsn()
            except ServerDown:
                # Without the primary we cannot know what "everything committed" is.
                raise self._unavailable("the primary is unavailable, so a strong read cannot be "
                                        "guaranteed; retry or pass min_lsn") from None
        try:
            result = self._read_replica(params, wait_for=target_lsn, deadline=deadline)
        except ServerDown:
            result = None
        if result is not None:
            return result
        try:
            return self._read_primary(params)
        except ServerDown:
            raise self._unavailable("the primary is unavailable and the replica has not replayed "
                                    f"{target_lsn}") from None

    def _unavailable(self, message: str) -> Unavailable:
        return Unavailable(message, code="database_unavailable", retry_after=self.settings.retry_after_s)

    def _read_replica(self, params: dict, *, wait_for: str | None = None,
                      deadline: float | None = None) -> StatsAnswer | None:
        """The answer from the replica, or None when it did not replay ``wait_for`` by ``deadline``."""
        with self.replica.connection() as conn:
            if wait_for is not None and not self._wait_replayed(conn, wait_for, deadline):
                return None
            fresh = conn.execute(self._sql["replica_freshness"]).fetchone()
            in_recovery, replay_lsn, local_lag, pending_bytes, replay_age, checked_at = fresh
            top, mix = self._read_data(self.replica, conn, params)
        primary_lsn, lag_bytes = self._primary_lag(replay_lsn)
        if lag_bytes is None:
            # Primary unknown: the standby's own view (received vs replayed) is the best we have.
            lag_bytes, lag_seconds = int(pending_bytes or 0), local_lag
        elif lag_bytes == 0:
            lag_seconds = 0.0
        else:
            # Behind the primary: the data is at least as old as the last commit replayed. None when
            # no commit has been replayed since the standby started (age unknown).
            lag_seconds = max(replay_age, 0.0) if replay_age is not None else None
        return self._answer("replica" if in_recovery else "primary", top, mix, {
            "lag_seconds": None if lag_seconds is None else round(float(lag_seconds), 3),
            "lag_bytes": int(lag_bytes),
            "replay_lsn": replay_lsn,
            "primary_lsn": primary_lsn,
            "checked_at": _iso(checked_at),
        })

    def _read_primary(self, params: dict) -> StatsAnswer:
        with self.primary.connection() as conn:
            fresh = conn.execute(self._sql["replica_freshness"]).fetchone()
            lsn, checked_at = fresh[1], fresh[-1]
            top, mix = self._read_data(self.primary, conn, params)
        return self._answer("primary", top, mix, {
            "lag_seconds": 0.0,
            "lag_bytes": 0,
            "replay_lsn": lsn,
            "primary_lsn": lsn,
            "checked_at": _iso(checked_at),
        })

    def _read_data(self, database: Database, conn: psycopg.Connection, params: dict) -> tuple[list, list]:
        name = "top_entities" if params["label"] is None else "top_entities_for_label"
        with database.transaction(conn):
            top = conn.execute(self._sql[name], params).fetchall()
            mix = conn.execute(self._sql["label_mix"], params).fetchall()
        return top, mix

    @staticmethod
    def _answer(served_by: str, top: list, mix: list, freshness: Freshness) -> StatsAnswer:
        return {
            "top_entities": [{"text": text, "label": label, "count": int(count)}
                             for text, label, count in top],
            "label_mix": [{"label": label, "count": int(count)} for label, count in mix],
            "served_by": served_by,
            "freshness": freshness,
        }

    def _wait_replayed(self, conn: psycopg.Connection, lsn: str, deadline: float | None) -> bool:
        """Poll the replica until it has replayed ``lsn``; False at the deadline or if replay is paused."""
        delay = _POLL_FIRST_S
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
            delay = min(delay * 2, _POLL_MAX_S)

    def _primary_lsn(self) -> str:
        with self.primary.connection() as conn:
            return conn.execute(self._sql["primary_position"], {"replay_lsn": None}).fetchone()[0]

    def _primary_lag(self, replay_lsn: str | None) -> tuple[str | None, int | None]:
        """(primary flush LSN, bytes the replica is behind), or (None, None) if the primary cannot be
        asked quickly: freshness must not make a replica read slow or fail when the primary is down."""
        if not self.primary.configured:
            return None, None
        try:
            with self.primary.connection(self.primary.acquire_timeout(cap=db.PROBE_TIMEOUT_S)) as conn:
                lsn, lag = conn.execute(self._sql["primary_position"], {"replay_lsn": replay_lsn}).fetchone()
        except (ServerDown, psycopg.Error):
            return None, None
        return lsn, (None if lag is None else int(lag))


def _iso(value: datetime | None) -> str:
    value = value or datetime.now(UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(settings: Settings) -> AnalyticsService:
    """The process's service: pools for the replica and the primary from their secrets, connecting in
    the background."""
    return AnalyticsService(settings).open()
