"""The queue-worker: consumes the request stream per function and invokes the function with the
semantics of OpenFaaS Standard's JetStream queue-worker (docs/contract.md, "Asynchronous invocation and
the queue-worker").

Shapes::

    worker = QueueWorker(nats_url, [Target("ner-processor", "http://127.0.0.1:5000", policy)],
                         dead_letters=PgDeadLetterStore(...))
    await worker.run(stop_event)                  # until stop_event is set
    decide(policy, attempt, delivery) -> Decision # what one attempt's answer means (pure)

Per function: one durable pull consumer (``<function>-workers``, explicit acks, ``ack_wait`` longer than
a delivery, unlimited deliveries: the worker counts attempts from ``num_delivered``), at most
``max_inflight`` deliveries at once. A retried answer is NAKed with the policy's delay, so the message
waits in JetStream, not in this process; the same ``X-Call-Id`` goes with every attempt. A final outcome
is published (``faas-outcome``), a failure becomes a dead letter (PostgreSQL) before the message is
acknowledged, a callback is queued on its own stream. If the dead letter cannot be written (the primary
is away), the message is NAKed and the letter written on a later delivery: nothing is acknowledged
before it is kept. On stop, deliveries in flight are NAKed at once so a restart picks them up without
waiting for ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiohttp
import nats
import nats.errors
import nats.js.errors
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from devtools.jetstream import OUTCOME_STREAM, REQUEST_STREAM, Invocation, QueueLimits, ensure_streams
from devtools.jetstream.streams import outcome_subject, request_filter
from devtools.queueworker.callbacks import CONCURRENCY, start_sender, stop_sender
from devtools.queueworker.metrics import DEAD_LETTERS, INFLIGHT, OLDEST_AGE, PENDING, PROCESSED
from devtools.queueworker.outcomes import Outcome, callback_job, error_of, letter_of
from devtools.queueworker.policy import DeliveryPolicy
from functions.runtime.db import ServerDown
from functions.runtime.stores.dead_letters import REJECTED, RETRIES_EXHAUSTED, DeadLetterStore

log = logging.getLogger("devtools.queueworker")

FETCH_WAIT_S = 1.0
STOP_GRACE_S = 5.0
DEAD_LETTER_RETRY_S = 5.0  # the dead-letter store is away: deliver the message again this much later
INTERNAL_HEADER = "X-OpenFaaS-Internal"


@dataclass(frozen=True)
class Target:
    """A function the worker delivers to: its name, base URL (``http://host:port``) and policy."""

    name: str
    url: str
    policy: DeliveryPolicy


@dataclass(frozen=True)
class Delivery:
    """One attempt's answer; ``status`` 0 when the function did not answer (connection, timeout)."""

    status: int
    headers: dict[str, str]
    body: bytes
    duration_s: float
    internal: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    """``action``: "succeeded", "retry" (after ``delay_s``) or "failed" (with ``reason``)."""

    action: str
    delay_s: float = 0.0
    reason: str | None = None


def decide(policy: DeliveryPolicy, attempt: int, delivery: Delivery) -> Decision:
    """What attempt number ``attempt`` (1-based) ending in ``delivery`` means under ``policy``."""
    if 200 <= delivery.status < 300:
        return Decision("succeeded")
    retried = policy.retried(delivery.status, internal=delivery.internal)
    if retried and attempt < policy.attempts:
        return Decision("retry", policy.delay(attempt, delivery.headers.get("Retry-After"), delivery.status))
    return Decision("failed", reason=RETRIES_EXHAUSTED if retried else REJECTED)


class QueueWorker:
    """Delivers queued invocations to ``targets`` until :meth:`run`'s event is set."""

    def __init__(self, nats_url: str, targets: list[Target], dead_letters: DeadLetterStore | None, *,
                 limits: QueueLimits | None = None, depth_interval_s: float = 10.0,
                 callback_concurrency: int = CONCURRENCY):
        self.nats_url = nats_url
        self.targets = {t.name: t for t in targets}
        self.dead_letters = dead_letters
        self.limits = limits or QueueLimits()
        self.depth_interval_s = depth_interval_s
        self.callback_concurrency = callback_concurrency  # of the callback process
        self.counts: dict[str, int] = {"succeeded": 0, "failed": 0, "retried": 0}
        self._js = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[str, set[asyncio.Task]] = {}
        self._stopping = False

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set (``ready`` is set once every consumer exists). Raises what
        nats-py raises when no server answers at start."""
        nc = await nats.connect(self.nats_url, name="queue-worker", connect_timeout=2, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.5, error_cb=_quiet)
        self._js = nc.jetstream(timeout=5)
        await ensure_streams(self._js, self.limits)
        subs = {name: await self._subscribe(target) for name, target in self.targets.items()}
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                              cookie_jar=aiohttp.DummyCookieJar())
        sender = await start_sender(self.nats_url, self.callback_concurrency)
        loops = [asyncio.create_task(self._consume(self.targets[name], sub)) for name, sub in subs.items()]
        loops.append(asyncio.create_task(self._report_depth()))
        log.info("queue-worker ready", extra={"event": "queueworker.ready", "functions": sorted(self.targets)})
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            self._stopping = True
            await self._stop_inflight()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await stop_sender(sender)
            await self._session.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)  # not drain(): pull subscriptions would hold it

    async def _subscribe(self, target: Target):
        durable = f"{target.name}-workers"
        policy = target.policy
        config = ConsumerConfig(durable_name=durable, filter_subject=request_filter(target.name),
                                ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                ack_wait=policy.ack_wait_s, max_deliver=-1,
                                max_ack_pending=max(2 * policy.max_inflight, 8), max_waiting=16)
        try:
            await self._js.add_consumer(REQUEST_STREAM, config)  # creates, or updates the same durable
        except nats.js.errors.APIError as exc:  # a setting the server cannot change in place: keep the old
            log.warning("consumer kept as it was", extra={"event": "queueworker.consumer_unchanged",
                                                          "function": target.name, "error.message": str(exc)[:200]})
        return await self._js.pull_subscribe_bind(durable, stream=REQUEST_STREAM)

    async def _consume(self, target: Target, sub) -> None:
        tasks = self._inflight.setdefault(target.name, set())
        room = asyncio.Event()
        while not self._stopping:
            free = target.policy.max_inflight - len(tasks)
            if free <= 0:
                room.clear()
                await room.wait()
                continue
            try:
                msgs = await sub.fetch(free, timeout=FETCH_WAIT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("fetch failed", extra={"event": "queueworker.fetch_failed", "function": target.name,
                                                   "error.type": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                task = asyncio.create_task(self._handle(target, msg))
                tasks.add(task)
                task.add_done_callback(lambda t, ts=tasks: (ts.discard(t), room.set()))

    async def _handle(self, target: Target, msg) -> None:
        try:
            invocation = Invocation.decode(msg.headers, msg.data)
        except ValueError as exc:
            log.error("unreadable queued message", extra={"event": "queueworker.bad_message",
                                                          "function": target.name, "error.message": str(exc)})
            await msg.term()
            return
        attempt = msg.metadata.num_delivered
        if attempt > target.policy.attempts:  # the retries ran out earlier; the letter was not written yet
            outcome = await self._last_outcome(invocation) or _unknown_outcome(invocation, attempt - 1)
            await self._finish(target, msg, invocation, outcome, Delivery(outcome.status, {}, b"", 0.0))
            return
        try:
            delivery = await self._deliver(target, invocation)
        except asyncio.CancelledError:  # stopping: hand the message back at once
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.nak())
            raise
        decision = decide(target.policy, attempt, delivery)
        if decision.action == "retry":
            self.counts["retried"] += 1
            log.info("invocation retried", extra={
                "event": "queueworker.attempt_failed", "function": target.name, "request_id": invocation.call_id,
                "status_code": delivery.status, "attempt": attempt, "retry_in_s": round(decision.delay_s, 3),
                "error.type": delivery.error})
            await msg.nak(delay=decision.delay_s)
            return
        code, message = error_of(delivery.status, delivery.headers, delivery.body)
        outcome = Outcome(invocation.call_id, target.name, "succeeded" if decision.action == "succeeded" else "failed",
                          delivery.status, attempt, decision.reason, code, message, invocation.accepted_at,
                          time.time(), round(delivery.duration_s, 4), invocation.redrive)
        await self._finish(target, msg, invocation, outcome, delivery)

    async def _deliver(self, target: Target, invocation: Invocation) -> Delivery:
        headers = dict(invocation.headers)
        headers["X-Call-Id"] = invocation.call_id
        started = time.perf_counter()
        try:
            async with asyncio.timeout(target.policy.timeout_s):
                async with self._session.post(target.url + invocation.target, data=invocation.body,
                                              headers=headers, allow_redirects=False) as resp:
                    body = await resp.read()
                    answer = dict(resp.headers)
                    return Delivery(resp.status, answer, body, time.perf_counter() - started,
                                    internal=INTERNAL_HEADER in resp.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Delivery(0, {}, b"", time.perf_counter() - started, error=type(exc).__name__)

    async def _finish(self, target: Target, msg, invocation: Invocation, outcome: Outcome,
                      delivery: Delivery) -> None:
        """Keep the outcome, the dead letter (or resolve a redriven one), queue the callback, then ack."""
        await self._js.publish(outcome_subject(invocation.call_id), outcome.as_json())
        if outcome.state == "failed":
            if not await self._keep_letter(target, msg, invocation, outcome):
                return
        elif invocation.redrive and self.dead_letters is not None:
            with contextlib.suppress(ServerDown, psycopg.Error):
                await asyncio.to_thread(self.dead_letters.resolve, target.name, invocation.call_id)
        job = callback_job(invocation, outcome, delivery.headers, delivery.body)
        if job is not None:
            subject, headers, data = job.encode()
            await self._js.publish(subject, data, headers=headers)
        await msg.ack()
        self.counts[outcome.state] += 1
        PROCESSED.labels(target.name, outcome.state).inc()
        log.info("invocation finished", extra={
            "event": "queueworker.invocation_finished", "function": target.name, "request_id": invocation.call_id,
            "status_code": outcome.status, "outcome": outcome.state, "attempts": outcome.attempts,
            "duration_ms": round(outcome.duration_s * 1000, 3),
            "queue_ms": round((outcome.finished_at - invocation.accepted_at) * 1000, 1)})

    async def _keep_letter(self, target: Target, msg, invocation: Invocation, outcome: Outcome) -> bool:
        """Write the dead letter; False (message NAKed for a later try) when the store is away."""
        if self.dead_letters is None:
            log.error("dead letter not kept: no store", extra={"event": "dead_letter.not_kept",
                                                               "function": target.name, "request_id": outcome.call_id})
            return True
        try:
            await asyncio.to_thread(self.dead_letters.record_final, letter_of(invocation, outcome))
        except (ServerDown, psycopg.Error) as exc:
            log.warning("dead letter not written yet", extra={
                "event": "dead_letter.write_failed", "function": target.name, "request_id": outcome.call_id,
                "error.type": type(exc).__name__})
            await msg.nak(delay=DEAD_LETTER_RETRY_S)
            return False
        log.warning("dead letter", extra={
            "event": "dead_letter.recorded", "function": target.name, "request_id": outcome.call_id,
            "dead_letter.status": outcome.status, "reason": outcome.reason, "attempts": outcome.attempts,
            "error.code": outcome.error_code, "recorded_by": "queue-worker"})
        DEAD_LETTERS.labels(target.name, str(outcome.status)).inc()
        return True

    async def _last_outcome(self, invocation: Invocation) -> Outcome | None:
        try:
            msg = await self._js.get_last_msg(OUTCOME_STREAM, outcome_subject(invocation.call_id))
        except (nats.js.errors.NotFoundError, nats.errors.Error):
            return None
        outcome = Outcome.from_json(msg.data)
        return outcome if outcome.redrive == invocation.redrive else None

    async def _stop_inflight(self) -> None:
        """Give deliveries in flight a moment, then cancel them; their messages are NAKed at once."""
        tasks = [t for ts in self._inflight.values() for t in ts]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _report_depth(self) -> None:
        while True:
            await asyncio.sleep(self.depth_interval_s)
            for name in self.targets:
                try:
                    depth = await queue_depth(self._js, name)
                except (nats.errors.Error, nats.js.errors.Error):
                    continue
                PENDING.labels(name).set(depth["queue.pending"])
                INFLIGHT.labels(name).set(depth["queue.in_flight"])
                OLDEST_AGE.labels(name).set(depth["queue.oldest_age_s"])
                log.info("queue depth", extra={"event": "queue.depth", "function": name, **depth})


async def queue_depth(js, function: str) -> dict:
    """``{"queue.pending", "queue.in_flight", "queue.oldest_age_s"}`` of one function's consumer: messages
    not delivered yet, delivered and not acknowledged (running or waiting for a retry), and the age of the
    oldest one still in the stream (0 when empty)."""
    info = await js.consumer_info(REQUEST_STREAM, f"{function}-workers")
    oldest = 0.0
    with contextlib.suppress(nats.js.errors.NotFoundError):
        first = await js.get_msg(REQUEST_STREAM, seq=1, subject=request_filter(function), next=True)
        oldest = max(0.0, time.time() - first.time.timestamp()) if first.time else 0.0
    return {"queue.pending": info.num_pending, "queue.in_flight": info.num_ack_pending,
            "queue.oldest_age_s": round(oldest, 3)}


def _unknown_outcome(invocation: Invocation, attempts: int) -> Outcome:
    return Outcome(invocation.call_id, invocation.function, "failed", 0, max(1, attempts), RETRIES_EXHAUSTED,
                   accepted_at=invocation.accepted_at, finished_at=time.time(), redrive=invocation.redrive)


async def _quiet(exc: Exception) -> None:
    return None
