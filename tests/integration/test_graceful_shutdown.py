"""SIGTERM: in-flight requests finish (or are refused with 503), every 2xx is committed, exit code 0."""

from __future__ import annotations

import http.client
import signal
import threading
import time
import uuid

import psycopg
import pytest

from tests.fixtures.servers import call

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sigterm_during_load_drains_and_exits_zero(function_factory, admin_dsn):
    fn = function_factory("ner-processor")
    run = uuid.uuid4().hex[:8]
    results: list[tuple[str, int | str]] = []
    lock = threading.Lock()
    stop_sending = threading.Event()

    def client(worker: int):
        for i in range(200):
            if stop_sending.is_set():
                return
            rid = f"{run}-{worker}-{i}"
            try:
                status = call(fn, body={"text": f"Order {i} from Lidl in Hamburg by Jonas {worker}.",
                                        "request_id": rid}, timeout=30)[0]
            except (OSError, http.client.HTTPException) as exc:  # cut off: never acknowledged
                status = type(exc).__name__
            with lock:
                results.append((rid, status))
            if not isinstance(status, int):
                return

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    fn.process.send_signal(signal.SIGTERM)
    exit_code = fn.process.wait(timeout=40)
    stop_sending.set()
    for thread in threads:
        thread.join(30)

    assert exit_code == 0
    acknowledged = [rid for rid, status in results if status == 200]
    assert acknowledged, "some requests should have completed before the signal"
    assert {s for _, s in results} <= {200, 503, "ConnectionRefusedError", "ConnectionResetError",
                                        "RemoteDisconnected", "BrokenPipeError"}, results
    with psycopg.connect(admin_dsn) as conn:
        stored = {r[0] for r in conn.execute("SELECT request_id FROM nlp.documents WHERE request_id = ANY(%s)",
                                             (acknowledged,))}
    assert stored == set(acknowledged), "every 2xx must be committed on the primary"
    assert any('"event": "server.stopped"' in line for line in fn.raw_log().splitlines())
