"""``python -m devtools.gateway [--stack FILE] [--secrets-dir DIR] [--log-dir DIR] [--host H] [--port P]
[--upstream NAME=URL ...] [--nats URL]``: serve until SIGTERM / SIGINT (``--nats``: the JetStream server
``/async-function/`` publishes to; without it those answer 503)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from devtools.gateway.server import Gateway
from devtools.gateway.stack import read_stack
from devtools.processes import LOCAL_DIR, REPO

DESCRIPTION = "A local stand-in for the OpenFaaS gateway: every function of stack.yml as its own process."


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status. Raises what :meth:`Gateway.start` raises."""
    from functions.runtime import logs

    parser = argparse.ArgumentParser(prog="python -m devtools.gateway", description=DESCRIPTION)
    parser.add_argument("--stack", type=Path, default=REPO / "stack.yml")
    parser.add_argument("--secrets-dir", type=Path,
                        help="directory with the function secrets (the local cluster writes one)")
    parser.add_argument("--log-dir", type=Path, default=LOCAL_DIR / "logs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--upstream", action="append", default=[], metavar="NAME=URL",
                        help="route NAME to a function process that is already running (no process is started)")
    parser.add_argument("--nats", help="nats://host:port of the JetStream server for /async-function/")
    args = parser.parse_args(argv)
    logs.configure("gateway", os.environ.get("LOG_LEVEL", "INFO"))
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    specs = read_stack(args.stack)
    if upstreams:
        specs = [s for s in specs if s.name in upstreams]
    elif args.secrets_dir is None:
        parser.error("--secrets-dir is required unless every function is given with --upstream")
    gateway = Gateway(specs, secrets_dir=args.secrets_dir, log_dir=args.log_dir, host=args.host, port=args.port,
                      upstreams=upstreams, nats_url=args.nats)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gateway.start()
    print(f"gateway on {gateway.url}; function logs in {args.log_dir}", file=sys.stderr, flush=True)
    stop.wait()
    gateway.stop()
    return 0
