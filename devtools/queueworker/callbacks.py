"""Sends the X-Callback-Url POSTs queued on the callback stream, off the delivery path: its own durable
consumer and tasks (at most :data:`CONCURRENCY` at once), so an unreachable or slow callback URL costs
callback slots, never delivery slots.

One POST per invocation: an answer of any status ends it; only a failure to connect is tried again (at
most :data:`devtools.queueworker.outcomes.CALLBACK_ATTEMPTS` times, 1 s and 2 s apart), then the
callback is dropped with a ``queueworker.callback_failed`` log line.

The queue-worker runs the sender as a child process at a lower CPU priority (``python -m
devtools.queueworker.callbacks --nats URL``, :func:`start_sender`): on a machine where the model takes
a core, callbacks use the CPU the deliveries leave, so they never slow the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

import aiohttp
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig

from devtools.jetstream import CALLBACK_STREAM
from devtools.queueworker.outcomes import CALLBACK_ATTEMPTS, CALLBACK_CONNECT_TIMEOUT_S, CALLBACK_TIMEOUT_S, CallbackJob

log = logging.getLogger("devtools.queueworker.callbacks")

CONCURRENCY = 64
DURABLE = "callbacks"


class CallbackSender:
    """Consumes the callback stream with ``js`` and POSTs with ``session``."""

    def __init__(self, js, session: aiohttp.ClientSession, concurrency: int = CONCURRENCY):
        self._js = js
        self._session = session
        self.concurrency = concurrency
        self.sent = 0
        self.dropped = 0
        self._timeout = aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S, sock_connect=CALLBACK_CONNECT_TIMEOUT_S)

    async def run(self) -> None:
        await self._js.add_consumer(CALLBACK_STREAM, ConsumerConfig(
            durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, ack_wait=CALLBACK_TIMEOUT_S * 3, max_deliver=-1,
            max_ack_pending=self.concurrency * 2))
        sub = await self._js.pull_subscribe_bind(DURABLE, stream=CALLBACK_STREAM)
        tasks: set[asyncio.Task] = set()
        room = asyncio.Event()
        while True:
            free = self.concurrency - len(tasks)
            if free <= 0:
                room.clear()
                await room.wait()
                continue
            try:
                msgs = await sub.fetch(free, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.errors.Error, nats.js.errors.Error):
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                task = asyncio.create_task(self._send(msg))
                tasks.add(task)
                task.add_done_callback(lambda t: (tasks.discard(t), room.set()))

    async def _send(self, msg) -> None:
        try:
            job = CallbackJob.decode(msg.headers, msg.data)
        except (KeyError, ValueError, TypeError):
            await msg.term()
            return
        attempt = msg.metadata.num_delivered
        try:
            async with self._session.post(job.url, data=job.body, headers=job.request_headers(),
                                          timeout=self._timeout, allow_redirects=False) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientConnectorError, aiohttp.InvalidURL, ValueError, OSError) as exc:
            if attempt < CALLBACK_ATTEMPTS and not isinstance(exc, aiohttp.InvalidURL | ValueError):
                await msg.nak(delay=float(attempt))
                return
            self._drop(job, type(exc).__name__)
            await msg.ack()
            return
        except (aiohttp.ClientError, TimeoutError) as exc:  # it may have arrived: never sent twice
            self._drop(job, type(exc).__name__)
            await msg.ack()
            return
        self.sent += 1
        await msg.ack()
        log.info("callback sent", extra={"event": "queueworker.callback_sent", "request_id": job.call_id,
                                         "function": job.function, "status_code": status})

    def _drop(self, job: CallbackJob, error: str) -> None:
        self.dropped += 1
        log.warning("callback failed", extra={"event": "queueworker.callback_failed", "request_id": job.call_id,
                                              "function": job.function, "error.type": error})


NICENESS = 10  # below the deliveries, the gateway and the function


async def start_sender(nats_url: str, concurrency: int = CONCURRENCY) -> asyncio.subprocess.Process:
    """The sender as a child process (same stdout: one log), niced by :data:`NICENESS`."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devtools.queueworker.callbacks", "--nats", nats_url, "--concurrency",
        str(concurrency), preexec_fn=lambda: os.nice(NICENESS))


async def stop_sender(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()


async def _run(nats_url: str, concurrency: int) -> None:
    import nats

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await nats.connect(nats_url, name="queue-worker-callbacks", max_reconnect_attempts=-1,
                            reconnect_time_wait=0.5)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        task = asyncio.create_task(CallbackSender(nc.jetstream(timeout=5), session, concurrency).run())
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), 5)


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.queueworker.callbacks --nats URL [--concurrency N]``: send callbacks until SIGTERM."""
    from functions.runtime import logs

    parser = argparse.ArgumentParser(prog="python -m devtools.queueworker.callbacks")
    parser.add_argument("--nats", required=True)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args(argv)
    logs.configure("queue-worker", os.environ.get("LOG_LEVEL", "INFO"))
    asyncio.run(_run(args.nats, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
