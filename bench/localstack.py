"""The local stack a benchmark runs against: a PostgreSQL primary + streaming replica under
``build/local/bench/...`` (``devtools.pgcluster.LocalCluster``) and function processes
(``devtools.processes.start_function``), plus where local (never committed) results go.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.processes import LOCAL_DIR, FunctionProcess, start_function

# Timestamped tables, raw JSON figures and profiles: local output, git-ignored with build/. Only the
# generated bench/results/latest.md is committed.
LOCAL_RESULTS = LOCAL_DIR / "bench" / "results"
READY_TIMEOUT_S = 120  # spawn to readiness 200, model load included, on a loaded 2-core machine


def start_ready(name: str, log_dir: Path, secrets_dir: Path, **env: str) -> FunctionProcess:
    """Start function ``name`` (``env`` on top of its defaults) and wait until its readiness path answers
    200. Raises whatever ``FunctionProcess.wait_ready`` raises when it does not within READY_TIMEOUT_S."""
    fn = start_function(name, log_dir, secrets_dir=secrets_dir, wait=False, **env)
    fn.wait_ready(timeout=READY_TIMEOUT_S)
    return fn


@contextmanager
def fresh_cluster(base: Path) -> Iterator:
    """A new primary + replica under ``base`` (whatever was there is destroyed first), destroyed on exit:
    every standalone run starts from empty tables."""
    from devtools.pgcluster import LocalCluster

    cluster = LocalCluster(base)
    cluster.destroy()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
