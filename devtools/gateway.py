"""A local stand-in for the OpenFaaS gateway: every function of stack.yml as its own process.

``python -m devtools.gateway --secrets-dir DIR`` reads stack.yml (and its
``environment_file``), starts each function with ``python -m functions.runtime.server`` (what the
image's of-watchdog runs) and serves on 127.0.0.1:8080 the routes a user touches:

- ``/function/NAME`` and ``/function/NAME.NAMESPACE`` (faas-cli always appends the namespace), with any
  sub-path, proxied like the gateway does (prefix stripped, ``X-Call-Id`` set if missing);
- ``/async-function/NAME[.NAMESPACE]``: 202 at once, then delivered in the background with retries on
  429/5xx keeping the same ``X-Call-Id`` (like the NATS queue-worker), optional ``X-Callback-Url``;
- ``GET /system/functions`` and ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import queue
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from devtools.processes import REPO, FunctionProcess, start_function

log = logging.getLogger(__name__)

_ROUTE = re.compile(r"^/(function|async-function)/([a-z0-9][a-z0-9-]*)(?:\.([a-z0-9-]+))?(/.*)?$")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                "proxy-authorization", "proxy-authenticate", "host", "content-length"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    image: str
    environment: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]
    namespace: str


def _substitute(text: str, environ: dict[str, str]) -> str:
    return _VAR.sub(lambda m: environ.get(m.group(1), m.group(2) or ""), text)


def read_stack(stack_path: Path, environ: dict[str, str] | None = None) -> list[FunctionSpec]:
    """Functions of a stack.yml with their merged environment (environment_file first, inline wins),
    like ``faas-cli``. Raises ValueError when the file has no functions."""
    import os

    env = dict(os.environ if environ is None else environ)
    stack = yaml.safe_load(_substitute(stack_path.read_text(encoding="utf-8"), env)) or {}
    functions = stack.get("functions") or {}
    if not functions:
        raise ValueError(f"{stack_path} defines no functions")
    default_ns = (stack.get("provider") or {}).get("namespace") or "openfaas-fn"
    specs = []
    for name, spec in functions.items():
        merged: dict[str, str] = {}
        for env_file in spec.get("environment_file") or []:
            data = yaml.safe_load((stack_path.parent / env_file).read_text(encoding="utf-8")) or {}
            merged.update({k: _stringify(v) for k, v in (data.get("environment") or {}).items()})
        merged.update({k: _stringify(v) for k, v in (spec.get("environment") or {}).items()})
        specs.append(FunctionSpec(
            name=name, image=spec.get("image", ""), environment=merged,
            labels={k: _stringify(v) for k, v in (spec.get("labels") or {}).items()},
            annotations={k: _stringify(v) for k, v in (spec.get("annotations") or {}).items()},
            namespace=spec.get("namespace") or default_ns))
    return specs


def _stringify(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Settings that only make sense inside the image: locally the server picks its own port and host.
_IMAGE_ONLY = {"PORT", "HOST", "fprocess", "mode", "upstream_url", "SECRETS_DIR", "FUNCTION_NAME"}


class Gateway:
    """Owns the function processes and the proxy server."""

    def __init__(self, specs: list[FunctionSpec], *, secrets_dir: Path, log_dir: Path,
                 host: str = "127.0.0.1", port: int = 8080, env_overrides: dict[str, str] | None = None,
                 async_attempts: int = 5):
        self.specs = {spec.name: spec for spec in specs}
        self.secrets_dir = secrets_dir
        self.log_dir = log_dir
        self.env_overrides = dict(env_overrides or {})
        self.processes: dict[str, FunctionProcess] = {}
        self.async_attempts = async_attempts
        self._async_queue: queue.Queue = queue.Queue()
        self.httpd = ThreadingHTTPServer((host, port), _GatewayHandler)
        self.httpd.daemon_threads = True
        self.httpd.gateway = self  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, wait: bool = True, timeout: float = 90.0) -> None:
        """Start every function process (in parallel), then the HTTP server and the async worker."""
        for name, spec in self.specs.items():
            env = {k: v for k, v in spec.environment.items() if k not in _IMAGE_ONLY}
            env.update(self.env_overrides)
            self.processes[name] = start_function(name, self.log_dir, secrets_dir=self.secrets_dir,
                                                  wait=False, env=env)
        if wait:
            for fn in self.processes.values():
                fn.wait_ready(timeout=timeout)
        threading.Thread(target=self.httpd.serve_forever, name="gateway", daemon=True).start()
        threading.Thread(target=self._async_worker, name="async-worker", daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        for fn in self.processes.values():
            fn.stop()

    # -- async invocations (queue-worker semantics) -----------------------------------------------

    def enqueue(self, name: str, path: str, method: str, headers: dict[str, str], body: bytes) -> None:
        self._async_queue.put((name, path, method, headers, body))

    def _async_worker(self) -> None:
        while True:
            name, path, method, headers, body = self._async_queue.get()
            status, resp_headers, payload = 0, {}, b""
            for attempt in range(self.async_attempts):
                status, resp_headers, payload = self.forward(name, path, method, headers, body)
                if status < 500 and status != 429:
                    break
                delay = min(8.0, 0.5 * 2 ** attempt)
                retry_after = resp_headers.get("retry-after")
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
                time.sleep(delay)
            callback = headers.get("X-Callback-Url")
            if callback:
                self._callback(callback, status, resp_headers, payload, headers.get("X-Call-Id", ""))

    @staticmethod
    def _callback(url: str, status: int, headers: dict, payload: bytes, call_id: str) -> None:
        parts = urlsplit(url)
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
            conn.request("POST", parts.path or "/", body=payload, headers={
                "Content-Type": headers.get("content-type", "application/json"),
                "X-Call-Id": call_id, "X-Function-Status": str(status)})
            conn.getresponse().read()
            conn.close()
        except OSError:
            log.warning("async callback failed", extra={"event": "gateway.callback_failed", "request_id": call_id})

    # -- proxy ------------------------------------------------------------------------------------

    def forward(self, name: str, path: str, method: str, headers: dict[str, str], body: bytes,
                timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
        fn = self.processes[name]
        conn = http.client.HTTPConnection("127.0.0.1", fn.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except OSError as exc:
            body = json.dumps({"error": "function_unreachable",
                               "message": f"function {name} did not answer: {type(exc).__name__}",
                               "request_id": headers.get("X-Call-Id")}).encode()
            return 502, {"content-type": "application/json"}, body
        finally:
            conn.close()

    def describe(self) -> list[dict]:
        out = []
        for name, spec in self.specs.items():
            fn = self.processes.get(name)
            alive = fn is not None and fn.process.poll() is None
            out.append({"name": name, "image": spec.image, "namespace": spec.namespace,
                        "replicas": 1, "availableReplicas": 1 if alive and fn.ready_status() == 200 else 0,
                        "envProcess": "python -m functions.runtime.server", "labels": spec.labels,
                        "annotations": spec.annotations, "invocationCount": 0})
        return out


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nlp-enrichment-local-gateway"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self._route
        raise AttributeError(name)

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response_only(status)
        for key, value in headers.items():
            if key.lower() not in _HOP_HEADERS:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body) -> None:
        self._reply(status, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _route(self) -> None:
        gateway: Gateway = self.server.gateway  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        if split.path == "/healthz":
            self._reply(200, {"Content-Type": "text/plain"}, b"OK")
            return
        if split.path == "/system/functions" and self.command == "GET":
            self._json(200, gateway.describe())
            return
        match = _ROUTE.match(split.path)
        if not match or match.group(2) not in gateway.specs:
            self._json(404, {"error": "not_found", "message": f"no function at {split.path}"})
            return
        kind, name, namespace, rest = match.groups()
        spec = gateway.specs[name]
        if namespace and namespace != spec.namespace:
            self._json(404, {"error": "not_found", "message": f"function {name} is not in namespace {namespace}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        headers.setdefault("X-Call-Id", str(uuid.uuid4()))
        headers["X-Start-Time"] = str(time.time_ns())
        target = (rest or "/") + (f"?{split.query}" if split.query else "")
        if kind == "async-function":
            gateway.enqueue(name, target, self.command, headers, body)
            self._reply(202, {"X-Call-Id": headers["X-Call-Id"]}, b"")
            return
        status, resp_headers, payload = gateway.forward(name, target, self.command, headers, body)
        resp_headers.setdefault("x-call-id", headers["X-Call-Id"])
        self._reply(status, resp_headers, payload)


def main(argv: list[str] | None = None) -> int:
    from functions.runtime import logs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=REPO / "stack.yml")
    parser.add_argument("--secrets-dir", type=Path, required=True,
                        help="directory with the function secrets (the local cluster writes one)")
    parser.add_argument("--log-dir", type=Path, default=REPO / ".local" / "logs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logs.configure("gateway")
    gateway = Gateway(read_stack(args.stack), secrets_dir=args.secrets_dir, log_dir=args.log_dir,
                      host=args.host, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gateway.start()
    print(f"gateway on {gateway.url}; function logs in {args.log_dir}", file=sys.stderr)
    stop.wait()
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
