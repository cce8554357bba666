"""``python -m devtools.pgcluster start|stop|status|destroy|failover [--dir DIR] [--pgbouncer]
[--synchronous]``: prints the result as JSON on stdout, an error as JSON ``{error, message}`` on stderr
(exit status 1)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psycopg

from devtools.pgcluster.cluster import LocalCluster
from devtools.pgcluster.state import DEFAULT_BASE_DIR, PgClusterError
from functions.runtime import migrate

COMMANDS = ("start", "stop", "status", "destroy", "failover")


def run(cluster: LocalCluster, command: str) -> dict:
    """Carry out one of :data:`COMMANDS` on ``cluster``; returns what the CLI prints (``status()`` for
    most, plus ``start_seconds`` / ``promote_seconds``)."""
    if command == "failover":
        return cluster.failover()
    if command == "start":
        started = time.perf_counter()
        result = cluster.start()
        result["start_seconds"] = round(time.perf_counter() - started, 2)
        return result
    if command == "stop":
        cluster.stop()
    elif command == "destroy":
        cluster.destroy()
        return {"destroyed": str(cluster.base_dir)}
    return cluster.status()


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (0, or 1 after a cluster, migration, timeout or SQL error)."""
    parser = argparse.ArgumentParser(prog="python -m devtools.pgcluster",
                                     description="local PostgreSQL primary + streaming replica")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--dir", type=Path, default=DEFAULT_BASE_DIR, help=f"base dir (default {DEFAULT_BASE_DIR})")
    parser.add_argument("--pgbouncer", action=argparse.BooleanOptionalAction, default=None,
                        help="run PgBouncer (transaction pooling) in front of the primary (kept once given)")
    parser.add_argument("--synchronous", action=argparse.BooleanOptionalAction, default=None,
                        help="synchronous replication to the replica (kept once given)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.dir, pgbouncer=args.pgbouncer, synchronous=args.synchronous)
    try:
        result = run(cluster, args.command)
    except (PgClusterError, migrate.MigrationError, TimeoutError, psycopg.Error) as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
