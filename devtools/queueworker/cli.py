"""``python -m devtools.queueworker --nats URL [--stack FILE] [--secrets-dir DIR] [--function NAME=URL ...]
[--gateway URL] [--max-inflight N] [--metrics-port P]``: deliver queued invocations until SIGTERM/SIGINT.

Each function of the stack is delivered to ``--function NAME=URL`` (the function process directly, as
OpenFaaS's queue-worker calls ``http://NAME.NAMESPACE:8080``), else through ``--gateway``'s
``/function/NAME``. Dead letters go to PostgreSQL as ``nlp_writer`` (the ``ner-writer-dsn`` secret in
``--secrets-dir``); without it they are only logged.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from devtools.gateway import read_stack
from devtools.processes import REPO
from devtools.queueworker.policy import DeliveryPolicy
from devtools.queueworker.worker import QueueWorker, Target
from functions.runtime import credentials
from functions.runtime.stores.dead_letters import PgDeadLetterStore

WRITER_SECRET = credentials.SECRETS["ner-writer-dsn"].name


def targets_from_stack(stack: Path, urls: dict[str, str], gateway: str | None, *, max_inflight: int,
                       timeout_s: float = 60.0) -> list[Target]:
    """A :class:`Target` per function of ``stack`` with an address (``urls`` first, else
    ``gateway``/function/NAME); a function without one is not consumed (its messages wait). Raises
    ValueError when no function has an address."""
    targets = []
    for spec in read_stack(stack):
        url = urls.get(spec.name) or (f"{gateway.rstrip('/')}/function/{spec.name}" if gateway else None)
        if url is None:
            continue
        policy = DeliveryPolicy.from_spec(spec, default_max_inflight=max_inflight, timeout_s=timeout_s)
        targets.append(Target(spec.name, url.rstrip("/"), policy))
    if not targets:
        raise ValueError("no function to deliver to: pass --function NAME=URL or --gateway")
    return targets


def dead_letter_store(secrets_dir: Path | None) -> PgDeadLetterStore | None:
    """The writer's dead-letter store, its pool opened; None without the secret."""
    from functions.runtime.db import Database, make_pool

    dsn_file = secrets_dir / WRITER_SECRET if secrets_dir else None
    if dsn_file is None or not dsn_file.is_file():
        return None
    pool = make_pool(dsn_file.read_text().strip(), name="queue-worker", min_size=1, max_size=4, timeout=2.0)
    database = Database(pool, name="primary", statement_timeout_ms=3000, cooldown_s=None)
    database.open()
    return PgDeadLetterStore(database)


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status."""
    from functions.runtime import logs

    parser = argparse.ArgumentParser(prog="python -m devtools.queueworker", description=__doc__.split("\n")[0])
    parser.add_argument("--nats", required=True, help="nats://host:port of the JetStream server")
    parser.add_argument("--stack", type=Path, default=REPO / "stack.yml")
    parser.add_argument("--secrets-dir", type=Path, help="directory with ner-writer-dsn (dead letters)")
    parser.add_argument("--function", action="append", default=[], metavar="NAME=URL")
    parser.add_argument("--gateway", help="deliver through GATEWAY/function/NAME when no --function is given")
    parser.add_argument("--max-inflight", type=int, default=1,
                        help="deliveries at once for a function whose stack.yml sets no max_inflight")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics on this port")
    parser.add_argument("--depth-interval", type=float, default=10.0, help="seconds between queue.depth lines")
    args = parser.parse_args(argv)
    logs.configure("queue-worker", os.environ.get("LOG_LEVEL", "INFO"))
    urls = dict(item.split("=", 1) for item in args.function)
    targets = targets_from_stack(args.stack, urls, args.gateway, max_inflight=args.max_inflight)
    store = dead_letter_store(args.secrets_dir)
    worker = QueueWorker(args.nats, targets, store, depth_interval_s=args.depth_interval)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr="127.0.0.1")
    try:
        asyncio.run(_serve(worker))
    finally:
        if store is not None:
            store.close()
    return 0


async def _serve(worker: QueueWorker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.run(stop)


if __name__ == "__main__":
    sys.exit(main())
