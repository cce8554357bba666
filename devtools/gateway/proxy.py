"""``/function/NAME[.NAMESPACE][/path]`` proxied like the OpenFaaS gateway does: prefix stripped,
``X-Call-Id``/``X-Start-Time``/``X-Forwarded-*`` set, bodies streamed (a chunked request goes upstream
chunked, a fixed one fixed), pooled keep-alive connections to each function process,
``X-Duration-Seconds`` on the answer; ``/async-function/...`` handed to the :class:`AsyncQueue`.

Errors: 404 ``not_found`` (unknown function), 400 ``invalid_request`` (unreadable body), 408 ``timeout``
(the caller's body is too slow), 502 ``function_unreachable``, 504 ``upstream_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from devtools.gateway.asyncq import AsyncQueue
from devtools.gateway.errors import bad_body, json_error
from devtools.gateway.upstream import Timeouts, Upstream, lookup

log = logging.getLogger(__name__)

ROUTE = re.compile(r"^/(function|async-function)/([A-Za-z0-9][A-Za-z0-9_-]*)(?:\.([A-Za-z0-9-]+))?(/.*)?$")
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy re-computes itself.
# Expect is answered here (100 Continue) like Go's server does, so it is not forwarded either.
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-authorization", "proxy-authenticate", "proxy-connection", "host", "expect"})
# Recomputed by the server for the caller's connection.
ANSWER_DROP = HOP_HEADERS | {"content-length"}
# Bodies up to this size are read whole before they are forwarded (cheaper per request); larger ones,
# and every chunked body, are streamed upstream as they arrive.
BUFFER_BODY_BYTES = 256 * 1024
# Answers up to this size are read whole; larger ones are streamed to the caller chunk by chunk.
BUFFER_ANSWER_BYTES = 1024 * 1024


class Proxy:
    """Routes invocations to the function processes over one pooled ``aiohttp.ClientSession``."""

    def __init__(self, session: aiohttp.ClientSession, upstreams: dict[str, Upstream], timeouts: Timeouts,
                 queue: AsyncQueue):
        self._session = session
        self.upstreams = upstreams
        self.timeouts = timeouts
        self.queue = queue
        # The whole exchange is bounded by Timeouts.upstream_s around it; this bounds the connect only.
        self._request_timeout = aiohttp.ClientTimeout(total=timeouts.upstream_s, sock_connect=timeouts.connect_s)

    async def invoke(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer a ``/function/...`` or ``/async-function/...`` request."""
        call_id = request.headers.get("X-Call-Id") or str(uuid.uuid4())
        match = ROUTE.match(request.path)
        if not match:
            return json_error(404, "not_found", f"no function at {request.path}", call_id)
        kind, name, namespace, rest = match.groups()
        upstream = lookup(self.upstreams, name, namespace)
        if upstream is None:
            where = f" in namespace {namespace}" if namespace else ""
            return json_error(404, "not_found", f"no function {name}{where} (functions: "
                              f"{', '.join(sorted(self.upstreams))})", call_id)
        target = (rest or "/") + (f"?{request.query_string}" if request.query_string else "")
        if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
            # curl (bodies over 1 MiB) and others wait for this before sending the body
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        headers = forward_headers(request, call_id)
        upstream.invocations += 1
        if kind == "async-function":
            return await self.queue.enqueue(request, upstream, target, headers, call_id)
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

    async def _proxy(self, request: web.BaseRequest, upstream: Upstream, target: str, headers: CIMultiDict,
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
                return bad_body(exc, call_id)
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
                    return await answer(request, resp, call_id, started)
            except TimeoutError:  # aiohttp's total / connect timeouts: invoke() answers 504
                raise
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # Usually a pooled keep-alive connection the function closed between two requests; one
                # retry on a fresh connection is safe because the function is idempotent per X-Call-Id
                # (the request id it stores under). A streamed body cannot be replayed; a refused
                # connect (ClientConnectorError) means the process is not there.
                if request.content.exception() is not None:
                    return bad_body(request.content.exception(), call_id)
                if attempt + 1 < attempts and not isinstance(exc, aiohttp.ClientConnectorError):
                    continue
                return unreachable(upstream, exc, call_id)
            except (aiohttp.ClientPayloadError, HttpProcessingError) as exc:
                if request.content.exception() is not None or isinstance(exc, HttpProcessingError):
                    return bad_body(request.content.exception() or exc, call_id)
                return unreachable(upstream, exc, call_id)
            except aiohttp.ClientError as exc:
                return unreachable(upstream, exc, call_id)
        raise AssertionError("unreachable")  # the loop always returns


def forward_headers(request: web.BaseRequest, call_id: str) -> CIMultiDict:
    """The caller's headers without hop-by-hop ones, plus X-Call-Id, X-Start-Time (ns since the epoch)
    and X-Forwarded-Host / X-Forwarded-For."""
    headers = request.headers.copy()
    for name in HOP_HEADERS:
        headers.popall(name, None)
    headers["X-Call-Id"] = call_id
    headers["X-Start-Time"] = str(time.time_ns())
    headers["X-Forwarded-Host"] = request.host
    remote = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
    return headers


async def answer(request: web.BaseRequest, resp: aiohttp.ClientResponse, call_id: str,
                 started: float) -> web.StreamResponse:
    """The function's answer for the caller: buffered up to BUFFER_ANSWER_BYTES, streamed beyond, with
    X-Call-Id and X-Duration-Seconds (since ``started``, monotonic seconds)."""
    headers = resp.headers.copy()
    for name in ANSWER_DROP:
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


def unreachable(upstream: Upstream, exc: BaseException, call_id: str) -> web.Response:
    """502 ``function_unreachable`` for a function that did not answer."""
    log.warning("function unreachable", extra={"event": "gateway.upstream_unreachable",
                                               "function": upstream.spec.name, "request_id": call_id,
                                               "error.type": type(exc).__name__})
    return json_error(502, "function_unreachable",
                      f"function {upstream.spec.name} did not answer: {type(exc).__name__}", call_id,
                      headers={"X-Call-Id": call_id})
