"""A campaign replay: a time-compressed tidal profile sent through ``/async-function/ner-processor`` of a
whole ``make run`` stack, with optional faults, and what became of every comment.

``python -m devtools.campaign [--comments 20000] [--clients 64] [--fault none|stall-primary|stop-primary|
restart-stack] [--fault-seconds 20] [--data-dir DIR] [--out DIR]`` (``make campaign``). A bench phase calls
:func:`run` and gets the summary dict::

    summary = run(CampaignConfig(data_dir=Path("build/local/campaign"), comments=20_000, fault="stall-primary"))
    summary["lost"], summary["persisted_once"], summary["latency"]["steady_p99_s"], summary["plot"]

The stack is ``python -m devtools.up`` (what ``make run`` runs) as a child process on its own data folder
and port: PostgreSQL primary + replica, NATS JetStream, the functions, the gateway, the queue-worker. The
profile: ``quiet_s`` seconds at ``quiet_rate`` comments/s, then the burst (``comments`` comments, 1 % of
them invalid: empty text, from ``clients`` concurrent clients as fast as the gateway accepts them), then,
once the burst has drained, quiet again. Faults start once ``fault_at`` of the burst is persisted: the
primary stalled (SIGSTOP of all its processes) or stopped for ``fault_seconds``, or the whole stack stopped
(Ctrl-C) and started again.

The summary counts, per comment id: accepted (202), persisted once (``nlp.documents``, one row per id by
its key), answered as duplicates on redelivery (the function's ``duplicate_count`` log field),
dead-lettered by reason, lost (accepted, neither persisted nor dead-lettered); the maximum queue depth
(messages waiting + in delivery), the drain time (first burst 202 until every burst comment is persisted
or dead-lettered) and the comment->dashboard latency: from the 202 to the first entity-stats answer whose
``freshness.watermark`` is at or after the comment's commit (``processed_at``), p50/p99 overall and in the
steady (quiet) parts; "n/a (no watermark)" when entity-stats answers no watermark. entity-stats gets
``Authorization: Bearer <token>`` when ``<data dir>/pg/secrets/entity-stats-token`` exists. It writes
``summary.json`` and ``timeline.png`` (offered and persisted rate, queue depth, dead letters over time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from devtools import campaign_report
from devtools.jetstream import LocalNats
from devtools.pgcluster import LocalCluster
from devtools.pgcluster.host import server_processes
from devtools.processes import LOCAL_DIR, REPO, free_port
from functions.runtime import queries

FAULTS = ("none", "stall-primary", "stop-primary", "restart-stack")
SAMPLE_FILE = REPO / "samples" / "comments.jsonl"
TOKEN_FILE = "entity-stats-token"  # noqa: S105 (a file name)
POLL_S = 0.5


@dataclass
class CampaignConfig:
    """One replay (seconds, comments, fractions)."""

    data_dir: Path = LOCAL_DIR / "campaign"
    out_dir: Path | None = None  # default: data_dir / "report"
    comments: int = 20_000
    clients: int = 64
    invalid_fraction: float = 0.01
    quiet_s: float = 15.0
    quiet_rate: float = 4.0
    fault: str = "none"
    fault_seconds: float = 20.0
    fault_at: float = 0.3
    callback_fraction: float = 0.0
    unreachable_callback_fraction: float = 0.0
    port: int = 0
    drain_timeout_s: float = 1200.0
    progress: bool = True


@dataclass
class Sent:
    """Per comment: when it was first offered and accepted (epoch s), its phase, whether it is invalid."""

    call_id: str
    body: bytes
    phase: str
    invalid: bool
    offered_at: float = 0.0
    accepted_at: float | None = None
    callback: str | None = None


@dataclass
class Observations:
    """What the pollers saw: (t, waiting, in delivery), (t, watermark epoch or None), (t, persisted)."""

    depth: list[tuple[float, int, int]] = field(default_factory=list)
    watermarks: list[tuple[float, float | None]] = field(default_factory=list)
    persisted: list[tuple[float, int]] = field(default_factory=list)
    faults: list[dict] = field(default_factory=list)


class MakeRunStack:
    """``python -m devtools.up`` (make run) as a child process on ``data_dir`` and ``port``."""

    def __init__(self, data_dir: Path, port: int):
        self.data_dir = Path(data_dir)
        self.port = port
        self.process: subprocess.Popen | None = None
        self.output: list[str] = []
        self.cluster = LocalCluster(self.data_dir / "pg")
        self.nats = LocalNats(self.data_dir / "nats")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300.0) -> None:
        """Start it and wait for "Serving". Raises RuntimeError with its output when it fails."""
        self.output = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.up", "--data-dir", str(self.data_dir), "--port", str(self.port)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith("Serving;") for line in self.output):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("make run did not start:\n" + "".join(self.output[-40:]))

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self, timeout: float = 180.0) -> None:
        """Ctrl-C (SIGINT) and wait for it to stop everything it started."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def owner_dsn(self) -> str:
        return (self.data_dir / "pg" / "secrets" / "migrations-dsn").read_text().strip()

    def token(self) -> str | None:
        path = self.data_dir / "pg" / "secrets" / TOKEN_FILE
        with contextlib.suppress(OSError):
            return next((line.strip() for line in path.read_text().splitlines() if line.strip()), None)
        return None


def comments(config: CampaignConfig, run_id: str) -> dict[str, list[Sent]]:
    """The three phases' comments (sample texts made unique), 1 in 1/invalid_fraction of the burst empty."""
    texts = [json.loads(line)["text"] for line in SAMPLE_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    every = round(1 / config.invalid_fraction) if config.invalid_fraction > 0 else 0
    quiet = max(0, round(config.quiet_s * config.quiet_rate))
    phases: dict[str, list[Sent]] = {}
    for phase, count in (("quiet-before", quiet), ("burst", config.comments), ("quiet-after", quiet)):
        items = []
        for i in range(count):
            invalid = phase == "burst" and every and i % every == every - 1
            text = "" if invalid else f"{texts[i % len(texts)]} (campaign {run_id} #{phase[0]}{i})"
            items.append(Sent(f"{run_id}-{phase}-{i}", json.dumps({"text": text}).encode(), phase, bool(invalid)))
        phases[phase] = items
    return phases


async def send(url: str, items: list[Sent], clients: int, *, rate: float | None = None,
               deadline_s: float = 900.0) -> None:
    """POST every item to ``url`` (``/async-function/...``) until it is answered 202: ``clients``
    keep-alive connections at once, or paced at ``rate`` per second. 429/503 wait their Retry-After, a
    connection error 0.5 s; the same ``X-Call-Id`` every time, so a retried publish is stored once.

    A minimal HTTP/1.1 client on asyncio streams: the load generator shares the cores with what it
    measures, and this costs a fraction of a general client's CPU per request."""
    parts = urlsplit(url)
    queue: asyncio.Queue = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    stop_at = time.monotonic() + deadline_s
    target = (parts.hostname, parts.port, parts.path)

    async def client() -> None:
        connection = _Connection(*target)
        try:
            while not queue.empty() and time.monotonic() < stop_at:
                await connection.post_until_accepted(queue.get_nowait(), stop_at)
        finally:
            connection.close()

    if rate:
        paced = _Connection(*target)
        try:
            for item in items:
                started = time.monotonic()
                await paced.post_until_accepted(item, stop_at)
                await asyncio.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
        finally:
            paced.close()
        return
    await asyncio.gather(*(client() for _ in range(clients)))


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs a comment until it gets a 202."""

    def __init__(self, host: str, port: int, path: str):
        self.host, self.port, self.path = host, port, path
        self.reader = self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post_until_accepted(self, item: Sent, stop_at: float) -> None:
        item.offered_at = item.offered_at or time.time()
        extra = f"X-Callback-Url: {item.callback}\r\n" if item.callback else ""
        request = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nX-Call-Id: {item.call_id}\r\n"
                   f"Content-Type: application/json\r\n{extra}Content-Length: {len(item.body)}\r\n\r\n"
                   ).encode() + item.body
        while time.monotonic() < stop_at:
            try:
                status, retry_after = await self._exchange(request)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                self.close()
                status, retry_after = 0, 0.5
            if status == 202:
                item.accepted_at = time.time()
                return
            await asyncio.sleep(retry_after)

    async def _exchange(self, request: bytes) -> tuple[int, float]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 60)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        retry_after = headers.get("retry-after", "1")
        return status, float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 1.0


class Pollers:
    """Queue depth (NATS monitoring), entity-stats' watermark and the persisted count, every POLL_S."""

    def __init__(self, stack: MakeRunStack, run_id: str, burst: int, progress: bool):
        self.stack, self.run_id, self.burst = stack, run_id, burst
        self.seen = Observations()
        self._stop = threading.Event()
        self._bar = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=burst, unit="comment", desc="burst persisted", file=sys.stdout)
        self.burst_persisted = 0

    def start(self) -> None:
        for target in (self._depth, self._watermark, self._persisted):
            threading.Thread(target=target, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _depth(self) -> None:
        while not self._stop.wait(POLL_S):
            with contextlib.suppress(Exception):
                jsz = self.stack.nats.jsz()
                waiting = in_delivery = 0
                for account in jsz.get("account_details", []):
                    for stream in account.get("stream_detail", []):
                        for consumer in stream.get("consumer_detail", []) or []:
                            if consumer.get("name", "").endswith("-workers"):
                                waiting += consumer.get("num_pending", 0)
                                in_delivery += consumer.get("num_ack_pending", 0)
                self.seen.depth.append((time.time(), waiting, in_delivery))

    def _watermark(self) -> None:
        import urllib.request

        while not self._stop.wait(POLL_S):
            headers = {"Authorization": f"Bearer {self.stack.token()}"} if self.stack.token() else {}
            request = urllib.request.Request(self.stack.url + "/function/entity-stats?window=1h&limit=1",  # noqa: S310
                                             headers=headers)
            with contextlib.suppress(Exception):
                with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
                    answer = json.loads(resp.read())
                mark = (answer.get("freshness") or {}).get("watermark")
                self.seen.watermarks.append((time.time(), _epoch(mark) if mark else None))

    def _persisted(self) -> None:
        """One connection, and an index range on processed_at: the poll must not compete with the drain."""
        since = datetime.fromtimestamp(time.time() - 60, UTC)
        conn = None
        while not self._stop.wait(1.0):
            try:
                conn = conn or psycopg.connect(self.stack.owner_dsn(), connect_timeout=2, autocommit=True)
                count = conn.execute(queries.load("campaign")["count_persisted"], {
                    "since": since, "like": f"{self.run_id}-burst-%"}).fetchone()[0]
            except psycopg.Error:
                conn = None
                continue
            self.seen.persisted.append((time.time(), count))
            if self._bar is not None:
                self._bar.update(count - self.burst_persisted)
            self.burst_persisted = count
        if conn is not None:
            conn.close()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def inject(config: CampaignConfig, stack: MakeRunStack, pollers: Pollers, valid_burst: int) -> None:
    """Wait until ``fault_at`` of the burst is persisted, then run the fault (a thread's body)."""
    if config.fault == "none":
        return
    while pollers.burst_persisted < config.fault_at * valid_burst:
        time.sleep(0.2)
    record = {"fault": config.fault, "started_at": time.time(),
              "persisted_fraction": round(pollers.burst_persisted / valid_burst, 3)}
    if config.fault == "stall-primary":
        pids = server_processes(Path(stack.cluster.status()["primary"]["data_dir"]))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        time.sleep(config.fault_seconds)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    elif config.fault == "stop-primary":
        stack.cluster.stop_primary("fast")
        time.sleep(config.fault_seconds)
        stack.cluster.start_primary()
    elif config.fault == "restart-stack":
        stack.stop()
        record["stopped_at"] = time.time()
        stack.start()
    record["ended_at"] = time.time()
    pollers.seen.faults.append(record)


def run(config: CampaignConfig) -> dict:
    """Replay one campaign (see the module docstring) and return its summary (also written to
    ``out_dir/summary.json``, with ``out_dir/timeline.png``). Raises RuntimeError when the stack does
    not start."""
    if config.fault not in FAULTS:
        raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
    config.port = config.port or free_port()
    out_dir = Path(config.out_dir or Path(config.data_dir) / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"c{uuid.uuid4().hex[:8]}"
    phases = comments(config, run_id)
    _assign_callbacks(phases["burst"], config)
    stack = MakeRunStack(config.data_dir, config.port)
    stack.start()
    pollers = Pollers(stack, run_id, len(phases["burst"]), config.progress)
    callbacks = campaign_report.CallbackReceiver().start() if config.callback_fraction else None
    if callbacks is not None:
        for item in phases["burst"]:
            if item.callback == "receiver":
                item.callback = callbacks.url
    try:
        pollers.start()
        url = stack.url + "/async-function/ner-processor"
        valid = sum(1 for i in phases["burst"] if not i.invalid)
        fault = threading.Thread(target=inject, args=(config, stack, pollers, valid), daemon=True)
        started = time.time()
        asyncio.run(send(url, phases["quiet-before"], config.clients, rate=config.quiet_rate))
        fault.start()
        asyncio.run(send(url, phases["burst"], config.clients))
        fault.join(config.drain_timeout_s)
        # quiet again once the burst has drained: the steady part's latency is not a backlog's
        campaign_report.wait_drained(stack.owner_dsn(), run_id, phases, config.drain_timeout_s)
        asyncio.run(send(url, phases["quiet-after"], config.clients, rate=config.quiet_rate))
        campaign_report.wait_drained(stack.owner_dsn(), run_id, phases, config.drain_timeout_s)
        time.sleep(2 * POLL_S + 2.0)  # a last watermark after the last commit
        pollers.stop()
        summary = campaign_report.summarize(config, run_id, phases, pollers.seen, stack, started, callbacks)
    finally:
        pollers.stop()
        stack.stop()
        if callbacks is not None:
            callbacks.stop()
    summary["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["plot"] = str(campaign_report.plot(summary, out_dir / "timeline.png"))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _assign_callbacks(burst: list[Sent], config: CampaignConfig) -> None:
    if not config.callback_fraction:
        return
    every = round(1 / config.callback_fraction)
    dead_every = round(1 / config.unreachable_callback_fraction) if config.unreachable_callback_fraction else 0
    for i, item in enumerate(burst):
        if i % every == 0:
            item.callback = (f"http://127.0.0.1:{free_port()}/gone" if dead_every and (i // every) % dead_every == 0
                             else "receiver")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.campaign", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=LOCAL_DIR / "campaign")
    parser.add_argument("--out", type=Path, help="where summary.json and timeline.png go (default DATA_DIR/report)")
    parser.add_argument("--comments", type=int, default=20_000, help="comments in the burst")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--quiet-seconds", type=float, default=15.0)
    parser.add_argument("--quiet-rate", type=float, default=4.0, help="comments/s in the quiet parts")
    parser.add_argument("--fault", choices=FAULTS, default="none")
    parser.add_argument("--fault-seconds", type=float, default=20.0)
    parser.add_argument("--fault-at", type=float, default=0.3, help="fraction of the burst persisted when it starts")
    parser.add_argument("--callbacks", type=float, default=0.0, help="fraction of the burst with X-Callback-Url")
    parser.add_argument("--unreachable-callbacks", type=float, default=0.0,
                        help="fraction of those callback URLs that nothing listens on")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    summary = run(CampaignConfig(data_dir=args.data_dir, out_dir=args.out, comments=args.comments,
                                 clients=args.clients, quiet_s=args.quiet_seconds, quiet_rate=args.quiet_rate,
                                 fault=args.fault, fault_seconds=args.fault_seconds, fault_at=args.fault_at,
                                 callback_fraction=args.callbacks,
                                 unreachable_callback_fraction=args.unreachable_callbacks,
                                 progress=not args.no_progress))
    print(campaign_report.text(summary))
    return 0 if summary["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
