"""The upstream HTTP server that of-watchdog (``mode=http``) starts as ``fprocess``: uvicorn (httptools
parser, uvloop) serving :class:`EdgeApp`, an ASGI front for the python3-http ``handle(event, context)``.

``python -m functions.runtime.server`` listens on ``HOST:PORT`` at once, then imports
``functions/<FUNCTION_NAME>/handler.py`` (which loads the model and opens pools) and dispatches every
request to ``handle(event, context)`` on a handler thread (the handler blocks on the model worker and the
database; the event loop never does). Until the import finishes every request gets ``503 not_ready``;
``READY_PATH`` answers from the readiness registry; ``GET /metrics`` is the Prometheus exposition.

Every answer the server itself gives is a JSON error with ``X-Request-Id`` (the ``X-Call-Id`` when usable,
else a new UUID): a request the HTTP parser rejects (400 ``invalid_request``, 505 for an unknown HTTP
version), a body over ``MAX_BODY_BYTES`` (413), a body that stalls for ``BODY_READ_TIMEOUT_S`` (408), a
handler that lets an exception escape (500). Header values are encoded so no value can break a
response (:func:`header_value`).

SIGTERM (the watchdog forwards it at once and keeps proxying new requests for its
``healthcheck_interval``): readiness answers 503 from the signal on, requests keep being served for
``SHUTDOWN_DRAIN_S``, then the listener closes, in-flight requests finish, the model worker and the pools
close and the process exits 0. A second SIGTERM/SIGINT ends the drain window early.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from functions.runtime import lifecycle, logs, metrics, readiness, request_context, settings
from functions.runtime.contract import Context, Event, Headers, Query
from functions.runtime.errors import BadRequest, FunctionError, PayloadTooLarge, Unavailable
from functions.runtime.http import INTERNAL_ERROR, error_response
from functions.runtime.request_context import RequestContext
from functions.runtime.settings import Settings

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"  # served by the runtime, never reaches handle()
# A refused body is still read (and dropped) up to this much, so that a client that sends the whole
# body before reading sees the 413 instead of a connection reset; beyond it the connection is closed.
_MAX_DRAIN_BYTES = 64 * 1024 * 1024
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})
# What a header value may carry as is: visible Latin-1 and spaces/tabs (no CR, LF, NUL or controls).
_SAFE_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def header_value(value: object) -> bytes:
    """``value`` as header bytes that cannot break the response: Latin-1 when every character is a
    visible Latin-1 one, else its UTF-8 percent-encoded (RFC 3986) so e.g. a request id ``请求-1`` goes
    out as ``%E8%AF%B7%E6%B1%82-1`` and a CR/LF can never split the header block."""
    text = str(value)
    if _SAFE_HEADER_VALUE.fullmatch(text):
        return text.encode("latin-1")
    return quote(text, safe="".join(chr(c) for c in range(0x21, 0x7f) if chr(c) != "%")).encode("ascii")


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


def _json_bytes(value) -> bytes:
    """``value`` as compact UTF-8 JSON: orjson (several times faster than json on answers), falling back
    to the json module for what orjson refuses (integers beyond 64 bits, exotic key types) so a
    handler's answer never turns into a 500 for its encoding."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


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
        payload = _json_bytes(body)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    elif isinstance(body, bytes):
        payload = body
    else:
        payload = ("" if body is None else str(body)).encode("utf-8")
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "text/html; charset=utf-8"
    return status, headers, payload


def _raw_headers(status: int, headers: dict[str, str], length: int, close: bool) -> list[tuple[bytes, bytes]]:
    out = [(key.encode("latin-1", "replace"), header_value(value)) for key, value in headers.items()
           if key.lower() not in _HOP_BY_HOP]
    out.append((b"content-length", str(length).encode("ascii")))
    if close:
        out.append((b"connection", b"close"))
    return out


def _error_parts(exc: FunctionError, headers) -> tuple[int, dict[str, str], bytes]:
    """Every JSON error the server itself answers, rendered by the one error edge (http.py)."""
    return render(error_response(exc, RequestContext.from_headers(headers).request_id))


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering what the parser rejects (garbled request line, bad
    ``Content-Length``, malformed chunk, unknown HTTP version) with the project's JSON error and
    ``X-Request-Id`` instead of uvicorn's plain-text ``Invalid HTTP request received.``."""

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no websockets here: the request was parsed as HTTP
        except httptools.HttpParserError as exc:
            self._refuse_unparsable(str(exc))

    def _refuse_unparsable(self, reason: str) -> None:
        lowered = reason.lower()
        if "version" in lowered:
            exc = FunctionError(f"unsupported HTTP version: {reason}", code="http_version_not_supported",
                                status=505)
        elif "invalid method" in lowered:
            # A token outside llhttp's method table (e.g. BREW) never reaches handle(): a caller mistake,
            # so 400 (RFC 9110 would allow 501, but a 5xx would page someone for a client's typo).
            exc = BadRequest(f"unknown HTTP method: {reason}", code="unknown_method")
        else:
            exc = BadRequest(f"malformed HTTP request: {reason}")
        # Headers parsed so far (the X-Call-Id may be among them); none when the request line was garbage.
        received = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers or ())
        status, headers, payload = _error_parts(exc, received)
        log.warning("malformed HTTP request", extra={"event": "request.malformed", "status_code": status,
                                                     "error.code": exc.code,
                                                     "request_id": headers.get("X-Request-Id")})
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [name + b": " + value + b"\r\n" for name, value in _raw_headers(status, headers, len(payload),
                                                                               close=True)]
        self.transport.write(b"".join(head) + b"\r\n" + payload)
        self.transport.close()


class HandlerPool:
    """The handler threads: :meth:`run` runs ``fn(*args)`` on an idle thread (a new one while fewer than
    ``max_threads`` exist, else it queues) and resolves an asyncio future on ``loop`` with its return
    value or exception.

    Why not ``loop.run_in_executor``: it chains a ``concurrent.futures.Future`` (a Condition and its lock
    taken on both threads) to an asyncio future per request; the chaining was ~17 % of the event loop's
    CPU at 16 clients (py-spy ``--gil``). Here the thread hands its answer to the loop with one
    ``call_soon_threadsafe``."""

    def __init__(self, max_threads: int, name: str = "handler"):
        self.max_threads = max_threads
        self.name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    def run(self, loop: asyncio.AbstractEventLoop, fn: Callable, *args) -> asyncio.Future:
        """An asyncio future (of ``loop``) for ``fn(*args)`` on a handler thread."""
        future = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread takes this work
            elif len(self._threads) < self.max_threads:
                thread = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put((loop, future, fn, args))
        return future

    def shutdown(self) -> None:
        """Let every thread finish its work and what is queued, then stop them (joined)."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, future, fn, args = item
            try:
                outcome, failed = fn(*args), False
            except BaseException as exc:  # handed to the awaiting coroutine, as run_in_executor would
                outcome, failed = exc, True
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for this answer
                loop.call_soon_threadsafe(_settle, future, outcome, failed)


def _settle(future: asyncio.Future, outcome, failed: bool) -> None:
    if future.cancelled():
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class EdgeApp:
    """The ASGI application: readiness, metrics, body limits and the python3-http dispatch.

    ``handler_module`` is None until the handler imported (503 ``not_ready``); ``draining`` is set at
    SIGTERM (readiness 503, requests still served)."""

    def __init__(self, settings: Settings, handler_module: ModuleType | None = None):
        self.settings = settings
        self.handler_module = handler_module
        self.load_error: str | None = None
        self.draining = False
        self.context = Context()
        # One thread per in-flight request at most: each blocks on the model worker, then the database.
        self.executor = HandlerPool(settings.handler_threads, name="handler")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else is served
            return
        method, path = scope["method"], scope["path"]
        if path == self.settings.ready_path and method in ("GET", "HEAD"):
            status, body = await self.executor.run(asyncio.get_running_loop(), self._ready)
            await self._send(send, status, {"Content-Type": "application/json"}, orjson.dumps(body),
                             head=method == "HEAD")
            return
        if path == METRICS_PATH and method == "GET":
            payload, content_type = metrics.exposition()
            await self._send(send, 200, {"Content-Type": content_type}, payload)
            return
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        body, refusal = await self._read_body(headers, receive)
        if refusal is not None:
            await self._send(send, *_error_parts(refusal, headers), head=method == "HEAD", close=True)
            return
        module = self.handler_module
        if module is None:
            exc = Unavailable("the function is still starting" if self.load_error is None
                              else "the function failed to start", code="not_ready",
                              retry_after=self.settings.retry_after_s)
            await self._send(send, *_error_parts(exc, headers), head=method == "HEAD")
            return
        event = Event(body=body, headers=headers, method=method,
                      query=Query(scope["query_string"].decode("latin-1")), path=path or "/")
        status, out_headers, payload = await self.executor.run(asyncio.get_running_loop(), self._call, module, event)
        await self._send(send, status, out_headers, payload, head=method == "HEAD")

    def _call(self, module: ModuleType, event: Event) -> tuple[int, dict[str, str], bytes]:
        """handle() and the rendering of its answer, on a handler thread, under the request's context
        (created here, once: ``handles_errors`` and the services use it)."""
        ctx = RequestContext.from_headers(event.headers)
        with request_context.active(ctx):
            try:
                return render(module.handle(event, self.context))
            except Exception as exc:  # the handler let something escape: still JSON, never HTML
                log.error("handler raised", exc_info=True, extra={
                    "event": "request.crashed", "request_id": ctx.request_id, "error.type": type(exc).__name__})
                return render(error_response(INTERNAL_ERROR, ctx.request_id))

    async def _read_body(self, headers: Headers, receive) -> tuple[bytes, FunctionError | None]:
        """The request body, or the refusal: 413 over ``max_body_bytes`` (declared or received; the
        rest is drained up to a bound), 408 when the body stalls for ``body_read_timeout_s``."""
        limit = self.settings.max_body_bytes
        declared = headers.get("Content-Length")
        too_large = declared is not None and declared.isdigit() and int(declared) > limit
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                # asyncio.timeout, not wait_for: wait_for wraps every receive() in a new task (2.3% of
                # the process's samples under 16 clients, bench.profile --tiny).
                async with asyncio.timeout(self.settings.body_read_timeout_s):
                    message = await receive()
            except TimeoutError:
                return b"", FunctionError(f"the request body stalled for {self.settings.body_read_timeout_s} s",
                                          code="body_timeout", status=408)
            if message["type"] == "http.disconnect":
                return b"", BadRequest("the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                too_large = True
            if too_large:
                if size > _MAX_DRAIN_BYTES:
                    break
            elif chunk:
                parts.append(chunk)
            if not message.get("more_body", False):
                break
        if too_large:
            return b"", PayloadTooLarge(f"request body is {int(declared) if declared and declared.isdigit() else size}"
                                        f" bytes; the limit is {limit}")
        return b"".join(parts), None

    def _ready(self) -> tuple[int, dict]:
        if self.draining:
            return 503, {"ready": False, "reason": "shutting down"}
        if self.handler_module is None:
            reason = "handler failed to load" if self.load_error else "loading"
            return 503, {"ready": False, "reason": reason, "checks": {"handler": False}}
        checks = readiness.status()
        ok = all(checks.values())
        return (200 if ok else 503), {"ready": ok, "checks": checks}

    @staticmethod
    async def _send(send, status: int, headers: dict[str, str], payload: bytes, head: bool = False,
                    close: bool = False) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": _raw_headers(status, headers, len(payload), close)})
        await send({"type": "http.response.body", "body": b"" if head else payload})


class EdgeServer(uvicorn.Server):
    """uvicorn's server with the watchdog's SIGTERM sequence: the first signal starts the drain window
    (readiness 503, requests still served), the end of the window (or a second signal) stops it."""

    def __init__(self, config: uvicorn.Config, app: EdgeApp, drain_s: float):
        super().__init__(config)
        self.edge = app
        self.drain_s = drain_s
        self.stop_at: float | None = None

    def handle_exit(self, sig: int, frame) -> None:
        # uvicorn would re-raise the signal after shutting down (exit status -15): we exit 0 instead.
        if self.stop_at is None:
            self.edge.draining = True
            self.stop_at = time.monotonic() + self.drain_s
            log.info("stop requested", extra={"event": "server.stopping", "signal": signal.Signals(sig).name,
                                              "drain_s": self.drain_s})
        else:
            self.stop_at = time.monotonic()

    async def on_tick(self, counter: int) -> bool:
        if self.stop_at is not None and time.monotonic() >= self.stop_at:
            self.should_exit = True
        return await super().on_tick(counter)


def make_config(app: EdgeApp, settings: Settings, **overrides) -> uvicorn.Config:
    options = dict(host=settings.host, port=settings.port, http=EdgeProtocol, loop="uvloop", lifespan="off",
                   # proxy_headers: no X-Forwarded-For to rewrite the client address from (nothing reads it)
                   ws="none", interface="asgi3", access_log=False, log_config=None, server_header=False,
                   proxy_headers=False,
                   date_header=True, backlog=1024, timeout_keep_alive=75,
                   # in-flight requests are bounded by the watchdog's write_timeout; ours adds a margin
                   timeout_graceful_shutdown=int(settings.request_timeout_s + 10))
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (plus the drain window); returns the process exit code."""
    started = time.perf_counter()
    app = EdgeApp(settings)
    server = EdgeServer(make_config(app, settings), app, settings.shutdown_drain())
    # uvicorn applies its ``loop`` setting only in Server.run(); this process runs its own coroutine around
    # serve(), so it asks the config for the loop factory (uvloop) itself. asyncio.run() would give the
    # default selector loop.
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        return runner.run(_run(server, app, settings, started))


async def _run(server: EdgeServer, app: EdgeApp, settings: Settings, started: float) -> int:
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if serving.done():  # could not bind
        serving.result()
        return 1
    log.info("listening", extra={"event": "server.listening", "function": settings.function_name,
                                 "port": settings.port})
    loop = asyncio.get_running_loop()
    try:
        # On a thread: the import loads the model (seconds) while the loop answers 503 not_ready.
        app.handler_module = await loop.run_in_executor(None, load_handler, settings.function_name,
                                                        settings.functions_dir)
    except Exception as exc:
        app.load_error = type(exc).__name__
        log.error("handler failed to load", exc_info=True,
                  extra={"event": "server.load_failed", "error.type": type(exc).__name__})
        server.should_exit = True
        await serving
        return 1
    log.info("function loaded", extra={"event": "server.started",
                                       "startup_ms": round((time.perf_counter() - started) * 1000, 1)})
    await serving
    drained = not server.server_state.tasks
    app.executor.shutdown()
    await loop.run_in_executor(None, lifecycle.run_shutdown_hooks)
    log.info("stopped", extra={"event": "server.stopped", "drained": drained})
    return 0


def main() -> int:
    process_settings = settings.current()
    logs.configure(process_settings.function_name, process_settings.log_level)
    return serve(process_settings)


if __name__ == "__main__":
    sys.exit(main())
