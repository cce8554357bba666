"""Asynchronous invocations (``/async-function/NAME``) published to NATS JetStream, as OpenFaaS's gateway
does: the whole body is read, published to the request stream (``devtools.jetstream``) and answered 202 +
``X-Call-Id`` only once JetStream has stored it (its publish acknowledgement). The queue-worker
(``devtools.queueworker``) delivers it.

Answers: 202 (stored; a publish retried after a timeout carries the same ``Nats-Msg-Id`` and is stored
once), 405 ``method_not_allowed`` (not POST), 413 ``payload_too_large`` (over
:data:`MAX_ASYNC_BODY_BYTES`), 400/408 for a body that cannot be read in time, 429 ``queue_full`` +
``Retry-After`` (the stream holds its maximum of messages or bytes), 503 ``queue_unavailable`` +
``Retry-After`` (no JetStream server answered within :data:`PUBLISH_DEADLINE_S`). Nothing is queued
unless the answer is 202.

``GET /async-call/<call id>`` answers what became of one call: ``queued`` (still in the stream),
``succeeded`` / ``failed`` (its final outcome, kept 7 days) or 404 ``unknown_call``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import unquote

import aiohttp
import nats
import nats.errors
import nats.js.errors
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from devtools.gateway.errors import bad_body, json_error
from devtools.gateway.upstream import Timeouts, Upstream
from devtools.jetstream import OUTCOME_STREAM, REQUEST_STREAM, Invocation, QueueLimits, call_token, ensure_streams
from devtools.jetstream.streams import MAX_ASYNC_BODY_BYTES, outcome_subject

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 2.0  # one publish attempt waits this long for JetStream's acknowledgement
PUBLISH_DEADLINE_S = 6.0  # then the same message (same Nats-Msg-Id) is published again until this
QUEUE_FULL_RETRY_AFTER_S = 5
UNAVAILABLE_RETRY_AFTER_S = 2
# JetStream's error codes for a stream at its limits with discard=new (messages, bytes) and a store out of
# space; 10054 is "message size exceeds maximum allowed".
FULL_CODES = frozenset({10077, 10078, 10047})
TOO_LARGE_CODE = 10054
# Request headers that are about this hop, not the request: not stored with it.
NOT_STORED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "expect", "host",
                        "te", "trailer", "upgrade"})


class AsyncQueue:
    """The JetStream publisher of the gateway; runs on the gateway's event loop. Without ``nats_url``
    every asynchronous invocation is answered 503 ``queue_unavailable``."""

    def __init__(self, timeouts: Timeouts, nats_url: str | None, limits: QueueLimits | None = None):
        self.timeouts = timeouts
        self.nats_url = nats_url
        self.limits = limits or QueueLimits()
        self._nc = None
        self._js = None
        self.accepted = 0

    async def connect(self) -> None:
        """Connect (reconnecting forever in the background afterwards) and make sure the streams exist.
        Raises what nats-py raises when no server answers at start."""
        if not self.nats_url:
            return
        self._nc = await nats.connect(self.nats_url, name="gateway", connect_timeout=2, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.5, allow_reconnect=True,
                                      error_cb=_ignore, disconnected_cb=_disconnected, reconnected_cb=_reconnected)
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        await ensure_streams(self._js, self.limits)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()

    async def enqueue(self, request: web.BaseRequest, upstream: Upstream, target: str,
                      headers: CIMultiDict, call_id: str) -> web.Response:
        """Read the whole body and publish it for ``upstream`` at ``target`` (path + query): 202 once
        stored, else the JSON errors of the module docstring."""
        if request.method != "POST":
            return json_error(405, "method_not_allowed", "asynchronous invocations are POST", call_id,
                              headers={"Allow": "POST"})
        if (request.content_length or 0) > MAX_ASYNC_BODY_BYTES:
            return _too_large(call_id)
        body = await self._read_body(request, call_id)
        if isinstance(body, web.Response):
            return body
        path, _, query = target.partition("?")
        stored = {k: v for k, v in headers.items() if k.lower() not in NOT_STORED}
        invocation = Invocation(upstream.spec.name, call_id, body, path=path or "/", query=query, headers=stored,
                                accepted_at=time.time(), redrive=_redrive(headers))
        refusal = await self.publish(invocation)
        if refusal is not None:
            return refusal
        self.accepted += 1
        return web.Response(status=202, headers={"X-Call-Id": call_id})

    async def _read_body(self, request: web.BaseRequest, call_id: str) -> bytes | web.Response:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeouts.read_s):  # the whole body is queued, so read it all
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > MAX_ASYNC_BODY_BYTES:
                        resp = _too_large(call_id)
                        resp.force_close()  # the rest of the body is not read
                        return resp
                    chunks.append(chunk)
        except (HttpProcessingError, aiohttp.ClientPayloadError, ValueError) as exc:
            return bad_body(exc, call_id)
        except TimeoutError:
            return json_error(408, "timeout", "request body not received in time", call_id)
        return b"".join(chunks)

    async def publish(self, invocation: Invocation) -> web.Response | None:
        """Publish until JetStream acknowledges it (None) or the answer that refuses it."""
        call_id = invocation.call_id
        if self._js is None:
            return _unavailable(call_id, "no queue is configured for asynchronous invocations")
        subject, headers, data = invocation.encode()
        deadline = time.monotonic() + PUBLISH_DEADLINE_S
        while True:
            try:
                await self._js.publish(subject, data, headers=headers, timeout=PUBLISH_TIMEOUT_S)
                return None
            except nats.js.errors.APIError as exc:
                return _api_refusal(exc, call_id)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
                    nats.errors.OutboundBufferLimitError, nats.errors.StaleConnectionError) as exc:
                # Same subject, same Nats-Msg-Id: if the first attempt was stored after all, the stream drops
                # this one as a duplicate and acknowledges it.
                if time.monotonic() + 0.1 >= deadline:
                    log.warning("queue publish failed", extra={
                        "event": "gateway.async_publish_failed", "function": invocation.function,
                        "request_id": call_id, "error.type": type(exc).__name__})
                    return _unavailable(call_id, "the queue did not acknowledge the invocation in time")
                await asyncio.sleep(0.1)

    async def lookup(self, request: web.BaseRequest) -> web.Response:
        """``GET /async-call/<call id>``: the call's state as JSON (see the module docstring)."""
        call_id = unquote(request.path.removeprefix("/async-call/"))
        if request.method != "GET":
            return json_error(405, "method_not_allowed", "use GET", call_id, headers={"Allow": "GET"})
        if self._js is None:
            return _unavailable(call_id, "no queue is configured")
        try:
            outcome = await self._js.get_last_msg(OUTCOME_STREAM, outcome_subject(call_id))
        except nats.js.errors.NotFoundError:
            outcome = None
        except (nats.errors.Error, nats.js.errors.APIError):
            return _unavailable(call_id, "the queue did not answer")
        if outcome is not None:
            return web.json_response(json.loads(outcome.data))
        found = await self._queued(call_id)
        if found is not None:
            return web.json_response(found)
        return json_error(404, "unknown_call", f"no queued call and no outcome for call id {call_id!r} "
                          "(outcomes are kept 7 days)", call_id)

    async def _queued(self, call_id: str) -> dict | None:
        info = await self._js.stream_info(REQUEST_STREAM, subjects_filter=f"{REQUEST_STREAM}.*.{call_token(call_id)}")
        token_subjects = list(info.state.subjects or {})
        if not token_subjects:
            return None
        msg = await self._js.get_last_msg(REQUEST_STREAM, token_subjects[0])
        invocation = Invocation.decode(msg.headers, msg.data)
        return {"call_id": call_id, "function": invocation.function, "state": "queued",
                "accepted_at": invocation.accepted_at}


def _redrive(headers: CIMultiDict) -> int:
    """The redrive number a dead-letter redrive sends (``X-Redrive: <n>``); 0 otherwise."""
    raw = headers.get("X-Redrive", "")
    return int(raw) if raw.isdigit() and len(raw) < 6 else 0


def _too_large(call_id: str) -> web.Response:
    return json_error(413, "payload_too_large", f"asynchronous bodies are limited to {MAX_ASYNC_BODY_BYTES} "
                      "bytes (the queue's message limit)", call_id)


def _unavailable(call_id: str, message: str) -> web.Response:
    return json_error(503, "queue_unavailable", message, call_id,
                      headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})


def _api_refusal(exc: nats.js.errors.APIError, call_id: str) -> web.Response:
    code = getattr(exc, "err_code", None)
    description = str(getattr(exc, "description", "") or exc)
    if code in FULL_CODES or "maximum" in description.lower() and "exceed" in description.lower():
        log.warning("queue full", extra={"event": "gateway.queue_full", "request_id": call_id,
                                         "error.code": code})
        return json_error(429, "queue_full", "the queue holds its maximum of messages or bytes; retry later",
                          call_id, headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)})
    if code == TOO_LARGE_CODE:
        return _too_large(call_id)
    log.warning("queue refused a publish", extra={"event": "gateway.async_publish_failed", "request_id": call_id,
                                                  "error.code": code, "error.message": description[:200]})
    return _unavailable(call_id, "the queue refused the invocation")


async def _ignore(exc: Exception) -> None:
    return None


async def _disconnected() -> None:
    log.warning("queue disconnected", extra={"event": "gateway.queue_disconnected"})


async def _reconnected() -> None:
    log.info("queue reconnected", extra={"event": "gateway.queue_reconnected"})
