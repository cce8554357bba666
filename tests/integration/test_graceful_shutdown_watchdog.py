"""of-watchdog 0.11.6's SIGTERM sequence (docs/contract.md): the watchdog forwards SIGTERM to the
function at once and keeps proxying NEW requests for its ``healthcheck_interval`` before it drains.

Driven here against the real function process: ``healthcheck_interval=7s`` in the environment (as the
watchdog's own ENV is inherited by its child; no SHUTDOWN_DRAIN_S, so the default derives from it),
SIGTERM at t=0, 8 clients keep sending for 5 s on new connections, then stop. Every request must be
answered 200 and committed, readiness must say 503 from the signal on, and the process exits 0."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
import uuid

import psycopg
import pytest

from tests.fixtures.servers import call

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD_AFTER_SIGNAL_S = 5.0


def test_the_watchdog_sigterm_sequence_loses_no_request_and_exits_zero(function_factory, admin_dsn):
    fn = function_factory("ner-processor", healthcheck_interval="7s")
    run = uuid.uuid4().hex[:8]
    results: list[tuple[str, int | str, float, float]] = []  # (request id, status, sent, answered)
    lock = threading.Lock()
    stop_sending = threading.Event()

    def client(worker: int):
        i = 0
        while not stop_sending.is_set():
            rid = f"{run}-{worker}-{i}"
            sent = time.monotonic()
            try:
                status = call(fn, body={"text": f"Order {i} from Lidl in Hamburg by Jonas {worker}.",
                                        "request_id": rid}, timeout=30)[0]
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
            with lock:
                results.append((rid, status, sent, time.monotonic()))
            i += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    signalled = time.monotonic()
    fn.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready_after_signal = fn.ready_status()
    time.sleep(LOAD_AFTER_SIGNAL_S - 0.3)
    stop_sending.set()
    for thread in threads:
        thread.join(40)
    exit_code = fn.process.wait(timeout=60)

    after_signal = [r for r in results if r[2] >= signalled]
    in_flight_at_signal = [r for r in results if r[2] < signalled < r[3]]
    failed = [r for r in results if r[1] != 200]
    assert not any(thread.is_alive() for thread in threads), "a request was never answered"
    assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
    assert len(after_signal) > 8, "the load must continue after the signal"
    assert in_flight_at_signal, "some requests must have been in flight at the signal"
    assert ready_after_signal == 503, "readiness must report not-ready from the signal on"
    assert exit_code == 0
    acknowledged = [r[0] for r in results]
    with psycopg.connect(admin_dsn) as conn:
        stored = {r[0] for r in conn.execute("SELECT request_id FROM nlp.documents WHERE request_id = ANY(%s)",
                                             (acknowledged,))}
    assert stored == set(acknowledged), "every 2xx must be committed on the primary"
    events = [json.loads(line) for line in fn.raw_log().splitlines() if line.startswith("{")]
    stopping = [e for e in events if e.get("event") == "server.stopping"]
    stopped = [e for e in events if e.get("event") == "server.stopped"]
    assert stopping and stopping[0]["drain_s"] == 7.0
    assert stopped and stopped[-1]["drained"] is True
