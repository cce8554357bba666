"""Primary down: fast 503 + Retry-After, readiness false; primary back: same process serves 2xx again."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.fixtures.servers import call

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_primary_outage_gives_fast_503_then_recovers_without_restart(function_factory, pg_cluster):
    fn = function_factory("ner-processor")
    assert call(fn, body={"text": "Warm-up at IKEA in Stockholm."})[0] == 200
    pid = fn.process.pid
    pg_cluster.stop_primary(mode="immediate")
    try:
        timings = []
        for _ in range(3):
            started = time.monotonic()
            status, headers, body = call(fn, body={"text": f"Outage test {uuid.uuid4()} at Oracle in Austin."})
            timings.append(time.monotonic() - started)
            assert status == 503, body
            assert body["error"] in {"database_unavailable", "database_timeout"}
            assert int(headers["retry-after"]) >= 1
        assert max(timings) < 2.0, f"503 must come within 2 s, took {timings}"
        assert fn.ready_status() == 503
    finally:
        pg_cluster.start_primary()
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        status, _, body = call(fn, body={"text": f"Back again {uuid.uuid4()}: Nokia in Helsinki."})
        if status == 200:
            break
        time.sleep(0.25)
    assert status == 200, "the same process must recover once the primary is back"
    assert fn.process.pid == pid and fn.process.poll() is None
    fn.wait_ready(timeout=10)
