"""A local stand-in for the OpenFaaS gateway: every function of stack.yml as its own process.

``python -m devtools.gateway --secrets-dir DIR`` reads stack.yml (and its ``environment_file``), starts
each function with ``python -m functions.runtime.server`` (what the image's of-watchdog runs) and serves
on 127.0.0.1:8080 the routes a faas-cli user touches (``--upstream NAME=URL`` fronts function processes
that are already running instead, as the benchmark does):

- ``/function/NAME[.NAMESPACE][/path]`` (faas-cli always appends the namespace), proxied like the
  gateway does: prefix stripped, ``X-Call-Id``/``X-Start-Time``/``X-Forwarded-*`` set, bodies streamed
  (a chunked request goes upstream chunked, a fixed one fixed), pooled keep-alive connections to each
  function process, ``X-Duration-Seconds`` on the answer;
- ``/async-function/NAME[.NAMESPACE][/path]``: 202 + ``X-Call-Id`` at once, then delivered in the
  background with retries on 429/5xx/unreachable under the same ``X-Call-Id`` (the NATS queue-worker's
  semantics), optional ``X-Callback-Url``;
- ``GET /system/functions``, ``GET /system/function/NAME`` (faas-cli list / describe / ready),
  ``GET /system/logs`` (faas-cli logs: NDJSON ``{name, namespace, instance, timestamp, text}`` from the
  JSON log files the function processes write; ``tail``, ``since``, ``follow`` bounded by
  ``Timeouts.logs_follow_s``, ``instance``), ``GET /system/info`` (faas-cli version), ``GET /healthz``.

Every failure the gateway produces itself is JSON ``{"error", "message", "request_id"}``: bad framing
(400 ``invalid_request``), a too-long URL (414 ``uri_too_long``) or header (431 ``headers_too_large``),
an unknown function (404 ``not_found``), a function that does not answer (502 ``function_unreachable``),
an upstream timeout (504 ``upstream_timeout``), a route this gateway does not serve (501
``not_implemented``). The server is aiohttp (asyncio): one event loop, a listen backlog sized for bursts
(``LISTEN_BACKLOG``), the client side an ``aiohttp.ClientSession`` whose connector keeps connections
alive per function process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import yaml
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

from devtools.processes import LOCAL_DIR, REPO, FunctionProcess, start_function

log = logging.getLogger(__name__)

_ROUTE = re.compile(r"^/(function|async-function)/([A-Za-z0-9][A-Za-z0-9_-]*)(?:\.([A-Za-z0-9-]+))?(/.*)?$")
_SYSTEM_FUNCTION = re.compile(r"^/system/function/([^/]+)$")
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy re-computes itself.
# Expect is answered here (100 Continue) like Go's server does, so it is not forwarded either.
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                          "proxy-authorization", "proxy-authenticate", "proxy-connection", "host", "expect"})
# Recomputed by the server for the caller's connection.
_ANSWER_DROP = _HOP_HEADERS | {"content-length"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Accepted connections waiting for the event loop. Python's socketserver default is 5, aiohttp's 128;
# a burst of a few hundred connects must not overflow it (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096
# The longest request line / header line accepted. Go's net/http (the real gateway) allows 1 MiB of
# headers; the function behind it (http.server) refuses request lines over 64 KiB, so the gateway
# refuses them first, with JSON.
MAX_LINE_BYTES = 65536
# One byte less for a header field, so a LineTooLong error tells which limit it hit (aiohttp's parser
# names neither): the request line's limit -> 414, a header's -> 431.
MAX_FIELD_BYTES = MAX_LINE_BYTES - 1
# Bodies up to this size are read whole before they are forwarded (cheaper per request); larger ones,
# and every chunked body, are streamed upstream as they arrive.
BUFFER_BODY_BYTES = 256 * 1024
# Answers up to this size are read whole; larger ones are streamed to the caller chunk by chunk.
BUFFER_ANSWER_BYTES = 1024 * 1024
# Upper bound on a queued asynchronous invocation (the NATS default max_payload is 1 MiB).
MAX_ASYNC_BODY_BYTES = 1024 * 1024
ENV_PROCESS = "python -m functions.runtime.server"
GATEWAY_VERSION = {"release": "0.27.12-local", "sha": "local", "commit_message": "nlp-enrichment local gateway"}


@dataclass(frozen=True)
class Timeouts:
    """Seconds; the OpenFaaS Helm chart's defaults (gateway.upstreamTimeout 60s < read/writeTimeout 65s),
    so the function's own 504 (REQUEST_TIMEOUT_S 20 s) and the watchdog's (exec_timeout 30 s) answer
    first, as in the cluster."""

    upstream_s: float = 60.0  # connect + send + the function's answer
    read_s: float = 65.0  # reading a buffered request body from the caller
    connect_s: float = 5.0  # opening a connection to a function process
    logs_follow_s: float = 30.0  # `faas-cli logs --follow` streams until this (faas-cli docs: "up to 30s")
    ready_probe_s: float = 2.0  # the readiness probe behind describe / ready / list


@dataclass(frozen=True)
class FunctionSpec:
    """One function of stack.yml, as faas-cli reads it (environment_file merged, inline wins)."""

    name: str
    image: str
    environment: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]
    namespace: str
    secrets: tuple[str, ...] = ()
    limits: dict[str, str] | None = None
    requests: dict[str, str] | None = None
    constraints: tuple[str, ...] = ()
    read_only_root_filesystem: bool = False


def _substitute(text: str, environ: dict[str, str]) -> str:
    return _VAR.sub(lambda m: environ.get(m.group(1), m.group(2) or ""), text)


def read_stack(stack_path: Path, environ: dict[str, str] | None = None) -> list[FunctionSpec]:
    """Functions of a stack.yml with their merged environment (environment_file first, inline wins),
    like ``faas-cli``. Raises ValueError when the file has no functions."""
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
            namespace=spec.get("namespace") or default_ns,
            secrets=tuple(spec.get("secrets") or ()),
            limits=_resources(spec.get("limits")), requests=_resources(spec.get("requests")),
            constraints=tuple(spec.get("constraints") or ()),
            read_only_root_filesystem=bool(spec.get("readonly_root_filesystem", False))))
    return specs


def _resources(value) -> dict[str, str] | None:
    if not value:
        return None
    return {k: _stringify(v) for k, v in value.items() if k in ("memory", "cpu")}


def _stringify(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Settings that only make sense inside the image: locally the server picks its own port and host.
_IMAGE_ONLY = {"PORT", "HOST", "fprocess", "mode", "upstream_url", "SECRETS_DIR", "FUNCTION_NAME"}


def _error_body(code: str, message: str, request_id: str | None) -> bytes:
    return json.dumps({"error": code, "message": message, "request_id": request_id or str(uuid.uuid4())},
                      separators=(",", ":")).encode()


def json_error(status: int, code: str, message: str, request_id: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    """The gateway's own error answer: JSON ``{"error", "message", "request_id"}``."""
    return web.Response(status=status, body=_error_body(code, message, request_id),
                        content_type="application/json", headers=headers)


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's protocol handler, with JSON instead of text/plain for the errors it answers itself
    (unparseable request line or headers, bad Content-Length or chunk framing, over-long lines)."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # the answer has started: nothing else can be sent
            raise ConnectionError("response already started")
        code = "internal_error" if status >= 500 else "invalid_request"
        if isinstance(exc, LineTooLong):
            url = len(exc.args) > 1 and exc.args[1] == MAX_LINE_BYTES
            status, code = (414, "uri_too_long") if url else (431, "headers_too_large")
            text = f"{'request line' if url else 'a header line'} longer than {exc.args[1]} bytes"
        else:
            text = (exc.message if isinstance(exc, HttpProcessingError) and exc.message else message) or "bad request"
            text = str(text).splitlines()[0]
        log.warning("gateway rejected a request", extra={
            "event": "gateway.bad_request", "status_code": status, "error_code": code,
            "error.message": str(text)[:300]})
        resp = web.Response(status=status, body=_error_body(code, str(text)[:300], None),
                            content_type="application/json")
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


@dataclass
class _Upstream:
    """One function process the gateway routes to."""

    spec: FunctionSpec
    url: str  # http://127.0.0.1:PORT
    process: FunctionProcess | None = None  # None when fronting a process someone else started
    invocations: int = 0
    created_at: float = field(default_factory=time.time)

    @property
    def instance(self) -> str:
        return f"{self.spec.name}-{urlsplit(self.url).port}"


class Gateway:
    """Owns the function processes and the proxy server (an aiohttp server on its own event-loop thread).

    ``start()`` / ``stop()`` are synchronous (make run, the tests and the benchmark call them from
    plain threads); everything else runs on the gateway's loop."""

    def __init__(self, specs: list[FunctionSpec], *, secrets_dir: Path | None = None, log_dir: Path,
                 host: str = "127.0.0.1", port: int = 8080, env_overrides: dict[str, str] | None = None,
                 async_attempts: int = 5, timeouts: Timeouts | None = None,
                 upstreams: dict[str, str] | None = None, max_connections_per_function: int = 256):
        self.specs = {spec.name: spec for spec in specs}
        self.secrets_dir = secrets_dir
        self.log_dir = log_dir
        self.host, self.port = host, port
        self.env_overrides = dict(env_overrides or {})
        self.processes: dict[str, FunctionProcess] = {}
        self.async_attempts = async_attempts
        self.timeouts = timeouts or Timeouts()
        self.max_connections = max_connections_per_function
        self._fixed_upstreams = dict(upstreams or {})
        unknown = set(self._fixed_upstreams) - set(self.specs)
        if unknown:
            raise ValueError(f"--upstream for functions not in the stack: {', '.join(sorted(unknown))}")
        self.upstreams: dict[str, _Upstream] = {}
        self.async_delivered: dict[str, int] = {}  # call id -> final status (tests, make run)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._session: aiohttp.ClientSession | None = None
        self._queue: asyncio.Queue | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, wait: bool = True, timeout: float = 90.0) -> None:
        """Start every function process of the stack (in parallel; not those given as ``upstreams``),
        wait until each is ready (``wait``), then serve. Raises RuntimeError/TimeoutError from
        ``FunctionProcess.wait_ready`` and OSError when the port is taken."""
        for name, spec in self.specs.items():
            if name in self._fixed_upstreams:
                self.upstreams[name] = _Upstream(spec, self._fixed_upstreams[name].rstrip("/"))
                continue
            env = {k: v for k, v in spec.environment.items() if k not in _IMAGE_ONLY}
            env.update(self.env_overrides)
            fn = start_function(name, self.log_dir, secrets_dir=self.secrets_dir, wait=False, env=env)
            self.processes[name] = fn
            self.upstreams[name] = _Upstream(spec, fn.url, fn, created_at=fn.started_at)
        if wait:
            for fn in self.processes.values():
                fn.wait_ready(timeout=timeout)
        self._thread = threading.Thread(target=self._run_loop, name="gateway", daemon=True)
        self._thread.start()
        if not self._started.wait(30) and self._start_error is None:
            self._start_error = TimeoutError("the gateway's event loop did not start listening within 30 s")
        if self._start_error is not None:
            self.stop()
            raise self._start_error

    def stop(self) -> None:
        """Stop serving (in-flight requests get up to 5 s), then SIGTERM the function processes."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        for fn in self.processes.values():
            fn.stop()

    def _run_loop(self) -> None:
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._start_error = exc
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._queue = asyncio.Queue()
        # The whole exchange is bounded by Timeouts.upstream_s around it; this bounds the connect only.
        self._request_timeout = aiohttp.ClientTimeout(total=self.timeouts.upstream_s,
                                                      sock_connect=self.timeouts.connect_s)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.max_connections, keepalive_timeout=30,
                                         enable_cleanup_closed=False, force_close=False, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                              cookie_jar=aiohttp.DummyCookieJar(),
                                              timeout=aiohttp.ClientTimeout(total=None),
                                              skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding",
                                                                 "Content-Type"))
        server = _JsonErrorServer(self._handle, handler_cancellation=True, max_line_size=MAX_LINE_BYTES,
                                  max_field_size=MAX_FIELD_BYTES, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=5.0)
        workers = []
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, backlog=LISTEN_BACKLOG, reuse_address=True)
            await site.start()
            if self.port == 0:
                self.port = runner.addresses[0][1]
            workers = [asyncio.create_task(self._async_worker()) for _ in range(4)]
            log.info("gateway listening", extra={"event": "gateway.listening", "url": self.url,
                                                 "functions": sorted(self.upstreams)})
            self._started.set()
            await self._stop.wait()
        finally:
            for task in workers:
                task.cancel()
            await runner.cleanup()
            await self._session.close()

    # -- routing ----------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(("/function/", "/async-function/")):
            return await self._invoke(request)
        if path == "/healthz":
            return web.Response(text="OK")
        if path.startswith("/system/"):
            return await self._system(request)
        if path == "/metrics" or path == "/ui" or path.startswith("/ui/"):
            return json_error(501, "not_implemented", f"{path} is not served by the local gateway (see README: "
                              "The local gateway); each function serves its own /metrics",
                              request.headers.get("X-Call-Id"))
        return json_error(404, "not_found", f"no route {path} on this gateway", request.headers.get("X-Call-Id"))

    async def _system(self, request: web.BaseRequest) -> web.StreamResponse:
        path, call_id = request.path, request.headers.get("X-Call-Id")
        match = _SYSTEM_FUNCTION.match(path)
        served = path in ("/system/functions", "/system/info", "/system/logs") or match
        if not served:
            return json_error(501, "not_implemented",
                              f"{path} is not served by the local gateway (see README: The local gateway)", call_id)
        if request.method not in ("GET", "HEAD"):
            return json_error(
                501 if path == "/system/functions" else 405,
                "not_implemented" if path == "/system/functions" else "method_not_allowed",
                f"{request.method} {path}: the local gateway runs the functions of stack.yml; edit stack.yml and "
                "restart `make run` to deploy, update or delete a function", call_id, headers={"Allow": "GET"})
        namespace = request.query.get("namespace")
        if path == "/system/functions":
            ups = [u for u in self.upstreams.values() if not namespace or u.spec.namespace == namespace]
            return web.json_response(list(await asyncio.gather(*(self._status(u) for u in ups))))
        if path == "/system/info":
            return web.json_response({
                "provider": {"provider": "nlp-enrichment-local", "orchestration": "local-processes",
                             "version": GATEWAY_VERSION},
                "version": GATEWAY_VERSION, "arch": os.uname().machine})
        if path == "/system/logs":
            return await self._logs(request)
        name = match.group(1)
        upstream = self._lookup(name, namespace)
        if upstream is None:
            return json_error(404, "not_found", f"no function {name}" +
                              (f" in namespace {namespace}" if namespace else ""), call_id)
        return web.json_response(await self._status(upstream))

    def _lookup(self, name: str, namespace: str | None) -> _Upstream | None:
        upstream = self.upstreams.get(name)
        if upstream is None or (namespace and namespace != upstream.spec.namespace):
            return None
        return upstream

    async def _status(self, upstream: _Upstream) -> dict:
        """A FunctionStatus of the gateway's swagger (what faas-cli list / describe / ready decode)."""
        spec = upstream.spec
        status = {
            "name": spec.name, "image": spec.image, "namespace": spec.namespace, "envProcess": ENV_PROCESS,
            "envVars": dict(spec.environment), "constraints": list(spec.constraints),
            "secrets": list(spec.secrets), "labels": dict(spec.labels), "annotations": dict(spec.annotations),
            "readOnlyRootFilesystem": spec.read_only_root_filesystem,
            "invocationCount": upstream.invocations, "replicas": 1,
            "availableReplicas": 1 if await self._ready(upstream) else 0,
            "createdAt": datetime.fromtimestamp(upstream.created_at, tz=UTC).isoformat().replace("+00:00", "Z"),
        }
        if spec.limits:
            status["limits"] = spec.limits
        if spec.requests:
            status["requests"] = spec.requests
        memory = _rss_bytes(upstream.process.process.pid) if upstream.process is not None else None
        if memory is not None:
            status["usage"] = {"totalMemoryBytes": memory}
        return status

    async def _ready(self, upstream: _Upstream) -> bool:
        if upstream.process is not None and upstream.process.process.poll() is not None:
            return False
        ready_path = upstream.spec.environment.get("READY_PATH", "/_/ready")
        try:
            async with self._session.get(upstream.url + ready_path,
                                         timeout=aiohttp.ClientTimeout(total=self.timeouts.ready_probe_s)) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    # -- invocations ------------------------------------------------------------------------------

    async def _invoke(self, request: web.BaseRequest) -> web.StreamResponse:
        call_id = request.headers.get("X-Call-Id") or str(uuid.uuid4())
        match = _ROUTE.match(request.path)
        if not match:
            return json_error(404, "not_found", f"no function at {request.path}", call_id)
        kind, name, namespace, rest = match.groups()
        upstream = self._lookup(name, namespace)
        if upstream is None:
            where = f" in namespace {namespace}" if namespace else ""
            return json_error(404, "not_found", f"no function {name}{where} (functions: "
                              f"{', '.join(sorted(self.upstreams))})", call_id)
        target = (rest or "/") + (f"?{request.query_string}" if request.query_string else "")
        if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
            # curl (bodies over 1 MiB) and others wait for this before sending the body
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        headers = self._forward_headers(request, call_id)
        upstream.invocations += 1
        if kind == "async-function":
            return await self._enqueue(request, upstream, target, headers, call_id)
        started = time.monotonic()
        try:
            # The ClientTimeout of each upstream request bounds it (connect, send, answer); only reading a
            # buffered body from the caller needs its own bound (see _proxy).
            return await self._proxy(request, upstream, target, headers, call_id, started)
        except TimeoutError:
            if request.body_exists and not request.content.is_eof():
                # still streaming the caller's body upstream: the caller is the slow side
                resp = json_error(408, "timeout", "request body not received within "
                                  f"{self.timeouts.upstream_s:g} s", call_id, headers={"X-Call-Id": call_id})
                resp.force_close()
                return resp
            log.warning("function timed out", extra={"event": "gateway.upstream_timeout", "function": name,
                                                     "request_id": call_id})
            return json_error(504, "upstream_timeout", f"function {name} did not answer within "
                              f"{self.timeouts.upstream_s:g} s (gateway upstream timeout)", call_id,
                              headers={"X-Call-Id": call_id})

    @staticmethod
    def _forward_headers(request: web.BaseRequest, call_id: str) -> CIMultiDict:
        headers = request.headers.copy()
        for name in _HOP_HEADERS:
            headers.popall(name, None)
        headers["X-Call-Id"] = call_id
        headers["X-Start-Time"] = str(time.time_ns())
        headers["X-Forwarded-Host"] = request.host
        remote = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
        return headers

    async def _proxy(self, request: web.BaseRequest, upstream: _Upstream, target: str, headers: CIMultiDict,
                     call_id: str, started: float) -> web.StreamResponse:
        length = request.content_length
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        data: bytes | aiohttp.StreamReader | None
        if chunked or (length or 0) > BUFFER_BODY_BYTES:
            data = request.content  # streamed: chunked stays chunked, a Content-Length stays fixed
        else:
            try:
                if not length:
                    data = None
                elif request.content.is_eof():  # the whole body has arrived (the common case)
                    data = await request.read()
                else:
                    async with asyncio.timeout(self.timeouts.read_s):
                        data = await request.read()
            except (HttpProcessingError, aiohttp.ClientPayloadError, ValueError) as exc:
                return self._bad_body(exc, call_id)
            except TimeoutError:
                return json_error(408, "timeout", f"request body not received within {self.timeouts.read_s:g} s",
                                  call_id)
        attempts = 2 if not isinstance(data, aiohttp.StreamReader) else 1
        for attempt in range(attempts):
            try:
                resp_cm = self._session.request(
                    request.method, upstream.url + target, data=data, headers=headers, allow_redirects=False,
                    timeout=self._request_timeout)
                async with resp_cm as resp:
                    return await self._answer(request, resp, call_id, started)
            except TimeoutError:  # aiohttp's total / connect timeouts: _invoke answers 504
                raise
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # Usually a pooled keep-alive connection the function closed between two requests; one
                # retry on a fresh connection is safe because the function is idempotent per X-Call-Id
                # (the request id it stores under). A streamed body cannot be replayed; a refused
                # connect (ClientConnectorError) means the process is not there.
                if request.content.exception() is not None:
                    return self._bad_body(request.content.exception(), call_id)
                if attempt + 1 < attempts and not isinstance(exc, aiohttp.ClientConnectorError):
                    continue
                return self._unreachable(upstream, exc, call_id)
            except (aiohttp.ClientPayloadError, HttpProcessingError) as exc:
                if request.content.exception() is not None or isinstance(exc, HttpProcessingError):
                    return self._bad_body(request.content.exception() or exc, call_id)
                return self._unreachable(upstream, exc, call_id)
            except aiohttp.ClientError as exc:
                return self._unreachable(upstream, exc, call_id)
        raise AssertionError("unreachable")  # the loop always returns

    async def _answer(self, request: web.BaseRequest, resp: aiohttp.ClientResponse, call_id: str,
                      started: float) -> web.StreamResponse:
        headers = resp.headers.copy()
        for name in _ANSWER_DROP:
            headers.popall(name, None)
        headers.setdefault("X-Call-Id", call_id)
        length = resp.content_length
        if length is not None and length <= BUFFER_ANSWER_BYTES:
            body = await resp.read()
            headers["X-Duration-Seconds"] = f"{time.monotonic() - started:.6f}"
            return web.Response(status=resp.status, body=body, headers=headers)
        headers["X-Duration-Seconds"] = f"{time.monotonic() - started:.6f}"
        out = web.StreamResponse(status=resp.status, headers=headers)
        if length is not None:
            out.content_length = length
        await out.prepare(request)
        async for chunk in resp.content.iter_any():
            await out.write(chunk)
        await out.write_eof()
        return out

    def _bad_body(self, exc: BaseException | None, call_id: str) -> web.Response:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        log.warning("bad request body", extra={"event": "gateway.bad_request", "request_id": call_id,
                                               "error.message": str(message)[:300]})
        resp = json_error(400, "invalid_request", f"request body could not be read: {message}"[:300], call_id)
        resp.force_close()
        return resp

    def _unreachable(self, upstream: _Upstream, exc: BaseException, call_id: str) -> web.Response:
        log.warning("function unreachable", extra={"event": "gateway.upstream_unreachable",
                                                   "function": upstream.spec.name, "request_id": call_id,
                                                   "error.type": type(exc).__name__})
        return json_error(502, "function_unreachable",
                          f"function {upstream.spec.name} did not answer: {type(exc).__name__}", call_id,
                          headers={"X-Call-Id": call_id})

    # -- async invocations (queue-worker semantics) -----------------------------------------------

    async def _enqueue(self, request: web.BaseRequest, upstream: _Upstream, target: str,
                       headers: CIMultiDict, call_id: str) -> web.Response:
        if request.method != "POST":
            return json_error(405, "method_not_allowed", "asynchronous invocations are POST", call_id,
                              headers={"Allow": "POST"})
        if (request.content_length or 0) > MAX_ASYNC_BODY_BYTES:
            return json_error(413, "payload_too_large",
                              f"asynchronous bodies are limited to {MAX_ASYNC_BODY_BYTES} bytes", call_id)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeouts.read_s):  # the whole body is queued, so read it all
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > MAX_ASYNC_BODY_BYTES:
                        resp = json_error(413, "payload_too_large", "asynchronous bodies are limited to "
                                          f"{MAX_ASYNC_BODY_BYTES} bytes", call_id)
                        resp.force_close()  # the rest of the body is not read
                        return resp
                    chunks.append(chunk)
        except (HttpProcessingError, aiohttp.ClientPayloadError, ValueError) as exc:
            return self._bad_body(exc, call_id)
        except TimeoutError:
            return json_error(408, "timeout", "request body not received in time", call_id)
        body = b"".join(chunks)
        self._queue.put_nowait((upstream, target, headers, body, call_id))
        return web.Response(status=202, headers={"X-Call-Id": call_id})

    async def _async_worker(self) -> None:
        while True:
            upstream, target, headers, body, call_id = await self._queue.get()
            status, resp_headers, payload = 0, {}, b""
            for attempt in range(self.async_attempts):
                status, resp_headers, payload = await self._deliver(upstream, target, headers, body)
                if status and status < 500 and status != 429:
                    break
                delay = min(8.0, 0.5 * 2 ** attempt)
                retry_after = resp_headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = max(delay, float(retry_after))
                if attempt + 1 < self.async_attempts:
                    await asyncio.sleep(delay)
            self.async_delivered[call_id] = status
            log.info("async invocation delivered", extra={
                "event": "gateway.async_delivered", "function": upstream.spec.name, "request_id": call_id,
                "status_code": status})
            callback = headers.get("X-Callback-Url")
            if callback:
                await self._callback(callback, upstream.spec.name, status, resp_headers, payload, call_id)

    async def _deliver(self, upstream: _Upstream, target: str, headers: CIMultiDict,
                       body: bytes) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body); status 0 when the function did not answer."""
        try:
            async with asyncio.timeout(self.timeouts.upstream_s):
                async with self._session.post(upstream.url + target, data=body, headers=headers) as resp:
                    return resp.status, dict(resp.headers), await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("async delivery failed", extra={"event": "gateway.async_attempt_failed",
                                                        "function": upstream.spec.name,
                                                        "request_id": headers.get("X-Call-Id"),
                                                        "error.type": type(exc).__name__})
            return 0, {}, b""

    async def _callback(self, url: str, name: str, status: int, headers: dict, payload: bytes,
                        call_id: str) -> None:
        try:
            async with asyncio.timeout(10):
                async with self._session.post(url, data=payload, headers={
                        "Content-Type": headers.get("Content-Type", "application/json"), "X-Call-Id": call_id,
                        "X-Function-Status": str(status), "X-Function-Name": name}) as resp:
                    await resp.read()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            log.warning("async callback failed", extra={"event": "gateway.callback_failed", "request_id": call_id})

    # -- logs -------------------------------------------------------------------------------------

    async def _logs(self, request: web.BaseRequest) -> web.StreamResponse:
        """faas-provider's log handler contract: NDJSON of {name, namespace, instance, timestamp, text}."""
        query = request.query
        name = query.get("name", "")
        call_id = request.headers.get("X-Call-Id")
        try:
            tail = int(query.getall("tail")[-1]) if "tail" in query else 0
            since = _parse_time(query.getall("since")[-1]) if query.get("since") else None
        except ValueError as exc:
            return json_error(422, "invalid_request", f"could not parse the log request: {exc}", call_id)
        follow = query.getall("follow")[-1] in ("1", "t", "T", "true", "TRUE", "True") if "follow" in query else False
        instance = query.get("instance") or None
        upstream = self._lookup(name, query.get("namespace"))
        if not name:
            return json_error(422, "invalid_request", "the query parameter name is required", call_id)
        if upstream is None or upstream.process is None:
            return json_error(404, "not_found", f"no logs for function {name}", call_id)
        if instance and instance != upstream.instance:
            return json_error(404, "not_found", f"no instance {instance} of {name}", call_id)
        source = _LogSource(upstream)
        # file reads off the event loop: a long log must not stall the proxied requests
        entries = [e for e in await asyncio.to_thread(source.read_new) if since is None or e[0] >= since]
        if tail > 0:
            entries = entries[-tail:]
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"".join(source.encode(e) for e in entries))
        if follow:
            deadline = time.monotonic() + self.timeouts.logs_follow_s
            async for batch in source.follow(deadline):
                await resp.write(b"".join(source.encode(e) for e in batch if since is None or e[0] >= since))
        await resp.write_eof()
        return resp


class _LogSource:
    """The JSON log file of one function process, read as (timestamp, text) entries."""

    def __init__(self, upstream: _Upstream):
        self.upstream = upstream
        self.path = upstream.process.log_path
        self.offset = 0
        self.last_time = datetime.fromtimestamp(upstream.created_at, tz=UTC)

    def read_new(self) -> list[tuple[datetime, str]]:
        """Complete lines written since the last call (a line still being written waits for its newline)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for raw in data[: end + 1].splitlines():
            text = raw.decode("utf-8", errors="replace")
            if not text.strip():
                continue
            self.last_time = _line_time(text) or self.last_time  # a non-JSON line inherits the last time
            out.append((self.last_time, text))
        return out

    async def follow(self, deadline: float) -> AsyncIterator[list[tuple[datetime, str]]]:
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            batch = await asyncio.to_thread(self.read_new)
            if batch:
                yield batch

    def encode(self, entry: tuple[datetime, str]) -> bytes:
        moment, text = entry
        spec = self.upstream.spec
        return json.dumps({"name": spec.name, "namespace": spec.namespace, "instance": self.upstream.instance,
                           "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                           "text": text}, ensure_ascii=False).encode() + b"\n"


def _line_time(text: str) -> datetime | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text).get("@timestamp")
        return _parse_time(value) if isinstance(value, str) else None
    except (ValueError, AttributeError):
        return None


def _parse_time(value: str) -> datetime:
    """RFC 3339 (what faas-cli sends for --since / --since-time). Raises ValueError."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (RFC 3339 expected)")
    return moment


def _loop_factory():
    """uvloop's event loop unless GATEWAY_EVENT_LOOP=asyncio (measured: see the commit adding it)."""
    if os.environ.get("GATEWAY_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    from functions.runtime import logs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=REPO / "stack.yml")
    parser.add_argument("--secrets-dir", type=Path,
                        help="directory with the function secrets (the local cluster writes one)")
    parser.add_argument("--log-dir", type=Path, default=LOCAL_DIR / "logs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--upstream", action="append", default=[], metavar="NAME=URL",
                        help="route NAME to a function process that is already running (no process is started)")
    args = parser.parse_args(argv)
    logs.configure("gateway", os.environ.get("LOG_LEVEL", "INFO"))
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    specs = read_stack(args.stack)
    if upstreams:
        specs = [s for s in specs if s.name in upstreams]
    elif args.secrets_dir is None:
        parser.error("--secrets-dir is required unless every function is given with --upstream")
    gateway = Gateway(specs, secrets_dir=args.secrets_dir, log_dir=args.log_dir, host=args.host, port=args.port,
                      upstreams=upstreams)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gateway.start()
    print(f"gateway on {gateway.url}; function logs in {args.log_dir}", file=sys.stderr, flush=True)
    stop.wait()
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
