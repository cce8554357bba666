"""SIGTERM under heavy load (16 clients, single comments and 8-document batches).

tests/integration/test_graceful_shutdown.py covers the basic drain; here the load is heavier and the
audit stricter: every 2xx is on the primary with exactly the entities it listed, and NO stored document
(acknowledged or not) lacks entity rows, i.e. nothing is half-written; refusals are 503 shutting_down
or connection errors after the listener closed; the process exits 0 after draining.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.faults.support import Load, audit, report, status_counts

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

REFUSALS = {"503", "ConnectionRefusedError", "ConnectionResetError", "RemoteDisconnected", "BrokenPipeError"}


def test_sigterm_under_heavy_load_drains_without_half_written_documents(function_factory, healthy, admin_dsn):
    fn = function_factory("ner-processor")
    singles = Load(fn.port, clients=10, prefix=None, seed=11).start()
    batches = Load(fn.port, clients=6, batch=8, seed=12).start()
    try:
        assert singles.wait_for(lambda o: sum(x.ok for x in o) >= 100, 20)
        assert batches.wait_for(lambda o: sum(x.ok for x in o) >= 10, 20)
        signalled = time.monotonic()
        fn.process.send_signal(signal.SIGTERM)
        exit_code = fn.process.wait(timeout=40)
        exited_s = time.monotonic() - signalled
    finally:
        outcomes = singles.stop() + batches.stop()

    result = audit(admin_dsn, outcomes)
    in_flight_finished = [o for o in outcomes if o.ok and o.started < signalled < o.started + o.elapsed]
    stopped = [json.loads(line) for line in fn.raw_log().splitlines() if '"server.stopped"' in line]
    report("sigterm_under_load", sent=len(outcomes), acknowledged_2xx=sum(o.ok for o in outcomes),
           documents_acknowledged=result.acknowledged, lost=len(result.lost),
           half_written=len(result.half_written), stored_without_ack=result.stored_unacknowledged,
           in_flight_at_signal_finished=len(in_flight_finished), exit_code=exit_code,
           exit_after_s=round(exited_s, 2), statuses=status_counts(outcomes),
           error_codes=sorted({o.error for o in outcomes if o.error}))

    assert exit_code == 0
    assert result.lost == [], f"acknowledged but not (fully) stored: {result.lost[:10]}"
    assert result.half_written == [], f"half-written documents: {result.half_written[:10]}"
    refused = {str(o.status) for o in outcomes if not o.ok}
    assert refused <= REFUSALS, refused
    assert {o.error for o in outcomes if o.status == 503} <= {"shutting_down"}
    assert stopped and stopped[-1].get("drained") is True, "the server must report a complete drain"
