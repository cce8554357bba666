"""``make run``: the whole pipeline on this machine, then keep serving until Ctrl-C.

Starts the local PostgreSQL primary + streaming replica (migrations applied), the rollup worker and the
NATS JetStream server of the asynchronous path (store under build/local/nats), starts every function of
stack.yml behind the local gateway on 127.0.0.1:8080 with the queue-worker delivering ``/async-function/``
calls, feeds the bundled sample comments through ``ner-processor``, waits until the rollups on the replica
count the last write, prints a summary read from the replica through ``entity-stats`` (with the bearer
token of the local secret ``entity-stats-token``), and keeps serving. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devtools.gateway import Gateway, read_stack
from devtools.jetstream import LocalNats
from devtools.pgcluster import LocalCluster
from devtools.processes import LOCAL_DIR, REPO, call, start_rollup_worker
from devtools.queueworker import start_queue_worker


def _say(message: str) -> None:
    print(message, flush=True)


def feed(gateway_url: str, comments: list[dict], concurrency: int = 8,
         timeout: float = 60.0) -> tuple[int, list[str], str | None]:
    """POST every comment to ner-processor through the gateway; returns (persisted count, one line per
    failed comment, highest commit LSN or None). A failed request (connection reset, timeout, non-2xx,
    an answer that is not the expected JSON) is counted and reported, never raised: the feed goes on."""
    from tqdm import tqdm

    failures: list[str] = []
    lsns: list[str] = []

    def send(comment: dict) -> tuple[str, str | None, str | None]:
        """(comment id, commit LSN when persisted, failure reason otherwise)."""
        body = {"text": comment["text"], "request_id": comment["id"], "source": comment.get("source")}
        try:
            status, _, answer = call(gateway_url, "/function/ner-processor", body=body, timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:  # reset, timeout, bad JSON
            return comment["id"], None, f"{type(exc).__name__}: {exc}"[:200]
        if status == 200 and isinstance(answer, dict) and answer.get("persisted"):
            return comment["id"], answer.get("commit_lsn"), None
        detail = answer.get("error") if isinstance(answer, dict) else bytes(answer[:80])
        return comment["id"], None, f"HTTP {status} {detail}"

    ok = 0
    with ThreadPoolExecutor(concurrency) as pool, tqdm(total=len(comments), unit="comment",
                                                       desc="enriching", file=sys.stdout) as bar:
        for comment_id, lsn, failure in pool.map(send, comments):
            bar.update(1)
            if failure is None:
                ok += 1
                if lsn:
                    lsns.append(lsn)
            else:
                failures.append(f"{comment_id}: {failure}")
                bar.set_postfix(failed=len(failures))
    highest = max(lsns, key=_lsn_value) if lsns else None
    return ok, failures, highest


def _lsn_value(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def stats(gateway_url: str, query: str, token: str) -> tuple[int, dict | bytes]:
    """GET entity-stats ``?query`` through the gateway with the bearer token: (status, answer)."""
    status, _, answer = call(gateway_url, f"/function/entity-stats?{query}", method="GET", body=None,
                             content_type=None, headers={"Authorization": f"Bearer {token}"})
    return status, answer


def wait_for_rollups(gateway_url: str, token: str, lsn: str, timeout: float = 30.0) -> bool:
    """Wait until entity-stats reports a rollup watermark at or past ``lsn`` (its answers then count every
    comment committed up to it); False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            status, answer = stats(gateway_url, "window=5m&limit=1", token)
            if status == 200 and _lsn_value(answer["freshness"]["watermark_lsn"]) >= _lsn_value(lsn):
                return True
        time.sleep(0.2)
    return False


def summary(gateway_url: str, token: str, per_label: int = 5) -> str:
    """Top entities per label and the replica's freshness, read through entity-stats (replica); a
    failure is described in the text, never raised."""
    try:
        return _summary(gateway_url, token, per_label)
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
        return f"entity-stats could not be read: {type(exc).__name__}: {exc}"


def _summary(gateway_url: str, token: str, per_label: int) -> str:
    status, stats_24h = stats(gateway_url, "window=24h&limit=50", token)
    if status != 200:
        return f"entity-stats answered HTTP {status}: {stats_24h}"
    fresh = stats_24h["freshness"]
    lines = [f"Read from the {stats_24h['served_by']} (lag {fresh.get('lag_seconds')} s, "
             f"{fresh.get('lag_bytes')} bytes; rollups up to {fresh.get('watermark')})."]
    mix = stats_24h.get("label_mix") or []
    lines.append("Label mix: " + ", ".join(f"{m['label']} {m['count']}" for m in mix[:10]))
    for entry in mix[:8]:
        status, top = stats(gateway_url, f"window=24h&label={entry['label']}&limit={per_label}", token)
        if status == 200:
            names = ", ".join(f"{t['text']} ({t['count']})" for t in top["top_entities"])
            lines.append(f"  {entry['label']:<12} {names}")
    return "\n".join(lines)


def _env_flag(name: str) -> bool | None:
    """True/False from an environment variable (1/true/yes, 0/false/no); None when unset (keep what the
    local cluster was last started with)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return None
    return raw in {"1", "true", "yes", "on"}


def main(argv: list[str] | None = None) -> int:
    from functions.runtime import logs

    parser = argparse.ArgumentParser(description="Run nlp-enrichment locally")
    parser.add_argument("--data-dir", type=Path, default=LOCAL_DIR)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--samples", type=Path, default=REPO / "samples" / "comments.jsonl")
    parser.add_argument("--no-serve", action="store_true", help="stop after the summary (smoke runs)")
    # Environment defaults, so `make run PGBOUNCER=1 SYNCHRONOUS=1` works (make exports them).
    parser.add_argument("--pgbouncer", action=argparse.BooleanOptionalAction, default=_env_flag("PGBOUNCER"),
                        help="writer and entity-stats' primary pool through a local PgBouncer (transaction pooling)")
    parser.add_argument("--synchronous", action=argparse.BooleanOptionalAction, default=_env_flag("SYNCHRONOUS"),
                        help="synchronous replication to the replica")
    args = parser.parse_args(argv)
    logs.configure("local-up", "WARNING")

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    _say("1/4 starting PostgreSQL primary + streaming replica ...")
    cluster = LocalCluster(args.data_dir / "pg", pgbouncer=args.pgbouncer, synchronous=args.synchronous)
    cluster.start()
    gateway = rollups = worker = nats_server = None
    try:
        rollups = start_rollup_worker(args.data_dir / "logs", secrets_dir=cluster.secrets_dir)
        token = (cluster.secrets_dir / "entity-stats-token").read_text(encoding="utf-8").strip()
        status = cluster.status()
        _say(f"    primary 127.0.0.1:{status['primary']['port']}, replica 127.0.0.1:{status['replica']['port']}"
             + (f", PgBouncer 127.0.0.1:{status['pgbouncer']['port']}" if status["pgbouncer"]["running"] else "")
             + (", synchronous replication" if status["synchronous_standby_names"] else ""))
        nats_server = LocalNats(args.data_dir / "nats").start()
        _say(f"    NATS JetStream {nats_server.url.removeprefix('nats://')} (store {nats_server.store_dir})")
        _say(f"2/4 starting functions behind the local gateway on 127.0.0.1:{args.port} ...")
        gateway = Gateway(read_stack(REPO / "stack.yml"), secrets_dir=cluster.secrets_dir,
                          log_dir=args.data_dir / "logs", port=args.port, nats_url=nats_server.url)
        started = time.monotonic()
        gateway.start()
        worker = start_queue_worker(nats_server.url, args.data_dir / "logs", secrets_dir=cluster.secrets_dir,
                                    functions={name: fn.url for name, fn in gateway.processes.items()})
        _say(f"    {', '.join(gateway.processes)} and the rollup worker ready in "
             f"{time.monotonic() - started:.1f} s (JSON logs in {args.data_dir / 'logs'})")
        _say(f"    queue-worker delivering /async-function/ calls ({worker.log_path.name})")
        comments = [json.loads(line) for line in args.samples.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        _say(f"3/4 enriching {len(comments)} sample comments ...")
        ok, failures, last_lsn = feed(gateway.url, comments)
        _say(f"    {ok} persisted on the primary, {len(failures)} failed")
        for failure in failures[:5]:
            _say(f"    ! {failure}")
        if len(failures) > 5:
            _say(f"    ! ... and {len(failures) - 5} more (the stack keeps serving)")
        if last_lsn:
            if wait_for_rollups(gateway.url, token, last_lsn):
                _say(f"    the replica's rollups count everything up to {last_lsn}")
            else:  # the summary then says how fresh it is; keep serving
                _say(f"    ! the replica's rollups have not reached {last_lsn} yet")
        _say("4/4 summary from the read replica:")
        _say(summary(gateway.url, token))
        _say("")
        _say("Try it:")
        _say(f"  echo 'Tim Cook visited Berlin' | faas-cli invoke ner-processor --gateway {gateway.url}")
        _say(f"  curl -s -d @samples/comment.json {gateway.url}/function/ner-processor")
        token_file = cluster.secrets_dir / "entity-stats-token"
        _say(f"  curl -s -H \"Authorization: Bearer $(cat {token_file})\" "
             f"'{gateway.url}/function/entity-stats?window=1h&label=ORG&limit=5'")
        _say(f"  curl -si -d 'Tim Cook visited Berlin' {gateway.url}/async-function/ner-processor   "
             "# then: make dead-letters")
        _say(f"  psql \"$(cat {cluster.secrets_dir / 'stats-replica-dsn'})\" -f sql/analyst/top_entities.sql")
        if args.no_serve:
            return 0 if not failures else 1
        _say("Serving; press Ctrl-C to stop everything.")
        stop.wait()
        return 0
    finally:
        _say("stopping ...")
        # The queue-worker first: deliveries in flight get a few seconds, then go back to the queue.
        if worker is not None:
            worker.stop()
        if gateway is not None:
            gateway.stop()
        if rollups is not None:
            rollups.stop()
        if nats_server is not None:
            nats_server.stop()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
