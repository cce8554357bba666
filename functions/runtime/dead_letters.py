"""List, redrive and purge dead letters: asynchronous invocations that ended without a 2xx
(``nlp.dead_letters``, docs/data-model.md "Dead letters").

Usage (as nlp_owner: the ``migrations-dsn`` secret, like the retention job)::

    python -m functions.runtime.dead_letters list [--state open|redriven|resolved|all] [--function F] [--call-id ID]
    python -m functions.runtime.dead_letters redrive --gateway URL [--call-id ID] [--function F]
    python -m functions.runtime.dead_letters purge --days 30
    python -m functions.runtime.dead_letters count

``list`` prints one JSON line per original invocation (``call_id``, ``function``, ``status``, ``error``,
``attempts``, ``body``, then the rest of the record). ``redrive`` sends each open letter's original request
again to ``GATEWAY/async-function/<function><path>`` under its own call id (so a comment that was stored in
the meantime is answered as a duplicate, never stored twice) with ``X-Redrive: <n>``; it marks the letter
``redriven`` first and opens it again if the gateway does not answer 202; one line per letter. A redriven
invocation that fails again reopens the same letter (no duplicate, and no loop: nothing redrives by itself).
``purge`` deletes letters whose last failure is older than ``--days``. Exit status 1 when the database or the
gateway fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import sys
from urllib.parse import quote, urlsplit

import psycopg

from functions.runtime import db, logs, ops, settings
from functions.runtime.db import Database, ServerDown, make_pool
from functions.runtime.stores.dead_letters import DeadLetter, DeadLetterStore, PgDeadLetterStore

log = logging.getLogger("functions.runtime.dead_letters")

REDRIVE_TIMEOUT_S = 10.0


def open_store(dsn: str) -> PgDeadLetterStore:
    """A store over a one-connection pool (opened; close it after use)."""
    database = Database(make_pool(dsn, name="dead-letters", min_size=0, max_size=1, timeout=5.0),
                        name="primary", statement_timeout_ms=30_000)
    database.open()
    return PgDeadLetterStore(database)


def redrive(store: DeadLetterStore, gateway: str, *, function: str | None = None,
            call_id: str | None = None) -> list[dict]:
    """Send every open letter (of ``function`` / ``call_id`` when given) again through ``gateway``; one
    result dict per letter: ``call_id``, ``function``, ``redriven`` (bool), ``status`` (the gateway's,
    0 when it did not answer) and ``error`` when it was not redriven."""
    results = []
    for letter in store.letters(state="open", function=function, call_id=call_id):
        redrives = store.mark_redriven(letter)  # first: a quick new failure must find it marked
        if redrives is None:  # no longer open (another redrive got there first)
            continue
        status, error = post_again(gateway, letter, redrives)
        if status != 202:
            store.unmark_redriven(letter, redrives)
        results.append({"call_id": letter.call_id, "function": letter.function, "redriven": status == 202,
                        "status": status, "redrive": redrives, **({"error": error} if error else {})})
    return results


def post_again(gateway: str, letter: DeadLetter, redrive: int) -> tuple[int, str | None]:
    """POST the letter's original request to the gateway's async route: (status, error or None)."""
    parts = urlsplit(gateway)
    path = f"/async-function/{quote(letter.function)}{letter.path if letter.path != '/' else ''}"
    if letter.query:
        path += "?" + letter.query
    replaced = {"x-call-id", "x-redrive", "content-type", "content-length"}
    headers = {k: v for k, v in letter.headers.items() if k.lower() not in replaced}
    headers.update({"X-Call-Id": letter.call_id, "X-Redrive": str(redrive)})
    if letter.content_type:
        headers["Content-Type"] = letter.content_type
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname, parts.port, timeout=REDRIVE_TIMEOUT_S)
    try:
        conn.request("POST", path, body=letter.body, headers=headers)
        resp = conn.getresponse()
        answer = resp.read()[:300]
    except (OSError, http.client.HTTPException) as exc:
        return 0, type(exc).__name__
    finally:
        conn.close()
    return resp.status, None if resp.status == 202 else answer.decode("utf-8", "replace")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.runtime.dead_letters",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="print letters as JSON lines")
    listing.add_argument("--state", default="open", choices=("open", "redriven", "resolved", "all"))
    listing.add_argument("--limit", type=int, default=100_000)
    again = commands.add_parser("redrive", help="send open letters again through a gateway")
    again.add_argument("--gateway", required=True, help="e.g. http://127.0.0.1:8080")
    for sub in (listing, again):
        sub.add_argument("--function")
        sub.add_argument("--call-id")
    purge = commands.add_parser("purge", help="delete letters whose last failure is older than --days")
    purge.add_argument("--days", type=float, required=True)
    commands.add_parser("count", help="letters by state, as one JSON line")
    for sub in commands.choices.values():
        ops.add_dsn_arguments(sub)
    args = parser.parse_args(argv)
    dsn = ops.start("dead-letters", args, log, "dead_letters.failed")
    logs.configure("dead-letters", settings.current().log_level, stream=sys.stderr)  # stdout: the letters
    if not dsn:
        return 2
    store = open_store(dsn)
    try:
        return _run(args, store)
    except (ServerDown, psycopg.Error, ValueError) as exc:
        ops.failed(log, "dead_letters.failed", type(exc).__name__, db.safe_message(exc))
        return 1
    finally:
        store.close()


def _run(args: argparse.Namespace, store: PgDeadLetterStore) -> int:
    if args.command == "list":
        state = None if args.state == "all" else args.state
        for letter in store.letters(state=state, function=args.function, call_id=args.call_id, limit=args.limit):
            print(json.dumps(letter.as_line(), ensure_ascii=False), flush=True)
        return 0
    if args.command == "redrive":
        results = redrive(store, args.gateway, function=args.function, call_id=args.call_id)
        for result in results:
            print(json.dumps(result), flush=True)
        return 0 if all(r["redriven"] for r in results) else 1
    if args.command == "purge":
        print(json.dumps({"deleted": store.purge_older(args.days), "days": args.days}), flush=True)
        return 0
    print(json.dumps(store.count_by_state()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
