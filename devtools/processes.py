"""Function processes on this machine, started the way of-watchdog starts them (``fprocess``), and the
rollup worker.

Used by the local gateway, ``make run``, the tests and the benchmarks: one OS process each, its stdout
(the JSON log lines) captured to a file.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Everything a local run leaves behind (PostgreSQL data and secrets, JSON logs, benchmark work, fault
# reports). It lives under the repository's top-level build/, the one folder (with template/) that
# `faas-cli build` / `--shrinkwrap` does not copy into build/<function>/ (stack.yml has `handler: .`);
# faas-cli only replaces build/<function>/, never build/local/. NLP_LOCAL_DIR overrides it.
LOCAL_DIR = REPO / (os.environ.get("NLP_LOCAL_DIR") or Path("build", "local"))  # relative: to REPO
FPROCESS = [sys.executable, "-m", "functions.runtime.server"]
ROLLUP_PROCESS = [sys.executable, "-m", "functions.runtime.rollup"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(kw_only=True)
class ManagedProcess:
    """A process this machine's tooling started, its stdout (JSON log lines) in ``log_path``."""

    name: str
    process: subprocess.Popen
    log_path: Path
    env: dict = field(default_factory=dict, repr=False)
    started_at: float = field(default_factory=time.time)  # epoch seconds

    def log_lines(self) -> list[dict]:
        """Every stdout line so far, parsed; a line that is not JSON raises (the contract says JSON)."""
        return [json.loads(line) for line in self.raw_log().splitlines() if line.strip()]

    def raw_log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass(kw_only=True)
class FunctionProcess(ManagedProcess):
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready_status(self) -> int:
        """HTTP status of the readiness path (0 when nothing answers)."""
        try:
            ready_url = self.url + self.env.get("READY_PATH", "/_/ready")  # always http://127.0.0.1
            with urllib.request.urlopen(ready_url, timeout=5) as resp:  # noqa: S310
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def wait_ready(self, timeout: float = 60.0, expect: int = 200) -> None:
        """Wait until readiness answers ``expect``. Raises RuntimeError if the process exits and
        TimeoutError after ``timeout`` seconds, both with the tail of its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                                   f"{self.raw_log()[-3000:]}")
            if self.ready_status() == expect:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready (HTTP {expect}) after {timeout}s:\n{self.raw_log()[-3000:]}")


def _environment(secrets_dir: Path | None, log_dir: Path, env: dict | None, overrides: dict) -> dict[str, str]:
    """This process's environment without DSNs (they come from the secrets), plus ``env`` and
    ``overrides``; secrets from ``secrets_dir`` (an empty folder of ``log_dir`` when None)."""
    child_env = {k: v for k, v in os.environ.items() if not k.endswith("_DSN")}
    child_env.update(env or {})
    child_env.update({"SECRETS_DIR": str(secrets_dir) if secrets_dir else str(log_dir / "no-secrets"),
                      "PYTHONUNBUFFERED": "1"})
    child_env.update({k: str(v) for k, v in overrides.items()})
    return child_env


def _spawn(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as stdout:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT)


def start_function(name: str, log_dir: Path, *, secrets_dir: Path | None = None, port: int | None = None,
                   wait: bool = True, env: dict | None = None, **overrides: str) -> FunctionProcess:
    """Start function ``name`` (``functions/<name>/handler.py``) on a free port."""
    port = port or free_port()
    child_env = _environment(secrets_dir, log_dir, env, {"FUNCTION_NAME": name, "PORT": str(port),
                                                         "HOST": "127.0.0.1", **overrides})
    log_path = log_dir / f"{name}-{port}.log"
    fn = FunctionProcess(name=name, port=port, process=_spawn(FPROCESS, log_path, child_env), log_path=log_path,
                         env=child_env)
    if wait:
        fn.wait_ready()
    return fn


def start_rollup_worker(log_dir: Path, *, secrets_dir: Path, env: dict | None = None,
                        **overrides: str) -> ManagedProcess:
    """Start the rollup worker (``python -m functions.runtime.rollup``, secret ``rollup-dsn``); its
    metrics port is off unless ``ROLLUP_METRICS_PORT`` is given."""
    child_env = _environment(secrets_dir, log_dir, env, {"ROLLUP_METRICS_PORT": "0", **overrides})
    log_path = log_dir / f"rollup-{time.time_ns()}.log"
    return ManagedProcess(name="rollup", process=_spawn(ROLLUP_PROCESS, log_path, child_env), log_path=log_path,
                          env=child_env)


def call(fn_or_url, path: str = "/", *, method: str = "POST", body: bytes | str | dict | None = None,
         content_type: str | None = "application/json", headers: dict | None = None, timeout: float = 30.0):
    """One HTTP request; returns (status, headers dict with lower-case keys, parsed JSON or raw bytes)."""
    url = fn_or_url.url if isinstance(fn_or_url, FunctionProcess) else fn_or_url
    host, port = url.removeprefix("http://").split(":")
    if isinstance(body, dict | list):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers.setdefault("Content-Type", content_type)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        resp = conn.getresponse()
        raw = resp.read()
        resp_headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    parsed = raw
    if resp_headers.get("content-type", "").startswith("application/json"):
        parsed = json.loads(raw)
    return resp.status, resp_headers, parsed
