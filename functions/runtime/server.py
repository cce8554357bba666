"""The upstream HTTP server that of-watchdog (``mode=http``) starts as ``fprocess``.

``python -m functions.runtime.server`` listens on ``HOST:PORT`` at once, then imports
``functions/<FUNCTION_NAME>/handler.py`` (which loads the model and opens pools) and dispatches every
request to ``handle(event, context)`` with the python3-http contract. Until the import finishes every
request gets ``503 not_ready``; ``READY_PATH`` answers from the readiness registry. On SIGTERM it stops
accepting, lets in-flight requests finish, closes the model worker and pools, and exits 0.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from functions.runtime import lifecycle, logs, metrics, readiness, settings
from functions.runtime.contract import Context, Event, Headers, Query
from functions.runtime.errors import BadRequest, FunctionError, PayloadTooLarge, Unavailable
from functions.runtime.http import INTERNAL_ERROR, error_response, request_id
from functions.runtime.settings import Settings

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"  # served by the runtime, never reaches handle()
_CHUNK_LINE_LIMIT = 1024
_MAX_DRAIN_BYTES = 64 * 1024 * 1024


# http.server's own refusals (bad request line, oversized headers, unsupported protocol) and their codes.
_HTTP_ERROR_CODES = {400: "invalid_request", 404: "not_found", 408: "timeout", 414: "uri_too_long",
                     431: "headers_too_large", 501: "method_not_allowed", 505: "http_version_not_supported"}


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is {size} bytes; the limit is {limit}")


def load_handler(function_name: str, functions_dir: Path | str) -> ModuleType:
    """Import ``functions_dir/<function_name>/handler.py``. Raises FileNotFoundError for an unknown
    function and whatever the module raises while importing."""
    path = Path(functions_dir) / function_name / "handler.py"
    if not path.is_file():
        raise FileNotFoundError(f"no handler for function {function_name!r} at {path}")
    module_name = "function_handler_" + function_name.replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "handle", None)):
        raise TypeError(f"{path} does not define handle(event, context)")
    return module


def render(result) -> tuple[int, dict[str, str], bytes]:
    """Turn a handler's return value into (status, headers, body) like the python3-http template,
    except that list bodies are JSON too (the template would send their Python repr)."""
    if result is None:
        return 200, {"Content-Type": "text/html; charset=utf-8"}, b""
    if isinstance(result, tuple):
        padded = tuple(result) + (None, None)
        result = {"body": padded[0], "statusCode": padded[1] or 200, "headers": padded[2]}
    if not isinstance(result, dict):
        return 200, {"Content-Type": "text/html; charset=utf-8"}, str(result).encode("utf-8")
    status = int(result.get("statusCode") or 200)
    headers = {str(k): str(v) for k, v in dict(result.get("headers") or {}).items()}
    body = result.get("body", "")
    if isinstance(body, dict | list):
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    elif isinstance(body, bytes):
        payload = body
    else:
        payload = ("" if body is None else str(body)).encode("utf-8")
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "text/html; charset=utf-8"
    return status, headers, payload


class FunctionServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block exit
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # socketserver prints a multi-line traceback to stderr; keep the log one JSON line per event.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        log.warning("connection error", exc_info=True,
                    extra={"event": "server.connection_error", "error.type": type(exc).__name__})

    def __init__(self, address, settings: Settings):
        super().__init__(address, _RequestHandler)
        self.settings = settings
        self.handler_module: ModuleType | None = None
        self.load_error: str | None = None
        self.context = Context()
        self.draining = False
        self._inflight = 0
        self._inflight_cond = threading.Condition()

    def enter(self) -> bool:
        """Count a request as in flight (every one, even those refused while draining, so that the
        process never exits half-way through writing a response). False when draining."""
        with self._inflight_cond:
            self._inflight += 1
            return not self.draining

    def leave(self) -> None:
        with self._inflight_cond:
            self._inflight -= 1
            self._inflight_cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._inflight_cond:
            while self._inflight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._inflight_cond.wait(remaining)
        return True


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nlp-enrichment"
    sys_version = ""
    server: FunctionServer

    def log_message(self, format, *args):  # noqa: A002 - access lines come from the handler edge
        pass

    def send_error(self, code, message=None, explain=None):
        # http.server's own errors (bad request line, unsupported method) as JSON, never HTML.
        self.close_connection = True
        error = FunctionError(message or "bad request", code=_HTTP_ERROR_CODES.get(code, "invalid_request"),
                              status=code)
        with contextlib.suppress(OSError):  # the client is gone: nothing to answer
            self._error(error)

    def __getattr__(self, name: str):
        # Every method reaches the handler (it answers 405 + Allow itself), not http.server's 501 page.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def do_HEAD(self):
        self._dispatch(head=True)

    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool = False) -> None:
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for key, value in headers.items():
            if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection or self.server.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, body: dict, head: bool = False) -> None:
        self._send(status, {"Content-Type": "application/json"}, json.dumps(body, separators=(",", ":")).encode(),
                   head)

    def _error(self, exc: FunctionError, head: bool = False) -> None:
        """Every JSON error the server itself answers, rendered by the one error edge (http.py)."""
        # Before the request line is parsed there are no headers (send_error on a garbled line).
        headers = getattr(self, "headers", None)
        status, out_headers, payload = render(error_response(exc, request_id(headers)))
        self._send(status, out_headers, payload, head)

    def _read_body(self) -> bytes | None:
        limit = self.server.settings.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(_CHUNK_LINE_LIMIT)
                try:
                    chunk_size = int(line.split(b";", 1)[0].strip(), 16)
                    if chunk_size < 0:
                        raise ValueError("negative chunk size")
                except ValueError:
                    return self._refuse(BadRequest("malformed chunked body"))
                if chunk_size == 0:
                    while self.rfile.readline(_CHUNK_LINE_LIMIT) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += chunk_size
                if size > limit:
                    return self._refuse(_too_large(size, limit))
                chunks.append(self.rfile.read(chunk_size))
                self.rfile.readline(_CHUNK_LINE_LIMIT)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError("negative Content-Length")
        except ValueError:
            return self._refuse(BadRequest("invalid Content-Length"))
        if length > limit:
            self._refuse(_too_large(length, limit))
            self._drain(length)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _drain(self, length: int) -> None:
        # Clients that send the whole body before reading (most do) would otherwise see a reset instead
        # of the 413; bounded so an endless body cannot keep the thread.
        remaining = min(length, _MAX_DRAIN_BYTES)
        try:
            self.connection.settimeout(5)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def _refuse(self, exc: FunctionError) -> None:
        """Answer a malformed request (the connection cannot be reused: the body was not read)."""
        self.close_connection = True
        self._error(exc)

    def _dispatch(self, head: bool = False) -> None:
        server = self.server
        split = urlsplit(self.path)
        if self.command in ("GET", "HEAD") and split.path == server.settings.ready_path:
            self._ready(head)
            return
        if self.command == "GET" and split.path == METRICS_PATH:
            payload, content_type = metrics.exposition()
            self._send(200, {"Content-Type": content_type}, payload)
            return
        accepting = server.enter()
        try:
            if not accepting:
                self.close_connection = True
                self._error(Unavailable("the function is shutting down", code="shutting_down",
                                        retry_after=server.settings.retry_after_s), head)
                return
            body = self._read_body()
            if body is None:
                return
            module = server.handler_module
            if module is None:
                self._error(Unavailable("the function is still starting" if server.load_error is None
                                        else "the function failed to start", code="not_ready",
                                        retry_after=server.settings.retry_after_s), head)
                return
            event = Event(body=body, headers=Headers(self.headers.items()), method=self.command,
                          query=Query(split.query), path=split.path or "/")
            try:
                result = module.handle(event, server.context)
                status, headers, payload = render(result)
            except Exception as exc:  # the handler let something escape: still JSON, never HTML
                log.error("handler raised", exc_info=True,
                          extra={"event": "request.crashed", "error.type": type(exc).__name__})
                self._error(INTERNAL_ERROR, head)
                return
            self._send(status, headers, payload, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            server.leave()

    def _ready(self, head: bool) -> None:
        server = self.server
        if server.draining:
            self._json(503, {"ready": False, "reason": "shutting down"}, head=head)
            return
        if server.handler_module is None:
            reason = "handler failed to load" if server.load_error else "loading"
            self._json(503, {"ready": False, "reason": reason, "checks": {"handler": False}}, head=head)
            return
        checks = readiness.status()
        ok = all(checks.values())
        self._json(200 if ok else 503, {"ready": ok, "checks": checks}, head=head)


def serve(settings: Settings, *, ready_event: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    started = time.perf_counter()
    server = FunctionServer((settings.host, settings.port), settings)
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = threading.Event()

    def request_stop(signum, _frame):
        log.info("stop requested", extra={"event": "server.stopping", "signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http-accept",
                            daemon=True)
    loop.start()
    log.info("listening", extra={"event": "server.listening", "function": settings.function_name,
                                 "port": server.server_address[1]})
    try:
        server.handler_module = load_handler(settings.function_name, settings.functions_dir)
    except Exception as exc:
        server.load_error = type(exc).__name__
        log.error("handler failed to load", exc_info=True,
                  extra={"event": "server.load_failed", "error.type": type(exc).__name__})
        server.shutdown()
        return 1
    log.info("function loaded", extra={"event": "server.started",
                                       "startup_ms": round((time.perf_counter() - started) * 1000, 1)})
    if ready_event is not None:
        ready_event.set()
    while not stop.wait(0.5):
        pass
    server.draining = True
    server.shutdown()  # stop accepting; connection threads already running carry on
    drained = server.wait_idle(timeout=max(1.0, settings.request_timeout_s + 5))
    server.server_close()
    lifecycle.run_shutdown_hooks()
    log.info("stopped", extra={"event": "server.stopped", "drained": drained})
    return 0


def main() -> int:
    process_settings = settings.current()
    logs.configure(process_settings.function_name, process_settings.log_level)
    return serve(process_settings)


if __name__ == "__main__":
    sys.exit(main())
