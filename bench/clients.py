"""Load generators: closed-loop clients, open-loop (Poisson) arrivals and a by-count batch driver.

They run in their own process (``python -m bench.clients`` with a JSON config on stdin, the JSON result
on stdout; :func:`run`) on asyncio with raw keep-alive sockets and pre-encoded requests, so a request
costs the client a few tens of microseconds of CPU: on a 2-core machine the client must not take the
CPU the function process is being measured on. The result includes the client's own CPU seconds so the
report can show what it cost.

Config keys (all modes): url, texts_path (JSON list of texts), id_prefix (unique per phase: every
request id is new), docs_per_request (1 = single-comment JSON body, >1 = {"documents": [...]}),
start_index (where in the text list to start), timeout_s, path (the request path, default "/"; e.g.
"/function/ner-processor" through a gateway).
 - mode "closed": clients, warmup_s, duration_s. Each client sends its next request as soon as the
   previous answer arrived; only requests completed inside the measurement window count.
 - mode "open": rate (requests/s), warmup_s, duration_s, seed, max_outstanding, preopen (keep-alive
   connections opened up front; more are opened when all are busy). Poisson arrivals;
   latency runs from the *scheduled* send time, so a slow server cannot hide queueing (no coordinated
   omission).
 - mode "count": clients, total_docs, rss_pid, rss_every_docs. Sends total_docs documents and records
   the RSS of rss_pid each time another rss_every_docs documents have been answered.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import percentile, rss_mb

SHORT_CHARS = 1000


class RequestFactory:
    """Pre-encoded HTTP/1.1 requests: the JSON of each text is escaped once, request ids are new."""

    def __init__(
        self,
        texts: list[str],
        host: str,
        port: int,
        id_prefix: str,
        docs_per_request: int = 1,
        start_index: int = 0,
        path: str = "/",
    ):
        if not texts:
            raise ValueError("no texts")
        self.encoded = [json.dumps(t, ensure_ascii=False).encode("utf-8") for t in texts]
        self.chars = [len(t) for t in texts]
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        self.prefix = id_prefix
        self.docs = docs_per_request
        self.next_text = start_index % len(texts)
        self.serial = 0

    def build(self) -> tuple[bytes, int, int]:
        """(request bytes, documents, characters) of the next request."""
        n = len(self.encoded)
        self.serial += 1
        rid = f"{self.prefix}-{self.serial}"
        if self.docs == 1:
            i = self.next_text
            self.next_text = (i + 1) % n
            body = b'{"request_id":"' + rid.encode() + b'","text":' + self.encoded[i] + b"}"
            chars = self.chars[i]
        else:
            parts, chars = [], 0
            for k in range(self.docs):
                i = self.next_text
                self.next_text = (i + 1) % n
                parts.append(b'{"id":"' + f"{rid}-{k}".encode() + b'","text":' + self.encoded[i] + b"}")
                chars += self.chars[i]
            body = b'{"request_id":"' + rid.encode() + b'","documents":[' + b",".join(parts) + b"]}"
        return self.head + str(len(body)).encode() + b"\r\n\r\n" + body, self.docs, chars


class Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def roundtrip(self, request: bytes) -> tuple[int, bool, bytes]:
        """Send one request and read the whole response: (status, server closes?, body)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        length = int(lower[at + 17 : lower.find(b"\r\n", at + 17)]) if at >= 0 else 0
        body = await self.reader.readexactly(length) if length else b""
        return status, b"\r\nconnection: close" in lower, body

    def close(self) -> None:
        self.writer.close()


@dataclass
class Outcome:
    sent_at: float
    done_at: float
    status: int
    docs: int
    chars: int


@dataclass
class Recorder:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def summarize(rec: Recorder, window: tuple[float, float], *, by_done: bool = True) -> dict:
    """Throughput and latency of the outcomes that fall in ``window`` (completion time for closed
    loops, scheduled time for open loops)."""
    lo, hi = window
    inside = [o for o in rec.outcomes if lo <= (o.done_at if by_done else o.sent_at) < hi]
    ok = [o for o in inside if o.status == 200]
    statuses: dict[str, int] = {}
    for o in inside:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    seconds = hi - lo
    lat = [(o.done_at - o.sent_at) * 1000.0 for o in ok]
    # Typical comments only: the corpus's long tail (multi-paragraph reviews of up to ~7k chars) needs
    # 10-50x the model time of a median comment, so it dominates p99 by itself.
    short = [(o.done_at - o.sent_at) * 1000.0 for o in ok if o.chars <= SHORT_CHARS]
    return {
        "seconds": seconds,
        "requests": len(ok),
        "docs": sum(o.docs for o in ok),
        "chars": sum(o.chars for o in ok),
        "docs_s": sum(o.docs for o in ok) / seconds if seconds > 0 else 0.0,
        "req_s": len(ok) / seconds if seconds > 0 else 0.0,
        "chars_s": sum(o.chars for o in ok) / seconds if seconds > 0 else 0.0,
        "statuses": statuses,
        "errors": dict(rec.errors),
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat) if lat else None,
        "mean_ms": sum(lat) / len(lat) if lat else None,
        "short_chars": SHORT_CHARS,
        "short_requests": len(short),
        "short_p50_ms": percentile(short, 50),
        "short_p99_ms": percentile(short, 99),
    }


async def _closed(cfg: dict, factory: RequestFactory, host: str, port: int) -> dict:
    loop = asyncio.get_running_loop()
    rec = Recorder()
    conns = [await Connection.open(host, port) for _ in range(cfg["clients"])]
    start = loop.time()
    window = (start + cfg.get("warmup_s", 0.0), start + cfg.get("warmup_s", 0.0) + cfg["duration_s"])
    timeout = cfg.get("timeout_s", 60.0)

    async def client(idx: int) -> None:
        conn = conns[idx]
        while loop.time() < window[1]:
            request, docs, chars = factory.build()
            sent = loop.time()
            try:
                status, close, _ = await asyncio.wait_for(conn.roundtrip(request), timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                rec.error(type(exc).__name__)
                conn.close()
                conn = await Connection.open(host, port)
                continue
            rec.outcomes.append(Outcome(sent, loop.time(), status, docs, chars))
            if close:
                conn.close()
                conn = await Connection.open(host, port)
        conn.close()

    await asyncio.gather(*(client(i) for i in range(cfg["clients"])))
    return summarize(rec, window)


async def _open(cfg: dict, factory: RequestFactory, host: str, port: int) -> dict:
    loop = asyncio.get_running_loop()
    rec = Recorder()
    rng = random.Random(cfg.get("seed", 1))
    rate = float(cfg["rate"])
    idle = [
        await Connection.open(host, port)
        for _ in range(min(cfg.get("preopen", 64), cfg.get("max_outstanding", 512)))
    ]
    outstanding = 0
    tasks: set[asyncio.Task] = set()
    timeout = cfg.get("timeout_s", 60.0)

    async def one(request: bytes, docs: int, chars: int, scheduled: float) -> None:
        nonlocal outstanding
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                conn = await Connection.open(host, port)
            status, close, _ = await asyncio.wait_for(conn.roundtrip(request), timeout)
            rec.outcomes.append(Outcome(scheduled, loop.time(), status, docs, chars))
            if close:
                conn.close()
            else:
                idle.append(conn)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            rec.error(type(exc).__name__)
            if conn is not None:
                conn.close()
        finally:
            outstanding -= 1

    start = loop.time() + 0.05
    window = (start + cfg.get("warmup_s", 0.0), start + cfg.get("warmup_s", 0.0) + cfg["duration_s"])
    due = start
    dropped = 0
    while due < window[1]:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        request, docs, chars = factory.build()
        if outstanding >= cfg.get("max_outstanding", 512):
            dropped += 1  # the server is hopelessly behind: count it rather than pile up sockets
        else:
            outstanding += 1
            task = asyncio.create_task(one(request, docs, chars, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        due += rng.expovariate(rate)
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout)
    for conn in idle:
        conn.close()
    result = summarize(rec, window, by_done=False)
    result.update(
        offered_rate=rate,
        dropped=dropped,
        late=sum(1 for o in rec.outcomes if o.done_at > window[1] + 1.0 and o.sent_at < window[1]),
    )
    return result


async def _count(cfg: dict, factory: RequestFactory, host: str, port: int) -> dict:
    loop = asyncio.get_running_loop()
    rec = Recorder()
    total = cfg["total_docs"]
    every = cfg.get("rss_every_docs") or 0
    pid = cfg.get("rss_pid")
    samples: list[dict] = []
    done_docs = 0
    sent_docs = 0
    next_mark = every
    timeout = cfg.get("timeout_s", 120.0)
    start = loop.time()

    async def client() -> None:
        nonlocal done_docs, sent_docs, next_mark
        conn = await Connection.open(host, port)
        while sent_docs < total:
            request, docs, chars = factory.build()
            sent_docs += docs
            sent = loop.time()
            try:
                status, close, _ = await asyncio.wait_for(conn.roundtrip(request), timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                rec.error(type(exc).__name__)
                conn.close()
                conn = await Connection.open(host, port)
                continue
            rec.outcomes.append(Outcome(sent, loop.time(), status, docs, chars))
            if status == 200:
                done_docs += docs
            while every and pid and done_docs >= next_mark:
                samples.append({"docs": next_mark, "rss_mb": rss_mb(pid), "t_s": loop.time() - start})
                next_mark += every
            if close:
                conn.close()
                conn = await Connection.open(host, port)
        conn.close()

    await asyncio.gather(*(client() for _ in range(cfg.get("clients", 1))))
    result = summarize(rec, (start, loop.time()))
    result["rss"] = samples
    return result


async def _main(cfg: dict) -> dict:
    host, port = cfg["url"].removeprefix("http://").rstrip("/").split(":")
    texts = json.loads(Path(cfg["texts_path"]).read_text(encoding="utf-8"))
    factory = RequestFactory(
        texts,
        host,
        int(port),
        cfg["id_prefix"],
        cfg.get("docs_per_request", 1),
        cfg.get("start_index", 0),
        cfg.get("path", "/"),
    )
    cpu0 = time.process_time()
    mode = cfg["mode"]
    if mode == "closed":
        result = await _closed(cfg, factory, host, int(port))
    elif mode == "open":
        result = await _open(cfg, factory, host, int(port))
    elif mode == "count":
        result = await _count(cfg, factory, host, int(port))
    else:
        raise ValueError(f"unknown mode {mode!r}")
    result["client_cpu_s"] = time.process_time() - cpu0
    result["next_index"] = factory.next_text
    return result


def run_inline(cfg: dict) -> dict:
    """Run in this process (tests)."""
    return asyncio.run(_main(cfg))


def run(cfg: dict, timeout: float | None = None) -> dict:
    """Run in a fresh process so the load generator's CPU is not the orchestrator's."""
    from bench.common import run_module_json

    budget = timeout or (cfg.get("warmup_s", 0) + cfg.get("duration_s", 0) + cfg.get("timeout_s", 60) + 120)
    if cfg["mode"] == "count":
        budget = timeout or 3600
    return run_module_json("bench.clients", cfg, timeout=budget)


def main() -> None:
    cfg = json.loads(sys.stdin.read())
    print(json.dumps(run_inline(cfg)))


if __name__ == "__main__":
    main()
