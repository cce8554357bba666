"""The read side of the analytics phase (bench/phases/analytics.py): entity-stats through the local gateway
and the raw-scan queries of the old design, answers at rest against the base tables, freshness of the
watermark under a comment stream, the analyst files, rollup lag and storage.

Latencies are milliseconds at the client (the bench process): through the gateway for entity-stats, a
psycopg round trip on the replica for the raw-scan baseline. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import psycopg

from bench.common import percentile
from devtools.pgcluster import find_pg_bin
from devtools.processes import REPO
from functions.runtime import queries
from functions.runtime.stores.documents import normalize

ANALYST_DIR = REPO / "sql" / "analyst"


def lsn_value(lsn: str) -> int:
    """A WAL position ``'X/Y'`` as an integer (comparable)."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def parse_time(text: str) -> datetime:
    """An answer's ISO time (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def summary_ms(values: list[float]) -> dict:
    """``{"n", "median_ms", "p95_ms", "max_ms"}`` of a list of milliseconds (None when empty)."""
    if not values:
        return {"n": 0, "median_ms": None, "p95_ms": None, "max_ms": None}
    return {"n": len(values), "median_ms": statistics.median(values), "p95_ms": percentile(values, 95),
            "max_ms": max(values)}


class StatsClient:
    """GET entity-stats through the gateway with the bearer token, on one keep-alive connection (reopened
    after an error). Thread-unsafe: one per thread."""

    def __init__(self, gateway_url: str, token: str, timeout: float = 30.0):
        parts = urlsplit(gateway_url)
        self.host, self.port, self.token, self.timeout = parts.hostname, parts.port, token, timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, query: str) -> tuple[int, dict | None, float]:
        """(HTTP status, parsed JSON answer or None, milliseconds). Status 0: no answer (connection error)."""
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.conn.request("GET", f"/function/entity-stats?{query}",
                                  headers={"Authorization": f"Bearer {self.token}"})
                resp = self.conn.getresponse()
                raw = resp.read()
                ms = (time.perf_counter() - started) * 1000.0
                try:
                    return resp.status, json.loads(raw), ms
                except ValueError:
                    return resp.status, None, ms
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    return 0, None, (time.perf_counter() - started) * 1000.0
                started = time.perf_counter()
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def entity_stats_latency(client: StatsClient, query: str, warmups: int, calls: int) -> dict:
    """``warmups`` then ``calls`` GETs of ``query``: the latency summary, the statuses, 5xx count, and what
    the last 200 answer covered (window, watermark, mentions in the label mix, top count, approximate)."""
    statuses: dict[str, int] = {}
    timings, last = [], None
    for i in range(warmups + calls):
        status, answer, ms = client.get(query)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if i >= warmups:
            timings.append(ms)
        if status == 200 and answer:
            last = answer
    out = {"query": query, **summary_ms(timings), "statuses": statuses,
           "errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
           "failed": sum(n for s, n in statuses.items() if s != "200")}
    if last is not None:
        out.update(window_start=last["window_start"], window_end=last["window_end"],
                   mentions=sum(m["count"] for m in last["label_mix"]), top=len(last["top_entities"]),
                   approximate=last["approximate"], watermark=last["freshness"]["watermark"])
    return out


def raw_scan_latency(analyst_replica_dsn: str, window: timedelta, label: str | None, limit: int, *,
                     warmups: int, calls: int, timeout_ms: int, stop_after_timeouts: int) -> dict:
    """The old entity-stats read (raw top entities + raw label mix over analytics.entity_mentions) as
    nlp_analyst on the replica with a ``timeout_ms`` statement timeout, ``warmups`` + ``calls`` times; a call
    that times out counts as ``timeout_ms``. Stops early after ``stop_after_timeouts`` timeouts (``stopped``;
    ``calls_made`` counts the warm-ups too, ``calls_done`` the timed calls)."""
    sql = queries.load("bench")
    top = sql["raw_top_entities_for_label" if label else "raw_top_entities"]
    params = {"window": window, "label": label, "limit": limit}
    timings: list[float] = []
    timeouts = done = made = 0
    with psycopg.connect(analyst_replica_dsn, autocommit=True, application_name="bench-raw-scan") as conn:
        conn.execute(sql["set_setting"], {"name": "statement_timeout", "value": str(timeout_ms)})
        for i in range(warmups + calls):
            made += 1
            started = time.perf_counter()
            try:
                conn.execute(top, params).fetchall()
                conn.execute(sql["raw_label_mix"], params).fetchall()
                ms = (time.perf_counter() - started) * 1000.0
            except psycopg.errors.QueryCanceled:
                timeouts += 1
                ms = float(timeout_ms)
            if i >= warmups:
                timings.append(ms)
                done += 1
            if timeouts >= stop_after_timeouts:
                break
    return {**summary_ms(timings), "timeouts": timeouts, "calls_done": done, "calls_made": made,
            "stopped": done < calls, "timeout_ms": timeout_ms}


def at_rest_top(client: StatsClient, admin_replica_dsn: str, limit: int = 20) -> dict:
    """entity-stats' top ``limit`` for 1 h against the exact top of the base tables over the window the
    answer reports (on the replica, as the superuser). ``same_entities``: the same (label, norm) set, ties
    at rank ``limit`` aside; ``within_bound``: every count <= truth <= count + error; ``max_error_pct``:
    the largest stated error relative to its count; ``exact``: every error 0 and every count the truth."""
    status, answer, ms = client.get(f"window=1h&limit={limit}")
    if status != 200 or not answer:
        return {"status": status, "ok": False}
    start, end = parse_time(answer["window_start"]), parse_time(answer["window_end"]) + timedelta(milliseconds=1)
    sql = queries.load("bench")
    started = time.perf_counter()
    with psycopg.connect(admin_replica_dsn, autocommit=True) as conn:
        conn.execute(sql["big_work_mem"])
        want = conn.execute(sql["exact_top"], {"start": start, "end": end, "limit": limit + 1}).fetchall()
    exact_s = time.perf_counter() - started
    truth = {(label, norm): n for label, norm, n in want}
    cut = want[limit - 1][2] if len(want) >= limit else 0
    ties = {key for key, n in truth.items() if n == cut}
    got = [((e["label"], normalize(e["text"])), e["count"], e["count_error"]) for e in answer["top_entities"]]
    got_keys = {key for key, *_ in got}
    same = (got_keys - ties) == (set(list(truth)[:limit]) - ties)
    bounds = [(n <= truth.get(key, -1) <= n + err) for key, n, err in got]
    errors = [100.0 * err / n for _, n, err in got if n]
    return {
        "status": status, "ms": ms, "window_start": answer["window_start"], "window_end": answer["window_end"],
        "watermark": answer["freshness"]["watermark"], "entities": len(got), "same_entities": same,
        "within_bound": all(bounds) and len(bounds) == limit, "max_error_pct": max(errors, default=0.0),
        "exact": all(truth.get(key) == n and err == 0 for key, n, err in got),
        "exact_query_s": exact_s, "ok": same and all(bounds) and max(errors, default=0.0) <= 0.5,
    }


def exact_mentions(admin_replica_dsn: str, start: datetime, end: datetime) -> int:
    """Mentions in [start, end) in the base tables, counted on the replica."""
    with psycopg.connect(admin_replica_dsn, autocommit=True) as conn:
        return conn.execute(queries.load("bench")["exact_mentions"], {"start": start, "end": end}).fetchone()[0]


def counted_within(client: StatsClient, admin_replica_dsn: str, lsn: str, timeout_s: float = 600.0) -> dict:
    """After a bulk load whose last commit is at ``lsn``: when the replica has replayed it, then how long
    until entity-stats (``window=1h``) reports a watermark at or past it. Returns ``{"replayed_s",
    "counted_after_replay_s", "window_start", "window_end", "mentions"}`` (seconds from the call; the
    mentions of the answer's label mix), ``counted_after_replay_s`` None after ``timeout_s``."""
    started = time.monotonic()
    sql = queries.load("bench")
    with psycopg.connect(admin_replica_dsn, autocommit=True) as conn:
        while not conn.execute(sql["replayed"], {"lsn": lsn}).fetchone()[0]:
            if time.monotonic() - started > timeout_s:
                return {"replayed_s": None, "counted_after_replay_s": None}
            time.sleep(0.02)
    replayed = time.monotonic()
    while time.monotonic() - replayed < timeout_s:
        status, answer, _ = client.get("window=1h&limit=1")
        if status == 200 and answer and lsn_value(answer["freshness"]["watermark_lsn"]) >= lsn_value(lsn):
            return {"replayed_s": replayed - started, "counted_after_replay_s": time.monotonic() - replayed,
                    "window_start": answer["window_start"], "window_end": answer["window_end"],
                    "mentions": sum(m["count"] for m in answer["label_mix"])}
        time.sleep(0.1)
    return {"replayed_s": replayed - started, "counted_after_replay_s": None}


class LagSampler(threading.Thread):
    """Samples the rollup watermark's lag behind the clock on the primary every ``interval_s``."""

    def __init__(self, admin_primary_dsn: str, interval_s: float = 0.1):
        super().__init__(name="rollup-lag", daemon=True)
        self.dsn, self.interval_s = admin_primary_dsn, interval_s
        self.samples: list[float] = []
        self.error: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        sql = queries.load("bench")["rollup_lag"]
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name="bench-lag") as conn:
                while not self._stop_event.wait(self.interval_s):
                    self.samples.append(conn.execute(sql).fetchone()[0])
        except Exception as exc:  # reported, never fatal
            self.error = f"{type(exc).__name__}: {str(exc)[:200]}"

    def stop(self) -> dict:
        self._stop_event.set()
        self.join(10)
        return {"samples": len(self.samples), "p50_s": percentile(self.samples, 50),
                "p99_s": percentile(self.samples, 99), "max_s": max(self.samples, default=None), "error": self.error}


def analyst_files(analyst_replica_dsn: str, runs: int) -> dict:
    """Each ``sql/analyst/*.sql`` with its default variables through psql on the replica as nlp_analyst:
    one warm-up then ``runs`` timed runs; ``{file: {"median_s", "max_s", "ok", "error"}}``."""
    psql = str(find_pg_bin() / "psql")
    out = {}
    for path in sorted(ANALYST_DIR.glob("*.sql")):
        times, error = [], None
        for i in range(runs + 1):
            started = time.perf_counter()
            proc = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-d",
                                   analyst_replica_dsn, "-f", str(path)], capture_output=True, text=True,
                                  timeout=120)
            if proc.returncode != 0:
                error = proc.stderr.strip()[-300:]
                break
            if i:
                times.append(time.perf_counter() - started)
        out[path.name] = {"median_s": statistics.median(times) if times else None,
                          "max_s": max(times, default=None), "ok": error is None, "error": error}
    return out


def storage(admin_primary_dsn: str, mentions: int) -> dict:
    """Bytes of the raw tables, the keys and the rollups, and each per million ``mentions``."""
    with psycopg.connect(admin_primary_dsn, autocommit=True) as conn:
        entities, documents, keys, top, buckets, doc_buckets = conn.execute(queries.load("bench")["storage"]).fetchone()
    parts = {"raw_entities": entities, "raw_documents": documents, "keys": keys,
             "rollups": top + buckets + doc_buckets}
    per_m = {f"{name}_mb_per_m": size / 2**20 / (mentions / 1e6) for name, size in parts.items()} if mentions else {}
    return {"mentions": mentions, **{f"{k}_bytes": v for k, v in parts.items()},
            "rollup_parts_bytes": {"entity_top": top, "entity_buckets": buckets, "document_buckets": doc_buckets},
            **per_m}


def data_shape(admin_replica_dsn: str) -> dict:
    """Mentions, documents, distinct (label, norm), labels and sources of the raw tables (on the replica)."""
    with psycopg.connect(admin_replica_dsn, autocommit=True) as conn:
        conn.execute(queries.load("bench")["big_work_mem"])
        mentions, documents, distinct, labels, sources = conn.execute(queries.load("bench")["data_shape"]).fetchone()
    return {"mentions": mentions, "documents": documents, "distinct_entities": distinct, "labels": labels,
            "sources": sources}


def freshness(gateway_url: str, token: str, texts: list[str], rate: float, prefix: str,
              settle_s: float = 30.0, poll_s: float = 0.1) -> dict:
    """Send ``texts`` to ner-processor through the gateway at ``rate`` comments/s (open loop) while polling
    entity-stats (``window=5m&limit=1``) every ``poll_s``; per comment answered 2xx with a commit LSN: the
    first poll answer whose ``freshness.watermark_lsn`` is at or past it, minus the arrival of the comment's
    answer. Polling goes on up to ``settle_s`` after the last answer until every comment is covered. A slow
    entity-stats coarsens the figure: ``poll_median_ms`` says how long a poll took."""
    sent: list[tuple[float, int, str | None]] = []  # (answer arrived, status, commit_lsn)
    polls: list[tuple[float, int]] = []  # (answer arrived, watermark lsn)
    poll_statuses: dict[str, int] = {}
    poll_ms: list[float] = []
    done = threading.Event()

    def poll() -> None:
        client = StatsClient(gateway_url, token)
        while not done.is_set():
            started = time.monotonic()
            status, answer, ms = client.get("window=5m&limit=1")
            poll_statuses[str(status)] = poll_statuses.get(str(status), 0) + 1
            poll_ms.append(ms)
            if status == 200 and answer:
                polls.append((time.monotonic(), lsn_value(answer["freshness"]["watermark_lsn"])))
            done.wait(max(0.0, poll_s - (time.monotonic() - started)))
        client.close()

    def send(i: int, text: str) -> None:
        host = urlsplit(gateway_url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        try:
            body = json.dumps({"text": text, "request_id": f"{prefix}{i}"})
            conn.request("POST", "/function/ner-processor", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            lsn = json.loads(raw).get("commit_lsn") if resp.status // 100 == 2 else None
            sent.append((time.monotonic(), resp.status, lsn))
        except (OSError, http.client.HTTPException, ValueError):
            sent.append((time.monotonic(), 0, None))
        finally:
            conn.close()

    poller = threading.Thread(target=poll, name="freshness-poll", daemon=True)
    poller.start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        for i, text in enumerate(texts):
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            pool.submit(send, i, text)
    send_s = time.monotonic() - started
    lsns = [lsn_value(lsn) for _, status, lsn in sent if lsn]
    deadline = time.monotonic() + settle_s
    while lsns and time.monotonic() < deadline and not (polls and polls[-1][1] >= max(lsns)):
        time.sleep(0.1)
    done.set()
    poller.join(10)
    return _freshness_figures(sent, polls, poll_statuses, len(texts), send_s) | {
        "poll_median_ms": statistics.median(poll_ms) if poll_ms else None}


def _freshness_figures(sent, polls, poll_statuses, offered: int, send_s: float) -> dict:
    delays, missed = [], 0
    for arrived, _status, lsn in sent:
        if not lsn:
            continue
        value = lsn_value(lsn)
        first = next((t for t, wm in polls if wm >= value), None)
        if first is None:
            missed += 1
        else:
            delays.append(max(0.0, first - arrived))
    statuses: dict[str, int] = {}
    for _, status, _ in sent:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"offered": offered, "send_s": send_s, "rate_sent": offered / send_s if send_s else None,
            "statuses": statuses, "errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
            "measured": len(delays), "missed": missed, "p50_s": percentile(delays, 50),
            "p99_s": percentile(delays, 99), "max_s": max(delays, default=None), "polls": len(polls),
            "poll_statuses": poll_statuses,
            "poll_5xx": sum(n for s, n in poll_statuses.items() if s.startswith("5"))}


def short_texts(count: int, max_chars: int = 200, seed: int = 22) -> list[str]:
    """``count`` distinct generated comments of at most ``max_chars`` characters (bench/corpus.py)."""
    from bench.corpus import iter_generate

    seen: list[str] = []
    unique: set[str] = set()
    for text in iter_generate(count * 20 + 1000, seed=seed):
        if len(text) <= max_chars and text not in unique:
            unique.add(text)
            seen.append(text)
            if len(seen) == count:
                break
    return seen

