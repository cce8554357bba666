"""The rollup worker: keeps the analytics rollups (per-minute and per-hour top entities with error bounds,
per-label and per-document totals) up to date on the primary, so dashboard queries cost the same however
many comments a campaign sends.

``python -m functions.runtime.rollup`` (secret ``rollup-dsn``, role nlp_rollup) runs until SIGTERM. One
worker is active per database (a session advisory lock); a second one waits as a standby and takes over
when the first's connection ends. Each cycle (every ``ROLLUP_INTERVAL_MS`` while current):

1. Read the WAL position and the clock (the candidate watermark), then the highest change id handed out
   (``upto``), then a snapshot, and wait until every transaction of that snapshot has ended. A transaction
   that holds a change id up to ``upto`` had its xid before the id (the column default takes the xid first),
   so it was in that snapshot: once they have ended, every row up to ``upto`` that will ever be visible is
   visible. This is the Citus incremental-rollup watermark without its table lock: writers never wait.
2. In one transaction: aggregate the rows with change ids in ``(last, upto]`` per minute, source and entity;
   count minutes that are still open (ending less than ``ROLLUP_GRACE_S`` ago) in memory and write their
   top lists (:mod:`functions.runtime.topk`); rebuild from the base tables, in the database (only the
   kept rows and totals are written, none cross into the worker), any older minute that received a late
   row, and the minutes of rows written before change ids existed (history, newest hour first); merge
   the minutes of every finished hour into an hour list; move the state to ``upto`` and the watermark —
   only if the state still says ``last`` (a worker that lost its lock changes nothing).

Raw rows are only read, never locked; rollup rows are only written by this worker.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from functions.runtime import credentials, logs, metrics, topk
from functions.runtime.settings import Settings, current
from functions.runtime.stores.rollups import GroupKey, MentionRow, PgRollupStore, RollupState

log = logging.getLogger("functions.runtime.rollup")

ROLLUP_SECRET = credentials.SECRETS["rollup-dsn"].name
LOCK_KEY = 0x6E6C_705F_726F_6C6C  # "nlp_roll": one active worker per database
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# A backlog is caught up in cycles of at most this many change ids (~10 minutes of a 10 M mentions/h
# campaign, ~15 s of work on 2 cores): each cycle rebuilds the minutes at its edges again and re-merges
# the hours of its late minutes, so fewer, larger cycles catch up faster; the watermark only moves when a
# cycle reaches the head of the sequence anyway.
MAX_IDS_PER_CYCLE = 2_000_000
# Minutes rebuilt per statement: one scan and sort for several minutes, while a statement's sorts stay
# within a few tens of MB (a minute of a campaign holds ~170 k mentions).
REBUILD_BATCH = 4
HISTORY_STEP = timedelta(minutes=10)  # history rolled up per cycle, newest first
HOURS_PER_CYCLE = 3  # finished hours merged per cycle at most (catching up spreads over cycles)
WAIT_LIMIT_S = 5.0  # a cycle gives up waiting for running transactions after this long
STATE_REFRESH_S = 1.0  # the watermark moves at least this often when nothing new arrives
MAINTENANCE_EVERY_S = 60.0


def minute_floor(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def hour_floor(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class CycleReport:
    """What one cycle did: change ids rolled up, minutes rebuilt from the base tables, hours merged, and
    the watermark it published (None when it could not advance)."""

    rows: int = 0
    rebuilt: int = 0
    hours: int = 0
    watermark: datetime | None = None
    lag_s: float | None = None


class RollupWorker:
    """One database's rollups; :meth:`cycle` is one step (tests drive it directly), :meth:`run` the loop."""

    def __init__(self, store: PgRollupStore, settings: Settings, *, refresh_s: float = STATE_REFRESH_S,
                 wait_limit_s: float = WAIT_LIMIT_S):
        self.store = store
        self.refresh_s = refresh_s  # the watermark moves at least this often (seconds) when nothing is new
        self.wait_limit_s = wait_limit_s  # a cycle gives up waiting for running transactions after this
        self.k = settings.rollup_top_k
        self.grace = timedelta(seconds=settings.rollup_grace_s)
        self.settings = settings
        # Exact counts of the open minutes: (bucket, source, label) -> {norm: [mentions, text, newest id]}.
        # None until rebuilt from the base tables (at start and after a failed cycle).
        self.open: dict[GroupKey, dict[str, list]] | None = None
        # The open minutes' lists as last written (what the tables hold): a cycle writes only what changed.
        self.written: dict[GroupKey, topk.TopList] = {}
        self._last_write = 0.0

    # -- one cycle --------------------------------------------------------------------------------------

    def cycle(self) -> CycleReport | None:
        """Roll up what committed since the last cycle; None when transactions of the snapshot were still
        running after ``wait_limit_s`` (the watermark must not pass them). Raises psycopg errors, and
        RuntimeError when another worker moved the state meanwhile (nothing of this cycle is kept)."""
        lsn, at = self.store.wal_position()
        top_id = self.store.sequence_position()
        snapshot = self.store.snapshot()
        deadline = time.monotonic() + self.wait_limit_s
        while self.store.still_running(snapshot):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)
        try:
            with self.store.transaction():
                report = self._apply(lsn, at, top_id)
        except BaseException:
            self.open = None  # memory may hold counts (and written lists) of a transaction that rolled back
            raise
        return report

    def _apply(self, lsn: str, at: datetime, top_id: int) -> CycleReport | None:
        state = self.store.state()
        if self.open is None:
            self._restore_open(state, at)
        after = state.last_change_id
        upto = min(top_id, after + MAX_IDS_PER_CYCLE)
        complete = upto == top_id
        sealed_before = minute_floor(at - self.grace)
        history_minutes, history_before = self._history_step(state)
        if upto == after and not history_minutes and time.monotonic() - self._last_write < self.refresh_s \
                and state.hours_merged_before >= hour_floor(sealed_before):
            return CycleReport(watermark=state.watermark)
        mentions = self.store.entity_delta(after, upto, sealed_before) if upto > after else []
        documents = self.store.document_delta(after, upto, sealed_before) if upto > after else []
        late = self.store.sealed_minutes(after, upto, sealed_before) if upto > after else set()
        # A late row in an hour whose minute lists may have expired: rebuild the whole hour, or merging it
        # again would keep only the minutes still there.
        horizon = hour_floor(at - timedelta(hours=self.settings.rollup_minute_retention_h)) + HOUR
        for hour in {hour_floor(bucket) for bucket in late if bucket < horizon}:
            late.update(hour + i * MINUTE for i in range(60))
        rebuild = set(history_minutes) | late
        lists = self._count_open([r for r in mentions if r.bucket not in rebuild])
        self.store.write_lists("minute", lists, self.written)
        self.written.update(lists)
        for batch in _batches(sorted(rebuild), REBUILD_BATCH):
            self.store.rebuild_minutes(batch, upto, self.k)
        self.store.replace_document_minutes(sorted(rebuild))
        rebuilt_documents = [row for bucket in sorted(rebuild) for row in self.store.document_bucket(bucket, upto)]
        self.store.add_document_minutes([r for r in documents if r.bucket not in rebuild] + rebuilt_documents)
        # An hour of history is merged once all its minutes are rebuilt (history goes newest first).
        done = {hour_floor(b) for b in history_minutes if history_before is None or history_before <= hour_floor(b)}
        hours, merged_before = self._hours(state, sealed_before, late | done)
        if not self.store.advance(after=after, upto=upto, watermark=at if complete else state.watermark,
                                  watermark_lsn=lsn if complete else state.watermark_lsn,
                                  history_before=history_before, hours_merged_before=merged_before):
            raise RuntimeError("another rollup worker moved the state: this one steps back")
        self._last_write = time.monotonic()
        for key in [key for key in self.open if key[0] < sealed_before]:
            del self.open[key]  # sealed: later rows rebuild the minute from the base tables
        for key in [key for key in self.written if key[0] < sealed_before or key[0] in rebuild]:
            del self.written[key]  # sealed, or rewritten by the rebuild: no longer what was written
        watermark = at if complete else state.watermark
        return CycleReport(rows=upto - after, rebuilt=len(rebuild), hours=hours, watermark=watermark,
                           lag_s=max(0.0, (datetime.now(UTC) - watermark).total_seconds()))

    def _restore_open(self, state: RollupState, at: datetime) -> None:
        """Rebuild the open minutes' exact counts from the base tables (start, takeover, failed cycle)."""
        self.open = {}
        self.written = {}
        bucket = minute_floor(at - self.grace)
        while bucket <= minute_floor(at):
            for row in self.store.entity_bucket(bucket, state.last_change_id):
                topk.add_counts(self.open.setdefault((row.bucket, row.source, row.label), {}),
                                [(row.norm, row.mentions, row.text, row.newest)])
            bucket += MINUTE

    def _count_open(self, rows: Iterable[MentionRow]) -> dict[GroupKey, topk.TopList]:
        """Add delta rows of open minutes to memory; the new top lists of the groups they touched."""
        touched: set[GroupKey] = set()
        for row in rows:
            key = (row.bucket, row.source, row.label)
            topk.add_counts(self.open.setdefault(key, {}), [(row.norm, row.mentions, row.text, row.newest)])
            touched.add(key)
        return {key: topk.summarize(self.open[key], self.k) for key in touched}

    def _history_step(self, state: RollupState) -> tuple[list[datetime], datetime | None]:
        """The minutes of history (rows without change ids) to rebuild this cycle, newest first, a
        ``HISTORY_STEP`` slice per cycle so live rollups keep their pace, and where history stands
        afterwards (None: done)."""
        if state.history_before is None:
            return [], None
        floor = minute_floor(state.history_floor) if state.history_floor else state.history_before
        start = max(floor, minute_floor(state.history_before - HISTORY_STEP))
        minutes = self.store.minutes_with_history(start, state.history_before) if start < state.history_before else []
        return minutes, (None if start <= floor else start)

    def _hours(self, state: RollupState, sealed_before: datetime, rebuilt: set[datetime]) -> tuple[int, datetime]:
        """Merge the minutes of finished hours (and the hours of ``rebuilt`` minutes) into hour lists."""
        merged_before = state.hours_merged_before
        if merged_before.year < 2000:  # 'epoch': no hour merged yet
            merged_before = hour_floor(sealed_before) - HOUR
        hours = {hour_floor(bucket) for bucket in rebuilt if hour_floor(bucket) + HOUR <= sealed_before}
        while merged_before + HOUR <= sealed_before and len(hours) < HOURS_PER_CYCLE:
            hours.add(merged_before)
            merged_before += HOUR
        for hour in sorted(hours):
            self.store.merge_hour(hour, 2 * self.k)
        return len(hours), merged_before

    # -- the loop ---------------------------------------------------------------------------------------

    def maintain(self, now: datetime) -> int:
        """Expire old rollups (in batches) and warn when few daily partitions lie ahead; rows deleted.
        Minutes of the hour history is building are kept: the hour is merged from them when it is done."""
        deleted = 0
        minutes_before = now - timedelta(hours=self.settings.rollup_minute_retention_h)
        history_before = self.store.state().history_before
        if history_before is not None:
            minutes_before = min(minutes_before, hour_floor(history_before))
        for resolution, before in (("minute", minutes_before),
                                   ("hour", now - timedelta(days=self.settings.rollup_hour_retention_d))):
            while True:
                with self.store.transaction():
                    batch = self.store.expire(resolution, before, 5000)
                deleted += batch
                if batch < 5000:
                    break
        horizon = self.store.partition_horizon()
        if horizon is None or horizon - now < timedelta(days=2):
            log.warning("daily partitions end soon: writes fail after the last one", extra={
                "event": "rollup.partitions_missing", "partitions_until": horizon.isoformat() if horizon else None})
        return deleted


def _batches(buckets: list[datetime], size: int) -> Iterator[list[datetime]]:
    for i in range(0, len(buckets), size):
        yield buckets[i:i + size]


def run(settings: Settings, stop: threading.Event, dsn: str | None = None) -> int:
    """Connect, take the lock (or wait as a standby), cycle until ``stop`` is set; reconnect after a lost
    connection. Returns the process exit code."""
    dsn = dsn or settings.secret(ROLLUP_SECRET)
    if not dsn:
        log.error(f"secret {ROLLUP_SECRET} is not set", extra={"event": "rollup.not_configured"})
        return 2
    if settings.rollup_metrics_port:
        metrics.serve_rollup_metrics(settings.rollup_metrics_port)
    interval = settings.rollup_interval_ms / 1000.0
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True, application_name="nlp-rollup",
                                 options="-c statement_timeout=0 -c lock_timeout=5s") as conn:
                store = PgRollupStore(conn)
                if not store.try_lock(LOCK_KEY):
                    stop.wait(2.0)
                    continue
                log.info("rollup worker active", extra={"event": "rollup.active"})
                _loop(RollupWorker(store, settings), settings, stop, interval)
        except (psycopg.OperationalError, RuntimeError) as exc:
            log.warning("rollup worker lost its connection or its lock; starting over", extra={
                "event": "rollup.restarting", "error.type": type(exc).__name__, "error.message": str(exc)[:300]})
            stop.wait(1.0)
    return 0


def _loop(worker: RollupWorker, settings: Settings, stop: threading.Event, interval: float) -> None:
    next_maintenance = time.monotonic()
    progress = {"cycles": 0, "rows": 0, "rebuilt": 0, "max_lag_s": 0.0}
    next_progress = time.monotonic() + MAINTENANCE_EVERY_S
    while not stop.is_set():
        report = worker.cycle()
        if report is not None and report.lag_s is not None:
            metrics.ROLLUP_LAG_SECONDS.set(report.lag_s)
            metrics.ROLLUP_ROWS.inc(report.rows)
            progress["cycles"] += 1
            progress["rows"] += report.rows
            progress["rebuilt"] += report.rebuilt
            progress["max_lag_s"] = max(progress["max_lag_s"], round(report.lag_s, 3))
            if report.lag_s > settings.rollup_lag_alert_s:
                log.warning("rollup watermark is behind", extra={"event": "rollup.lagging",
                                                                 "lag_seconds": round(report.lag_s, 3)})
        if time.monotonic() >= next_maintenance:
            worker.maintain(datetime.now(UTC))
            next_maintenance = time.monotonic() + MAINTENANCE_EVERY_S
        if time.monotonic() >= next_progress:
            # One line a minute, not one per cycle: Kibana charts rows and lag without a line per second.
            log.info("rollup progress", extra={"event": "rollup.progress", **progress})
            progress = dict.fromkeys(progress, 0)
            next_progress = time.monotonic() + MAINTENANCE_EVERY_S
        if report is None or report.rows < MAX_IDS_PER_CYCLE:
            stop.wait(interval)


def main() -> int:
    settings = current()
    logs.configure("rollup", settings.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return run(settings, stop)


if __name__ == "__main__":
    sys.exit(main())
