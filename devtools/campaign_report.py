"""What a campaign replay (:mod:`devtools.campaign`) found: the summary dict, its text and its plot, and
the callback receiver the replay points ``X-Callback-Url`` at.

Shapes::

    summary = summarize(config, run_id, phases, observations, stack, started, receiver)
    summary["accepted"], summary["persisted_once"], summary["dead_lettered"] ({"rejected/422": 200}),
    summary["lost"], summary["max_queue_depth"], summary["drain_s"], summary["latency"]
    plot(summary, Path("timeline.png")) -> Path
    text(summary) -> str
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import glob
import json
import math
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from devtools.processes import free_port
from functions.runtime import queries


class CallbackReceiver:
    """An HTTP server on 127.0.0.1 (aiohttp on its own event-loop thread: the receiver shares the cores
    with what it measures) that records every POST: call id -> [{"status", "name"}]."""

    def __init__(self):
        self.port = free_port()
        self.received: dict[str, list[dict]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def _handle(self, request):
        from aiohttp import web

        await request.read()
        self.received[request.headers.get("X-Call-Id", "")].append(
            {"status": request.headers.get("X-Function-Status"), "name": request.headers.get("X-Function-Name")})
        return web.Response(status=204)

    async def _main(self) -> None:
        from aiohttp import web

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = web.Server(self._handle, access_log=None)
        runner = web.ServerRunner(server)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> CallbackReceiver:
        threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True).start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)


def _params(run_id: str, since: float) -> dict:
    return {"since": datetime.fromtimestamp(since - 60, UTC), "like": f"{run_id}-%"}


def _rows(dsn: str, run_id: str, since: float) -> tuple[dict[str, float], dict[str, dict]]:
    """(document id -> processed_at epoch, call id -> dead letter fields) of the run (started at ``since``)."""
    sql = queries.load("campaign")
    with psycopg.connect(dsn) as conn:
        docs = {rid: at.timestamp() for rid, at in conn.execute(sql["documents_of_run"], _params(run_id, since))}
        letters = {row[0]: {"reason": row[1], "status": row[2], "state": row[3], "body": bytes(row[4]),
                            "error": row[5], "at": row[6].timestamp()}
                   for row in conn.execute(sql["dead_letters_of_run"], _params(run_id, since))}
    return docs, letters


def wait_drained(dsn: str, run_id: str, phases: dict, timeout_s: float) -> bool:
    """Wait until every accepted comment is persisted or dead-lettered (counted, cheaply, every 2 s; then
    checked id by id); False after ``timeout_s``."""
    accepted = {i.call_id for items in phases.values() for i in items if i.accepted_at is not None}
    since = min((i.offered_at for items in phases.values() for i in items if i.offered_at), default=time.time())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.Error), psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < deadline:
                done = conn.execute(queries.load("campaign")["count_finished"], _params(run_id, since)).fetchone()[0]
                if done >= len(accepted):
                    docs, letters = _rows(dsn, run_id, since)
                    return accepted <= set(docs) | set(letters)
                time.sleep(2.0)
        time.sleep(1.0)
    return False


def _duplicates(data_dir: Path, run_id: str) -> int:
    """Comments the function answered ``duplicate`` (a redelivery of something already stored)."""
    count = 0
    for path in glob.glob(str(Path(data_dir) / "logs" / "ner-processor-*.log")):
        with open(path, encoding="utf-8", errors="replace") as log:
            for line in log:
                if run_id in line and '"duplicate_count"' in line:
                    with contextlib.suppress(ValueError):
                        count += int(json.loads(line).get("duplicate_count") or 0)
    return count


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 3)


def _latency(phases: dict, docs: dict[str, float], watermarks: list[tuple[float, float | None]]) -> dict:
    marks = [(t, w) for t, w in watermarks if w is not None]
    if not marks:
        return {"overall_p50_s": "n/a (no watermark)", "overall_p99_s": "n/a (no watermark)",
                "steady_p50_s": "n/a (no watermark)", "steady_p99_s": "n/a (no watermark)", "samples": 0}
    # The first poll whose watermark covers a commit: running maximum of the watermark over poll times.
    times, covered, best = [], [], -math.inf
    for t, w in sorted(marks):
        best = max(best, w)
        times.append(t)
        covered.append(best)
    overall, steady = [], []
    for phase, items in phases.items():
        for item in items:
            committed = docs.get(item.call_id)
            if committed is None or item.accepted_at is None:
                continue
            k = bisect.bisect_left(covered, committed)
            k = max(k, bisect.bisect_left(times, item.accepted_at))
            if k >= len(times):
                continue
            value = max(0.0, times[k] - item.accepted_at)
            overall.append(value)
            if phase != "burst":
                steady.append(value)
    return {"overall_p50_s": _pct(overall, 0.5), "overall_p99_s": _pct(overall, 0.99),
            "steady_p50_s": _pct(steady, 0.5), "steady_p99_s": _pct(steady, 0.99), "samples": len(overall),
            "steady_samples": len(steady)}


def _timeline(phases: dict, docs: dict[str, float], letters: dict[str, dict], seen, started: float) -> dict:
    def bins(stamps) -> dict[int, int]:
        return dict(Counter(int(s - started) for s in stamps if s is not None))

    offered = [i.offered_at for items in phases.values() for i in items]
    depth = {}
    for t, waiting, delivering in seen.depth:
        depth[int(t - started)] = waiting + delivering
    return {"offered_per_s": bins(offered), "persisted_per_s": bins(docs.values()),
            "dead_letters_per_s": bins(v["at"] for v in letters.values()), "queue_depth": depth,
            "faults": [{k: (round(v - started, 1) if k.endswith("_at") else v) for k, v in f.items()}
                       for f in seen.faults]}


def summarize(config, run_id: str, phases: dict, seen, stack, started: float, receiver=None) -> dict:
    """The summary of a finished replay (see :mod:`devtools.campaign`)."""
    docs, letters = _rows(stack.owner_dsn(), run_id, started)
    items = [i for phase in phases.values() for i in phase]
    accepted = [i for i in items if i.accepted_at is not None]
    burst = [i for i in phases["burst"] if i.accepted_at is not None]
    lost = [i.call_id for i in accepted if i.call_id not in docs and i.call_id not in letters]
    invalid = [i for i in phases["burst"] if i.invalid]
    poison_ok = sum(1 for i in invalid if (dl := letters.get(i.call_id)) and dl["status"] == 422
                    and dl["state"] == "open" and dl["body"] == i.body)
    by_reason = Counter(f"{v['reason']}/{v['status']}" for v in letters.values())
    ends = [docs[i.call_id] for i in burst if i.call_id in docs] + [letters[i.call_id]["at"] for i in burst
                                                                     if i.call_id in letters]
    first = min((i.accepted_at for i in burst), default=started)
    summary = {
        "run_id": run_id, "offered": len(items), "accepted": len(accepted),
        "burst": {"comments": len(phases["burst"]), "accepted": len(burst),
                  "accepted_within_s": round(max((i.accepted_at for i in burst), default=first)
                                             - min((i.offered_at for i in burst), default=first), 2)},
        "persisted_once": sum(1 for i in accepted if i.call_id in docs),
        "invalid_persisted": sum(1 for i in invalid if i.call_id in docs),
        "duplicates_on_redelivery": _duplicates(stack.data_dir, run_id),
        "dead_lettered": dict(by_reason), "dead_letters_total": len(letters),
        "poison_letters_open_422_with_body": f"{poison_ok}/{len(invalid)}",
        "lost": len(lost), "lost_ids": lost[:20],
        "max_queue_depth": max((w + d for _, w, d in seen.depth), default=0),
        "drain_s": round(max(ends, default=first) - first, 1),
        "latency": _latency(phases, docs, seen.watermarks),
        "timeline": _timeline(phases, docs, letters, seen, started),
    }
    if receiver is not None:
        wanted = [i for i in burst if i.callback == receiver.url]
        counts = Counter(len(receiver.received.get(i.call_id, [])) for i in wanted)
        summary["callbacks"] = {"expected": len(wanted), "exactly_once": counts.get(1, 0), "missing": counts.get(0, 0),
                                "more_than_once": sum(v for k, v in counts.items() if k > 1)}
    return summary


def text(summary: dict) -> str:
    """The summary as the lines ``make campaign`` prints."""
    lat = {k: (f"{v} s" if isinstance(v, int | float) else v) for k, v in summary["latency"].items()}
    lines = [
        f"accepted            {summary['accepted']} of {summary['offered']} "
        f"(burst of {summary['burst']['comments']} answered 202 within {summary['burst']['accepted_within_s']} s)",
        f"persisted once      {summary['persisted_once']}",
        f"duplicates answered {summary['duplicates_on_redelivery']} (redeliveries of stored comments)",
        f"dead-lettered       {summary['dead_letters_total']} {summary['dead_lettered']} "
        f"(poison letters open, 422, original body: {summary['poison_letters_open_422_with_body']})",
        f"lost                {summary['lost']}",
        f"max queue depth     {summary['max_queue_depth']}",
        f"drain time          {summary['drain_s']} s",
        f"comment->dashboard  p50 {lat['overall_p50_s']}, p99 {lat['overall_p99_s']}; steady part p50 "
        f"{lat['steady_p50_s']}, p99 {lat['steady_p99_s']}",
    ]
    if "callbacks" in summary:
        lines.append(f"callbacks           {summary['callbacks']}")
    if summary["timeline"]["faults"]:
        lines.append(f"faults              {summary['timeline']['faults']}")
    if "plot" in summary:
        lines.append(f"plot                {summary['plot']}")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> Path:
    """timeline.png: offered and persisted comments/s, queue depth and dead letters per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = summary["timeline"]

    def series(key: str, fill: bool = True) -> tuple[list[int], list[int]]:
        """Counts per second (a second without any is 0), or samples as taken (``fill=False``: a
        second without a sample, e.g. while the stack restarts, is a gap, not a zero)."""
        data = {int(k): v for k, v in timeline[key].items()}
        if not data:
            return [], []
        xs = list(range(0, max(data) + 1)) if fill else sorted(data)
        return xs, [data.get(x, 0) for x in xs]

    fig, (rate_ax, depth_ax) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), dpi=100)
    for key, label in (("offered_per_s", "offered /s"), ("persisted_per_s", "persisted /s"),
                       ("dead_letters_per_s", "dead letters /s")):
        xs, ys = series(key)
        rate_ax.plot(xs, ys, label=label, linewidth=1)
    rate_ax.set_ylabel("comments per second")
    rate_ax.legend(loc="upper right")
    xs, ys = series("queue_depth", fill=False)
    depth_ax.plot(xs, ys, color="tab:purple", linewidth=1, label="queue depth (waiting + in delivery)")
    depth_ax.set_ylabel("messages")
    depth_ax.set_xlabel("seconds since the replay started")
    depth_ax.legend(loc="upper right")
    for fault in timeline["faults"]:
        for ax in (rate_ax, depth_ax):
            ax.axvspan(fault["started_at"], fault.get("ended_at", fault["started_at"]), color="red", alpha=0.15)
    fig.suptitle(f"campaign replay: {summary['burst']['comments']} comments, fault "
                 f"{summary.get('config', {}).get('fault', 'none')}, lost {summary['lost']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
