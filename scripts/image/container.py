"""Run a function image the way OpenFaaS runs it, for tests/image and bench/image.py.

* read-only root filesystem, a writable tmpfs at /tmp only (faas-netes' emptyDir), user 10001;
* secrets as files at /var/openfaas/secrets/<name>, mounted read-only; by default owned by uid 10001 with
  mode 0400 (copies written for the container, as the provider makes them readable to the pod's user);
* environment: stack.yml `environment_file` + `environment` (inline wins), plus PORT (below);
* network, by default: the HOST network namespace. The local PostgreSQL servers (devtools/pgcluster/)
  listen on 127.0.0.1 only, which a container in its own network namespace cannot reach, and the host
  can then time the cold start over HTTP. As the namespace is shared, PORT is a free port instead of
  the image's 5000. The strict variant, network="none" (no interface but loopback) with the database's
  unix socket bind-mounted, is what tests/image uses to prove the function needs nothing else;
* the command is the image's own `fprocess` ENV split on single spaces, exactly what of-watchdog would
  start (the official watchdog cannot be pulled here; /usr/bin/fwatchdog may be the placeholder).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from bench import common
from scripts.image.build import ROOT, Engine

APP_UID = 10001
SECRETS_MOUNT = "/var/openfaas/secrets"


def function_env(function: str, stack: dict | None = None) -> dict[str, str]:
    """stack.yml environment_file(s) merged with the inline environment (inline wins), as faas-cli does."""
    if stack is None:
        stack = yaml.safe_load((ROOT / "stack.yml").read_text(encoding="utf-8"))
    fn = stack["functions"][function]
    env: dict[str, str] = {}
    for name in fn.get("environment_file") or []:
        env.update(yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))["environment"])
    env.update(fn.get("environment") or {})
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_env(engine, ref: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in engine.inspect(ref)["Config"]["Env"])


def parse_started_at(text: str) -> float:
    """Docker/podman State.StartedAt (RFC 3339 with nanoseconds) -> epoch seconds."""
    text = text.strip().replace("Z", "+00:00")
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        offset = rest[len(digits):]
        text = f"{head}.{digits[:6]}{offset}"
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Container:
    engine: Engine
    name: str
    port: int
    secrets_dir: Path
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict:
        return json.loads(self.engine.run("inspect", "--type", "container", self.name).stdout)[0]["State"]

    def started_at(self) -> float:
        return parse_started_at(self.state()["StartedAt"])

    def logs(self) -> tuple[str, str]:
        """(stdout, stderr) of the container's process so far."""
        result = self.engine.run("logs", self.name, check=False)
        return result.stdout, result.stderr

    def exec(self, *argv: str, timeout: float = 60):
        return self.engine.run("exec", self.name, *argv, check=False, timeout=timeout)

    def request(self, path: str = "/", body: bytes | None = None, content_type: str = "application/json",
                headers: dict | None = None, timeout: float = 10.0) -> tuple[int, dict, bytes]:
        # our own http://127.0.0.1 URL, never a caller-supplied scheme
        req = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET",  # noqa: S310
                                     headers={"Content-Type": content_type, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if not state.get("Running"):
                return int(state.get("ExitCode", -1))
            time.sleep(0.2)
        raise AssertionError(f"container {self.name} still running after {timeout} s")


def write_secrets(directory: Path, secrets: dict[str, str], *, owner: int = APP_UID, mode: int = 0o400) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for name, value in secrets.items():
        path = directory / name
        path.write_text(value, encoding="utf-8")
        os.chown(path, owner, owner)
        path.chmod(mode)


@contextlib.contextmanager
def run_function(engine: Engine, ref: str, env: dict[str, str], secrets: dict[str, str], *, secret_owner: int = APP_UID,
                 secret_mode: int = 0o400, network: str = "host", mounts: dict[str, str] | None = None):
    """Start the image as OpenFaaS would (module docstring); yields a Container; removes it afterwards.

    network="none": no network namespace but loopback (the function then listens on the image's own
    PORT, reachable only from inside: Container.exec); `mounts` {host path: container path} adds bind
    mounts (e.g. a PostgreSQL unix socket directory)."""
    name = f"nlp-image-test-{uuid.uuid4().hex[:10]}"
    secrets_dir = Path(tempfile.mkdtemp(prefix="nlp-image-secrets-"))
    secrets_dir.chmod(0o755)
    write_secrets(secrets_dir, secrets, owner=secret_owner, mode=secret_mode)
    port = free_port() if network == "host" else int(image_env(engine, ref).get("PORT", "5000"))
    full_env = {**env, "PORT": str(port)} if network == "host" else dict(env)
    fprocess = image_env(engine, ref)["fprocess"].split(" ")
    args = ["run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp:rw,mode=1777,size=64m",  # noqa: S108
            "--user", f"{APP_UID}:{APP_UID}", "--network", network,
            "-v", f"{secrets_dir}:{SECRETS_MOUNT}:ro"]
    for host_path, container_path in (mounts or {}).items():
        args += ["-v", f"{host_path}:{container_path}"]
    if engine.name == "podman":
        # podman adds writable tmpfs at /run, /var/tmp too unless told not to: OpenFaaS gives /tmp only.
        # Kubernetes ignores the image's HEALTHCHECK (the provider sets probes); podman would try to
        # schedule it with systemd timers, which these runners do not have.
        args += ["--read-only-tmpfs=false", "--health-cmd", "none"]
    for key, value in full_env.items():
        args += ["-e", f"{key}={value}"]
    try:
        engine.run(*args, ref, *fprocess)
        yield Container(engine, name, port, secrets_dir, full_env)
    finally:
        engine.run("rm", "-f", "-t", "2", name, check=False)
        shutil.rmtree(secrets_dir, ignore_errors=True)


def wait_for(predicate, timeout: float, interval: float = 0.02):
    """Call predicate() until it returns a truthy value; returns it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            value = predicate()
            if value:
                return value
        time.sleep(interval)
    return None



def cold_start(container: Container, body: bytes, request_id: str, *, timeout: float = 180.0) -> dict:
    """Poll the runtime's readiness path (what of-watchdog's ready_path proxies to) from the moment the
    container runs; once it answers 200, POST `body` until a 200 with "persisted": true.

    Returns {"ready_statuses": [status or None (not listening) as they changed], "ready_s", "first_s"
    (seconds from the engine's State.StartedAt), "cpu_s" (CPU seconds the process had used by then: a
    figure machine load hardly moves), "answer": the parsed 200 body}. Raises AssertionError
    when the container exits or nothing persisted within `timeout` seconds (with the container's logs).
    """
    started_at = container.started_at()
    statuses: list[int | None] = []
    ready_s = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = container.request("/_/ready", timeout=5)[0]
        except OSError:
            status = None
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        if status == 200:
            if ready_s is None:
                ready_s = time.time() - started_at
            code, _headers, data = container.request("/", body, headers={"X-Call-Id": request_id}, timeout=30)
            if code == 200:
                answer = json.loads(data)
                if answer.get("persisted"):
                    first_s = time.time() - started_at
                    return {"ready_statuses": statuses, "ready_s": ready_s, "first_s": first_s,
                            "cpu_s": cpu_seconds(container), "answer": answer}
        elif status is None and not container.state().get("Running"):
            out, err = container.logs()
            raise AssertionError(f"container exited during start-up:\n{out[-3000:]}\n{err[-3000:]}")
        time.sleep(0.01)
    out, err = container.logs()
    raise AssertionError(f"no persisted 200 within {timeout} s (readiness {statuses}):\n{out[-3000:]}\n{err[-3000:]}")


def rss_mb(container: Container) -> float:
    """VmRSS of the container's fprocess and its children (the model process), read from the host's
    /proc (bench.common.rss_mb)."""
    return common.rss_mb(int(container.state()["Pid"]))


def cpu_seconds(container: Container) -> float:
    """User + system CPU seconds of the container's fprocess and its children so far (host /proc)."""
    return common.cpu_seconds(int(container.state()["Pid"]))
