"""Fakes for the gateway's own behaviour (framing, errors, pooling): an upstream that echoes what it
received, one that never answers, and a gateway fronting them. The real functions are behind the
gateway in tests/integration/test_local_gateway.py and tests/gateway/test_gateway_load.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from pathlib import Path

import pytest
from aiohttp import web

from devtools.gateway import Gateway, Timeouts, read_stack
from devtools.processes import REPO, free_port
from devtools.queueworker import start_queue_worker
from tests.fixtures.queue import start_private_nats


class EchoUpstream:
    """An aiohttp server on its own loop thread that answers what it received, as JSON:
    {method, path, headers, body_len, body, peer}; ``/big`` answers 3 MiB, ``/slow`` sleeps 5 s."""

    def __init__(self):
        self.port = free_port()
        self.peers: list[tuple] = []
        self.received: dict[str, int] = {}  # X-Call-Id -> body bytes received
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.peers.append(request.transport.get_extra_info("peername"))
        self.received[request.headers.get("X-Call-Id", "")] = len(body)
        if request.path == "/big":
            return web.Response(body=b"x" * (3 * 1024 * 1024), content_type="application/octet-stream")
        if request.path == "/slow":
            await asyncio.sleep(5)
        return web.json_response({"method": request.method, "path": request.path_qs,
                                  "headers": dict(request.headers), "body_len": len(body),
                                  "body": body.decode("utf-8", "replace")})

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@contextlib.contextmanager
def silent_upstream():
    """A port that accepts connections and never answers (a hung function)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def stack_specs():
    return read_stack(REPO / "stack.yml")


@pytest.fixture(scope="module")
def echo():
    with EchoUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def fake_gateway(echo, tmp_path_factory):
    """The gateway fronting the echo upstream as ner-processor, a closed port as entity-stats; its
    /async-function/ goes to a NATS server of its own and a queue-worker delivers to the echo upstream."""
    closed = f"http://127.0.0.1:{free_port()}"
    base = Path(tmp_path_factory.mktemp("gw"))
    nats = start_private_nats(base)
    gw = Gateway(stack_specs(), log_dir=base, port=free_port(),
                 upstreams={"ner-processor": echo.url, "entity-stats": closed},
                 timeouts=Timeouts(upstream_s=2.0, connect_s=1.0), nats_url=nats.url)
    gw.start()
    worker = start_queue_worker(nats.url, base, functions={"ner-processor": echo.url})
    yield gw
    worker.stop()
    gw.stop()
    nats.destroy()


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one HTTP/1.x answer (Content-Length or chunked or until close).
    Returns (status, lower-case headers, body). Raises AssertionError when nothing comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer (got {buf!r})"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if "content-length" in headers:
            need = int(headers["content-length"])
            while len(rest) < need:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            return status, headers, rest[:need]
        while True:  # chunked or close-delimited
            if headers.get("transfer-encoding") == "chunked" and rest.endswith(b"0\r\n\r\n"):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        if headers.get("transfer-encoding") == "chunked":
            rest = dechunk(rest)
        return status, headers, rest


def dechunk(data: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return out
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


def json_body(body: bytes) -> dict:
    return json.loads(body)
