"""The write side of the analytics phase (bench/phases/analytics.py): the rollup worker as a process the
phase starts and stops, EntityWriter throughput with and without rollup maintenance in interleaved rounds,
lock waits sampled from ``pg_locks`` meanwhile, and dropping a day of mentions while writers run.

Writers are :class:`bench.campaign_data.WriteStream` threads, each with its own EntityWriter and connection
(like separate function pods), writing ``group`` documents per transaction as fast as they can.
"""

from __future__ import annotations

import statistics
import threading
import time
import zlib
from pathlib import Path

import psycopg

from bench.campaign_data import WriteStream, fill_day
from bench.common import cpu_seconds, own_cpu_seconds, rss_mb
from devtools.processes import ManagedProcess, start_rollup_worker
from functions.runtime import queries, retention

WRITER_APP = "bench-writer"


class RollupProcess:
    """The rollup worker (``python -m functions.runtime.rollup``) of the phase's cluster."""

    def __init__(self, cluster, log_dir: Path):
        self.cluster, self.log_dir = cluster, log_dir
        self.process: ManagedProcess | None = None
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.process.poll() is None

    def start(self) -> None:
        if not self.running:
            self.process = start_rollup_worker(self.log_dir, secrets_dir=self.cluster.secrets_dir)
            self.restarts += 1

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def catch_up(self, timeout_s: float = 600.0) -> float:
        """Wait until the watermark passes the primary's current WAL position; returns the seconds waited.
        Raises TimeoutError (the worker's log tail) after ``timeout_s``."""
        sql = queries.load("bench")
        started = time.monotonic()
        with psycopg.connect(self.cluster.dsn("admin", "primary"), autocommit=True) as conn:
            lsn = conn.execute(sql["wal_lsn"]).fetchone()[0]
            while not conn.execute(sql["watermark_reached"], {"lsn": lsn}).fetchone()[0]:
                if time.monotonic() - started > timeout_s:
                    tail = self.process.raw_log()[-2000:] if self.process else "(not running)"
                    raise TimeoutError(f"the rollups did not reach {lsn} in {timeout_s} s:\n{tail}")
                time.sleep(0.05)
        return time.monotonic() - started

    def rss_mb(self) -> float:
        """Resident memory of the worker process in MB (0 when not running)."""
        try:
            return rss_mb(self.process.process.pid) if self.running else 0.0
        except RuntimeError:  # exited meanwhile
            return 0.0

    def cpu_s(self) -> float:
        """CPU seconds so far of the worker process and of its server backend (0 when not running)."""
        if not self.running:
            return 0.0
        with psycopg.connect(self.cluster.dsn("admin", "primary"), autocommit=True) as conn:
            pids = [row[0] for row in conn.execute(queries.load("bench")["backend_pids"], {"name": "nlp-rollup"})]
        return cpu_seconds(self.process.process.pid) + sum(own_cpu_seconds(pid) for pid in pids)


class PeakRss(threading.Thread):
    """The highest resident memory (MB) of the rollup worker, sampled every ``interval_s`` until stopped."""

    def __init__(self, worker: RollupProcess, interval_s: float = 0.5):
        super().__init__(name="worker-rss", daemon=True)
        self.worker, self.interval_s, self.peak_mb = worker, interval_s, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, self.worker.rss_mb())

    def stop(self) -> float:
        self._stop_event.set()
        self.join(5)
        return self.peak_mb


class LockSampler(threading.Thread):
    """Samples ``pg_locks`` (requests not granted) every ``interval_s`` on the primary. ``waits`` counts the
    samples per (waiter, lock type, relation, blockers) with application names reduced to their kind
    (``bench-writer``, ``nlp-rollup``, ...); ``longest_writer_wait_s`` is the longest a writer backend was
    seen waiting without a break."""

    def __init__(self, admin_primary_dsn: str, interval_s: float = 0.005):
        super().__init__(name="lock-sampler", daemon=True)
        self.dsn, self.interval_s = admin_primary_dsn, interval_s
        self.samples = 0
        self.waits: dict[str, int] = {}
        self.longest_writer_wait_s = 0.0
        self.error: str | None = None
        self._open: dict[int, float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        sql = queries.load("bench")["waiting_locks"]
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name="bench-locks") as conn:
                while not self._stop_event.wait(self.interval_s):
                    self._sample(conn.execute(sql).fetchall(), time.monotonic())
        except Exception as exc:  # reported, never fatal
            self.error = f"{type(exc).__name__}: {str(exc)[:200]}"

    def _sample(self, rows, now: float) -> None:
        self.samples += 1
        writers = set()
        for pid, app, locktype, relation, mode, blocked_by in rows:
            holders = "/".join(sorted({_kind(b) for b in blocked_by})) or "?"
            key = f"{_kind(app)} {locktype} {relation or '-'} {mode} <- {holders}"
            self.waits[key] = self.waits.get(key, 0) + 1
            if _kind(app) == WRITER_APP:
                writers.add(pid)
                self._open.setdefault(pid, now)
        for pid in list(self._open):
            if pid not in writers:
                self.longest_writer_wait_s = max(self.longest_writer_wait_s, now - self._open.pop(pid))
        for started in self._open.values():
            self.longest_writer_wait_s = max(self.longest_writer_wait_s, now - started)

    def stop(self) -> dict:
        self._stop_event.set()
        self.join(10)
        writer_writer = sum(n for key, n in self.waits.items()
                            if key.startswith(WRITER_APP) and key.endswith(WRITER_APP))
        on_rollups = sum(n for key, n in self.waits.items() if key.startswith(WRITER_APP) and " analytics." in key)
        return {"samples": self.samples, "waits": self.waits, "writer_waits_on_writers": writer_writer,
                "writer_waits_on_rollup_tables": on_rollups,
                "writer_waits": sum(n for key, n in self.waits.items() if key.startswith(WRITER_APP)),
                "longest_writer_wait_s": self.longest_writer_wait_s, "error": self.error}


def _kind(app: str) -> str:
    return WRITER_APP if app.startswith(WRITER_APP) else (app or "?")


def measure_writers(writer_dsn: str, writers: int, seconds: float, group: int, tag: str, *,
                    warmup_s: float = 0.5) -> dict:
    """``writers`` WriteStreams at full speed: documents (and mentions) committed per second over
    ``seconds`` after ``warmup_s``; ``errors`` of any writer."""
    streams = [WriteStream(writer_dsn, f"{WRITER_APP}-{tag}-{i}", group=group, seed=zlib.crc32(f"{tag}-{i}".encode()))
               for i in range(writers)]
    for stream in streams:
        stream.start()
    for stream in streams:
        stream.ready.wait(60)
    time.sleep(warmup_s)
    docs0, mentions0 = sum(s.docs for s in streams), sum(s.mentions for s in streams)
    started = time.perf_counter()
    time.sleep(seconds)
    docs1, mentions1 = sum(s.docs for s in streams), sum(s.mentions for s in streams)
    elapsed = time.perf_counter() - started
    for stream in streams:
        stream.stop()
    for stream in streams:
        stream.join(60)
    return {"docs_s": (docs1 - docs0) / elapsed, "mentions_s": (mentions1 - mentions0) / elapsed,
            "errors": [e for s in streams for e in s.errors][:5]}


def writer_rounds(cluster, worker: RollupProcess, levels: tuple[int, ...], rounds: int, seconds: float,
                  group: int, log=print) -> dict:
    """Per level of concurrent writers: ``rounds`` rounds of two arms, the rollup worker running (and caught
    up when the arm starts) or stopped, their order alternating (on/off, off/on, ...). Per level: the arms'
    docs/s, each round's ratio on/off and their median; the worker's CPU (cores) during the "on" arms; lock
    waits sampled from pg_locks during all arms. The worker is left running."""
    writer_dsn = cluster.dsn("writer", "primary")
    sampler = LockSampler(cluster.dsn("admin", "primary"))
    sampler.start()
    out: dict = {"levels": {}, "seconds": seconds, "rounds": rounds, "group": group}
    try:
        for level in levels:
            arms: dict[str, list[float]] = {"on": [], "off": []}
            worker_cores, errors = [], []
            for r in range(rounds):
                for arm in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    if arm == "on":
                        worker.start()
                        worker.catch_up()
                        cpu0, t0 = worker.cpu_s(), time.perf_counter()
                    else:
                        if worker.running:
                            worker.catch_up()
                        worker.stop()
                    res = measure_writers(writer_dsn, level, seconds, group, f"{level}-{r}-{arm}")
                    if arm == "on":
                        worker_cores.append((worker.cpu_s() - cpu0) / (time.perf_counter() - t0))
                    arms[arm].append(res["docs_s"])
                    errors += res["errors"]
                log(f"analytics: {level} writer(s) round {r + 1}/{rounds}: on {arms['on'][-1]:,.0f} docs/s, "
                    f"off {arms['off'][-1]:,.0f} docs/s")
            ratios = [on / off for on, off in zip(arms["on"], arms["off"], strict=True) if off]
            out["levels"][str(level)] = {
                "on_docs_s": arms["on"], "off_docs_s": arms["off"], "ratios": ratios,
                "median_ratio": statistics.median(ratios) if ratios else None,
                "on_median_docs_s": statistics.median(arms["on"]), "off_median_docs_s": statistics.median(arms["off"]),
                "worker_cores": statistics.median(worker_cores) if worker_cores else None, "errors": errors[:5]}
    finally:
        out["locks"] = sampler.stop()
        worker.start()
    return out


def drop_day(cluster, mentions: int, writers: int, group: int, prefix: str, days_ahead: int = 3) -> dict:
    """Fill the day ``days_ahead`` days from today with ``mentions`` mentions (no change ids), then detach and
    drop its two partitions (:func:`functions.runtime.retention.drop_partition`) while ``writers`` writers
    write at full speed; lock waits of the writers sampled meanwhile. lock_timeout 60 s: a concurrent detach
    waits for every transaction that uses the parent table, the rollup worker's open cycle among them, and
    the figure is how long that takes (the retention job itself sets no lock timeout)."""
    sql = queries.load("bench")
    owner = cluster.dsn("owner", "primary")
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(sql["ensure_partitions"])
        day = conn.execute(sql["future_day"], {"days": days_ahead}).fetchone()[0]
    filled = fill_day(owner, day, mentions, prefix)
    suffix = day.strftime("%Y%m%d")
    streams = [WriteStream(cluster.dsn("writer", "primary"), f"{WRITER_APP}-drop-{i}", group=group, seed=900 + i)
               for i in range(writers)]
    for stream in streams:
        stream.start()
    for stream in streams:
        stream.ready.wait(60)
    sampler = LockSampler(cluster.dsn("admin", "primary"))
    time.sleep(1.0)
    sampler.start()
    time.sleep(0.3)
    before = sum(s.docs for s in streams)
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(sql["set_setting"], {"name": "lock_timeout", "value": "60s"})
        entities_s = retention.drop_partition(conn, "entities", f"entities_p{suffix}")
        documents_s = retention.drop_partition(conn, "documents", f"documents_p{suffix}")
    during = sum(s.docs for s in streams) - before
    time.sleep(0.5)
    locks = sampler.stop()
    for stream in streams:
        stream.stop()
    for stream in streams:
        stream.join(60)
    with psycopg.connect(owner, autocommit=True) as conn:
        left = conn.execute(sql["partitions_of_day"], {"pattern": f"%{suffix}"}).fetchone()[0]
        conn.execute(sql["ensure_partitions"])
    return {"day": day.isoformat(), **{f"fill_{k}": v for k, v in filled.items()}, "entities_s": entities_s,
            "documents_s": documents_s, "partitions_left": left, "writers": writers, "writes_during": during,
            "longest_writer_wait_s": locks["longest_writer_wait_s"], "writer_waits": locks["writer_waits"],
            "waits": locks["waits"], "errors": [e for s in streams for e in s.errors][:5]}
