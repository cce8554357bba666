"""What a phase costs and what the function says about it: CPU by process group, the function's JSON log
lines and its /metrics counters.

* :class:`CpuMeter`: cores used by the function process (and its model process), PostgreSQL (every
  backend of the bench cluster's data directories), the load generator and everything else on the
  machine, over one phase.
* :class:`LogCursor`: the server-side means (``ner_ms``, ``db_ms``, ``duration_ms``) of the
  ``request.completed`` log lines written since the cursor was placed.
* :func:`scrape` / :func:`engine_stats`: the runtime's micro-batching and group-commit counters from
  two ``GET /metrics`` scrapes.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from bench.common import cpu_seconds
from devtools.processes import FunctionProcess

# The /metrics series the bench reads (sums and counts of the runtime's histograms).
SERIES = (
    "nlp_model_batch_documents_sum",
    "nlp_model_batch_documents_count",
    "nlp_model_batch_seconds_sum",
    "nlp_db_write_seconds_sum",
    "nlp_db_write_seconds_count",
)


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, ``time.perf_counter()``) from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), time.perf_counter()


def pg_cpu_seconds(data_dirs: list[str]) -> float:
    """CPU seconds used so far by every postgres process of the given data directories (the servers'
    backends chdir into their data directory, which is how they are found)."""
    targets = {str(Path(d).resolve()) for d in data_dirs if d}
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") not in targets:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class CpuMeter:
    """Cores used by the function process, PostgreSQL, the client and everything else during a phase.

    A context manager around the phase; then :meth:`result` with the client's own CPU seconds gives
    ``{"fn", "pg", "client", "other"}`` in cores (CPU seconds per wall second) and ``wall_s``."""

    def __init__(self, fn_pid: int, pg_dirs: list[str]):
        self.fn_pid, self.pg_dirs = fn_pid, pg_dirs

    def __enter__(self) -> CpuMeter:
        self.fn0 = cpu_seconds(self.fn_pid)
        self.pg0 = pg_cpu_seconds(self.pg_dirs)
        self.busy0, self.t0 = machine_busy()
        return self

    def __exit__(self, *exc) -> None:
        busy1, t1 = machine_busy()
        wall = max(1e-6, t1 - self.t0)
        self.fn = (cpu_seconds(self.fn_pid) - self.fn0) / wall
        self.pg = (pg_cpu_seconds(self.pg_dirs) - self.pg0) / wall
        self.busy = (busy1 - self.busy0) / wall
        self.wall = wall

    def result(self, client_cpu_s: float) -> dict:
        client = client_cpu_s / self.wall
        return {
            "fn": self.fn,
            "pg": self.pg,
            "client": client,
            "other": max(0.0, self.busy - self.fn - self.pg - client),
            "wall_s": self.wall,
        }


class LogCursor:
    """Server-side figures from the function's JSON log lines written since the last call."""

    def __init__(self, fn: FunctionProcess):
        self.path = fn.log_path
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def take(self) -> dict:
        """``{"ner_ms_mean", "db_ms_mean", "duration_ms_mean"}`` (ms, None without lines) and
        ``requests_logged`` over the ``request.completed`` lines since the last call."""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        sums: dict[str, list[float]] = {"ner_ms": [], "db_ms": [], "duration_ms": []}
        for line in data.splitlines():
            if b'"request.completed"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            for key, values in sums.items():
                if isinstance(rec.get(key), int | float):
                    values.append(float(rec[key]))
        return {f"{k}_mean": (statistics.fmean(v) if v else None) for k, v in sums.items()} | {
            "requests_logged": len(sums["duration_ms"])
        }


def metrics_text(fn: FunctionProcess) -> str:
    """The function's GET /metrics exposition; empty when the process has none (e.g. the seed design) or
    does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(fn.url + "/metrics", timeout=5) as resp:  # noqa: S310 - http://127.0.0.1
            return resp.read().decode()
    except OSError:
        return ""


def scrape(fn: FunctionProcess) -> dict[str, float]:
    """The runtime's own counters (:data:`SERIES`) from GET /metrics; empty when the process has none
    (e.g. the seed design) or does not answer."""
    text = metrics_text(fn)
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in SERIES:
            out[name] = float(value)
    return out


def engine_stats(before: dict, after: dict, wall_s: float) -> dict:
    """Micro-batching and group-commit figures of one phase from two :func:`scrape` results: model busy
    (seconds in batches per wall second), mean batch (docs), batches, commits, mean commit (ms), docs per
    commit. Empty when either scrape is empty."""
    if not before or not after:
        return {}
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in SERIES}
    batches, commits = d["nlp_model_batch_documents_count"], d["nlp_db_write_seconds_count"]
    return {
        "model_busy": d["nlp_model_batch_seconds_sum"] / wall_s if wall_s else None,
        "batch_docs_mean": d["nlp_model_batch_documents_sum"] / batches if batches else None,
        "batches": batches,
        "commits": commits,
        "commit_ms_mean": 1000 * d["nlp_db_write_seconds_sum"] / commits if commits else None,
        "docs_per_commit": d["nlp_model_batch_documents_sum"] / commits if commits else None,
    }
