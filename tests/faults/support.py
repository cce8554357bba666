"""Shared machinery of the fault suite: a keep-alive HTTP client, a multi-threaded load generator that
remembers every answer, read-back of what the primary really holds, and the figures report.

Figures: every test calls :func:`report` once; it prints one ``FIGURES <test>: k=v ...`` line (visible
with ``-s``) and appends the same figures as one JSON object per line to ``$FAULTS_REPORT`` (default
``build/local/faults-report.jsonl``). The file is only ever appended to (several sessions may run at once);
every line carries the session's ``run`` id, which the terminal summary prints.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from devtools.processes import LOCAL_DIR

REPO = Path(__file__).resolve().parents[2]
RUN_ID = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
COLLECTED: list[dict] = []  # this session's figures, printed again in the terminal summary

# Connection-level failures: the request may or may not have reached the function; never a 2xx.
CONNECTION_ERRORS = (ConnectionError, http.client.HTTPException, socket.timeout, OSError)


def report_path() -> Path:
    return Path(os.environ.get("FAULTS_REPORT") or LOCAL_DIR / "faults-report.jsonl")


def report(test: str, **figures) -> dict:
    """Print and persist this test's figures (one line each)."""
    entry = {"test": test, **figures}
    COLLECTED.append(entry)
    print(f"\nFIGURES {test}: " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    path = report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"run": RUN_ID, "at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    return entry


# -- HTTP ------------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    elapsed: float

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/json")

    def error_code(self) -> str | None:
        try:
            return self.json.get("error")
        except (ValueError, AttributeError):
            return None


class Http:
    """One keep-alive connection to a function process (http.client: fast, no pooling magic).

    A request that fails because the server closed an idle keep-alive connection is sent once more on
    a fresh connection; every request the suite sends carries a request id, so a resend is idempotent.
    """

    def __init__(self, port: int, timeout: float = 35.0, host: str = "127.0.0.1",
                 headers: dict[str, str] | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = dict(headers or {})  # sent with every request (e.g. entity-stats' bearer token)
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str = "POST", path: str = "/", body: bytes | str | None = None,
                headers: dict[str, str] | None = None, content_type: str | None = "application/json",
                skip_host: bool = False) -> Reply:
        if isinstance(body, str):
            body = body.encode("utf-8")
        all_headers = {**self.headers, **(headers or {})}
        if content_type is not None:
            all_headers.setdefault("Content-Type", content_type)
        for attempt in (0, 1):
            reused = self._conn is not None and self._conn.sock is not None
            conn = self._connection()
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=all_headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 0 and reused:
                    continue
                raise
            except Exception:
                self.close()
                raise
            reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw,
                          time.perf_counter() - started)
            if resp.will_close:
                self.close()
            return reply
        raise AssertionError("unreachable")

    def post_json(self, payload, **kwargs) -> Reply:
        return self.request("POST", body=json.dumps(payload), **kwargs)


# -- realistic comments ----------------------------------------------------------------------------

_PEOPLE = ["Jonas Weber", "Maria Garcia", "Tim Cook", "Angela Merkel", "Priya Patel", "John Smith"]
_ORGS = ["Siemens", "Apple", "Amazon", "Microsoft", "Delta Airlines", "Google", "Lidl"]
_PLACES = ["Hamburg", "Paris", "Seattle", "London", "New York", "Berlin", "Tokyo"]
_DAYS = ["Monday", "Tuesday", "last Friday", "3 March 2024", "yesterday"]
_TEMPLATES = [
    "Order {n} from {org} in {place} was late, said {person} on {day}.",
    "{person} called {org} support in {place} on {day} about refund {n}.",
    "Great service from {org}! My flight {n} from {place} to {place2} was on time, thanks {person}.",
    "I paid ${n} to {org} on {day} and {person} in {place} never answered.",
]


def comment(rng: random.Random, n: int) -> str:
    """A comment with several entities (so lost entity rows would show)."""
    return rng.choice(_TEMPLATES).format(n=n, org=rng.choice(_ORGS), place=rng.choice(_PLACES),
                                         place2=rng.choice(_PLACES), person=rng.choice(_PEOPLE),
                                         day=rng.choice(_DAYS))


def entity_tuples(entities: list[dict]) -> list[tuple]:
    return [(e["text"], e["label"], e["start_char"], e["end_char"]) for e in entities]


# -- load ------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One request of a load run: what was sent and what came back."""
    doc_ids: list[str]
    started: float  # monotonic
    elapsed: float
    status: int | str  # HTTP status, or the exception class name when no response arrived
    retry_after: str | None = None
    error: str | None = None
    entities: dict[str, list[tuple]] = field(default_factory=dict)  # per doc id, from a 2xx

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300


class Load:
    """``clients`` threads, each with its own keep-alive connection, sending unique request ids
    (single comments, or batches of ``batch`` documents) until :meth:`stop` or ``max_requests``."""

    def __init__(self, port: int, *, clients: int = 8, batch: int = 0, prefix: str | None = None,
                 timeout: float = 35.0, max_requests: int = 100_000, pause: float = 0.0, seed: int = 7):
        self.port, self.clients, self.batch, self.timeout = port, clients, batch, timeout
        self.prefix = prefix or f"flt-{uuid.uuid4().hex[:8]}"
        self.max_requests, self.pause, self.seed = max_requests, pause, seed
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counter = itertools.count()

    def start(self) -> Load:
        for worker in range(self.clients):
            thread = threading.Thread(target=self._client, args=(worker,), name=f"load-{worker}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, join_timeout: float = 60.0) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(join_timeout)
        assert not any(t.is_alive() for t in self._threads), "a load client hangs (no response in time)"
        return self.outcomes

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self.outcomes):
                    return True
            time.sleep(0.05)
        return False

    def _payload(self, rng: random.Random, n: int) -> tuple[dict, list[str]]:
        rid = f"{self.prefix}-{n}"
        if not self.batch:
            return {"text": comment(rng, n), "request_id": rid, "source": "faults"}, [rid]
        docs = [{"id": f"{rid}.{i}", "text": comment(rng, n * 100 + i)} for i in range(self.batch)]
        return {"request_id": rid, "documents": docs, "source": "faults"}, [d["id"] for d in docs]

    def _client(self, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        client = Http(self.port, timeout=self.timeout)
        try:
            while not self._stop.is_set():
                n = next(self._counter)
                if n >= self.max_requests:
                    return
                payload, ids = self._payload(rng, n)
                started = time.monotonic()
                try:
                    reply = client.post_json(payload)
                except CONNECTION_ERRORS as exc:
                    outcome = Outcome(ids, started, time.monotonic() - started, type(exc).__name__)
                    time.sleep(0.05)  # refused: do not spin
                else:
                    outcome = Outcome(ids, started, reply.elapsed, reply.status,
                                      reply.headers.get("retry-after"), reply.error_code())
                    if outcome.ok:
                        body = reply.json
                        docs = body["documents"] if self.batch else [{"id": ids[0], **body}]
                        outcome.entities = {d["id"]: entity_tuples(d["entities"]) for d in docs}
                with self._lock:
                    self.outcomes.append(outcome)
                if self.pause:
                    time.sleep(self.pause)
        finally:
            client.close()


def status_counts(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(sorted(Counter(str(o.status) for o in outcomes).items()))


# -- what the primary holds ------------------------------------------------------------------------

def stored(admin_dsn: str, doc_ids: list[str]) -> dict[str, dict]:
    """For each stored id: entity_count column, the entity rows (ordered) and the body."""
    out: dict[str, dict] = {}
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for chunk_start in range(0, len(doc_ids), 5000):
            chunk = doc_ids[chunk_start:chunk_start + 5000]
            for rid, count, body in conn.execute(
                    "SELECT request_id, entity_count, body FROM nlp.documents WHERE request_id = ANY(%s)",
                    (chunk,)):
                out[rid] = {"entity_count": count, "body": body, "entities": []}
            for rid, text, label, start, end in conn.execute(
                    "SELECT request_id, text, label, start_char, end_char FROM nlp.entities"
                    " WHERE request_id = ANY(%s) ORDER BY request_id, ordinal", (chunk,)):
                out.setdefault(rid, {"entity_count": None, "body": None, "entities": []})
                out[rid]["entities"].append((text, label, start, end))
    return out


@dataclass
class Audit:
    acknowledged: int  # documents with a 2xx
    lost: list[str]  # acknowledged but not on the primary, or with other entities than answered
    half_written: list[str]  # any stored document whose entity rows do not match its entity_count
    stored_unacknowledged: int  # stored although the client never saw a 2xx (ack lost in a crash: fine)


def audit(admin_dsn: str, outcomes: list[Outcome]) -> Audit:
    """Compare every answer with the primary: lost = 0 means every acknowledged document is there with
    exactly the entities its response listed."""
    acked: dict[str, list[tuple]] = {}
    for o in outcomes:
        if o.ok:
            acked.update(o.entities)
    all_ids = sorted({i for o in outcomes for i in o.doc_ids})
    rows = stored(admin_dsn, all_ids)
    lost = [rid for rid, ents in acked.items()
            if rid not in rows or rows[rid]["entities"] != ents or rows[rid]["entity_count"] != len(ents)]
    half = [rid for rid, row in rows.items() if row["entity_count"] != len(row["entities"])]
    return Audit(len(acked), lost, half, len(set(rows) - set(acked)))


def wait_until(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    return last


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its children (the function's HTTP process and its model process), KiB."""
    from bench.common import rss_mb

    return int(rss_mb(pid) * 1024)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header entity-stats asks for."""
    return {"Authorization": f"Bearer {token}"}
