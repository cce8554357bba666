"""``Gateway``: owns the function processes and serves the proxy and the system API on 127.0.0.1.

The server is aiohttp (asyncio) on its own event-loop thread: one event loop, a listen backlog sized
for bursts (``LISTEN_BACKLOG``), the client side one ``aiohttp.ClientSession`` whose connector keeps
connections alive per function process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from pathlib import Path

import aiohttp
from aiohttp import web

from devtools.gateway.asyncq import AsyncQueue
from devtools.gateway.errors import MAX_FIELD_BYTES, MAX_LINE_BYTES, JsonErrorServer, json_error
from devtools.gateway.proxy import Proxy
from devtools.gateway.stack import FunctionSpec
from devtools.gateway.system import SystemApi
from devtools.gateway.upstream import Timeouts, Upstream
from devtools.jetstream import QueueLimits
from devtools.processes import FunctionProcess, start_function

log = logging.getLogger(__name__)

# Accepted connections waiting for the event loop. Python's socketserver default is 5, aiohttp's 128;
# a burst of a few hundred connects must not overflow it (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096


class Gateway:
    """Owns the function processes and the proxy server (an aiohttp server on its own event-loop thread).

    ``start()`` / ``stop()`` are synchronous (make run, the tests and the benchmark call them from
    plain threads); everything else runs on the gateway's loop."""

    def __init__(self, specs: list[FunctionSpec], *, secrets_dir: Path | None = None, log_dir: Path,
                 host: str = "127.0.0.1", port: int = 8080, env_overrides: dict[str, str] | None = None,
                 timeouts: Timeouts | None = None, upstreams: dict[str, str] | None = None,
                 max_connections_per_function: int = 256, nats_url: str | None = None,
                 queue_limits: QueueLimits | None = None):
        """``specs``: from :func:`read_stack`; ``upstreams``: function name -> URL of a process that is
        already running (none is started for it); ``port`` 0 picks a free one (read ``port`` after
        ``start()``); ``nats_url``: the JetStream server of ``/async-function/`` (without one those answer
        503 ``queue_unavailable``). Raises ValueError for an upstream that is not in ``specs``."""
        self.specs = {spec.name: spec for spec in specs}
        self.secrets_dir = secrets_dir
        self.log_dir = log_dir
        self.host, self.port = host, port
        self.env_overrides = dict(env_overrides or {})
        self.processes: dict[str, FunctionProcess] = {}
        self.nats_url = nats_url
        self.queue_limits = queue_limits
        self.timeouts = timeouts or Timeouts()
        self.max_connections = max_connections_per_function
        self._fixed_upstreams = dict(upstreams or {})
        unknown = set(self._fixed_upstreams) - set(self.specs)
        if unknown:
            raise ValueError(f"--upstream for functions not in the stack: {', '.join(sorted(unknown))}")
        self.upstreams: dict[str, Upstream] = {}
        self.queue: AsyncQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._proxy: Proxy | None = None
        self._system: SystemApi | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` the gateway serves on."""
        return f"http://{self.host}:{self.port}"

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, wait: bool = True, timeout: float = 90.0) -> None:
        """Start every function process of the stack (in parallel; not those given as ``upstreams``),
        wait until each is ready (``wait``, at most ``timeout`` seconds each), then serve. Raises
        RuntimeError/TimeoutError from ``FunctionProcess.wait_ready`` and OSError when the port is taken."""
        for name, spec in self.specs.items():
            if name in self._fixed_upstreams:
                self.upstreams[name] = Upstream(spec, self._fixed_upstreams[name].rstrip("/"))
                continue
            env = spec.local_environment(self.env_overrides)
            fn = start_function(name, self.log_dir, secrets_dir=self.secrets_dir, wait=False, env=env)
            self.processes[name] = fn
            self.upstreams[name] = Upstream(spec, fn.url, fn, created_at=fn.started_at)
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
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._start_error = exc
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.max_connections, keepalive_timeout=30,
                                         enable_cleanup_closed=False, force_close=False, ttl_dns_cache=None)
        session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                        cookie_jar=aiohttp.DummyCookieJar(),
                                        timeout=aiohttp.ClientTimeout(total=None),
                                        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding",
                                                           "Content-Type"))
        queue = self.queue = AsyncQueue(self.timeouts, self.nats_url, self.queue_limits)
        self._proxy = Proxy(session, self.upstreams, self.timeouts, queue)
        self._system = SystemApi(session, self.upstreams, self.timeouts)
        server = JsonErrorServer(self._handle, handler_cancellation=True, max_line_size=MAX_LINE_BYTES,
                                 max_field_size=MAX_FIELD_BYTES, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=5.0)
        try:
            await queue.connect()
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, backlog=LISTEN_BACKLOG, reuse_address=True)
            await site.start()
            if self.port == 0:
                self.port = runner.addresses[0][1]
            log.info("gateway listening", extra={"event": "gateway.listening", "url": self.url,
                                                 "functions": sorted(self.upstreams)})
            self._started.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await queue.close()
            await session.close()

    # -- routing ----------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(("/function/", "/async-function/")):
            return await self._proxy.invoke(request)
        if path.startswith("/async-call/"):
            return await self.queue.lookup(request)
        if path == "/healthz":
            return web.Response(text="OK")
        if path.startswith("/system/"):
            return await self._system.handle(request)
        if path == "/metrics" or path == "/ui" or path.startswith("/ui/"):
            return json_error(501, "not_implemented", f"{path} is not served by the local gateway (see "
                              "docs/operations.md, The local gateway); each function serves its own /metrics",
                              request.headers.get("X-Call-Id"))
        return json_error(404, "not_found", f"no route {path} on this gateway", request.headers.get("X-Call-Id"))


def loop_factory():
    """uvloop's event loop unless GATEWAY_EVENT_LOOP=asyncio. The proxy's time is mostly its socket sends
    and receives, which cost about a third less CPU per request on uvloop than on asyncio's own loop."""
    if os.environ.get("GATEWAY_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop
