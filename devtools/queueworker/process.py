"""The queue-worker as a child process (``python -m devtools.queueworker``), its JSON log captured to a
file, as ``make run`` and the tests run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.processes import REPO, ManagedProcess


@dataclass(kw_only=True)
class QueueWorkerProcess(ManagedProcess):
    name: str = "queue-worker"

    def log_lines(self) -> list[dict]:
        """Every JSON line of its log so far."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for its ``queueworker.ready`` line. Raises RuntimeError when it exits, TimeoutError after
        ``timeout`` seconds (both with the log's tail)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"queue-worker exited with {self.process.returncode}:\n{self._tail()}")
            if any(line.get("event") == "queueworker.ready" for line in self.log_lines()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"queue-worker not ready after {timeout} s:\n{self._tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (deliveries in flight get a few seconds, then go back to the queue), then SIGKILL."""
        return super().stop(timeout)

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def start_queue_worker(nats_url: str, log_dir: Path, *, functions: dict[str, str] | None = None,
                       gateway: str | None = None, secrets_dir: Path | None = None, stack: Path | None = None,
                       extra_args: list[str] | None = None, wait: bool = True, env: dict | None = None
                       ) -> QueueWorkerProcess:
    """Start ``python -m devtools.queueworker``; ``functions``: name -> URL of each function process."""
    args = [sys.executable, "-m", "devtools.queueworker", "--nats", nats_url]
    if stack is not None:
        args += ["--stack", str(stack)]
    if secrets_dir is not None:
        args += ["--secrets-dir", str(secrets_dir)]
    if gateway is not None:
        args += ["--gateway", gateway]
    for name, url in (functions or {}).items():
        args += ["--function", f"{name}={url}"]
    args += extra_args or []
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"queue-worker-{int(time.time() * 1000)}.log"
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as out:
        process = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=child_env)
    worker = QueueWorkerProcess(process=process, log_path=log_path)
    if wait:
        worker.wait_ready()
    return worker
