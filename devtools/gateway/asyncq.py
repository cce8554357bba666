"""Asynchronous invocations (``/async-function/NAME``) with the NATS queue-worker's semantics, on an
in-memory queue: 202 + ``X-Call-Id`` at once, then delivered in the background with retries on
429/5xx/unreachable under the same ``X-Call-Id``, and an optional ``X-Callback-Url`` told the result."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from devtools.gateway.errors import bad_body, json_error
from devtools.gateway.upstream import Timeouts, Upstream

log = logging.getLogger(__name__)

# Upper bound on a queued asynchronous invocation (the NATS default max_payload is 1 MiB).
MAX_ASYNC_BODY_BYTES = 1024 * 1024
WORKERS = 4


class AsyncQueue:
    """The queue and its workers; runs on the gateway's event loop.

    ``delivered`` (call id -> final status, 0 when the function never answered) is filled as
    invocations finish; ``attempts`` bounds the deliveries of one invocation."""

    def __init__(self, session: aiohttp.ClientSession, timeouts: Timeouts, attempts: int,
                 delivered: dict[str, int]):
        self._session = session
        self.timeouts = timeouts
        self.attempts = attempts
        self.delivered = delivered
        self._queue: asyncio.Queue = asyncio.Queue()

    def start_workers(self, count: int = WORKERS) -> list[asyncio.Task]:
        """The worker tasks (the caller cancels them on shutdown)."""
        return [asyncio.create_task(self._worker()) for _ in range(count)]

    async def enqueue(self, request: web.BaseRequest, upstream: Upstream, target: str,
                      headers: CIMultiDict, call_id: str) -> web.Response:
        """Read the whole body (at most MAX_ASYNC_BODY_BYTES) and queue it for ``upstream`` at path
        ``target``: 202, or 405 / 413 / 400 / 408 as JSON errors."""
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
            return bad_body(exc, call_id)
        except TimeoutError:
            return json_error(408, "timeout", "request body not received in time", call_id)
        body = b"".join(chunks)
        self._queue.put_nowait((upstream, target, headers, body, call_id))
        return web.Response(status=202, headers={"X-Call-Id": call_id})

    async def _worker(self) -> None:
        while True:
            upstream, target, headers, body, call_id = await self._queue.get()
            status, resp_headers, payload = 0, {}, b""
            for attempt in range(self.attempts):
                status, resp_headers, payload = await self._deliver(upstream, target, headers, body)
                if status and status < 500 and status != 429:
                    break
                delay = min(8.0, 0.5 * 2 ** attempt)
                retry_after = resp_headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = max(delay, float(retry_after))
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(delay)
            self.delivered[call_id] = status
            log.info("async invocation delivered", extra={
                "event": "gateway.async_delivered", "function": upstream.spec.name, "request_id": call_id,
                "status_code": status})
            callback = headers.get("X-Callback-Url")
            if callback:
                await self._callback(callback, upstream.spec.name, status, resp_headers, payload, call_id)

    async def _deliver(self, upstream: Upstream, target: str, headers: CIMultiDict,
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
