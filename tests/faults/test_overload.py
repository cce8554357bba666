"""Overload: 64 concurrent clients sending 8-document batches to a process that queues at most 8
documents for the model (MAX_PENDING_DOCS=8).

Excess work must be refused fast with 429 overloaded (or 503) and Retry-After, memory must stay
bounded (VmRSS before/after), the process must not crash, everything acknowledged must be stored, and
a normal request must succeed once the burst is over.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from tests.faults.support import Http, Load, audit, report, rss_kib, status_counts

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

CLIENTS = 64
REQUESTS = 3200
RSS_GROWTH_LIMIT_MIB = 150


def test_more_work_than_capacity_is_refused_with_retry_after_and_memory_stays_bounded(
        function_factory, healthy, admin_dsn):
    fn = function_factory("ner-processor", MAX_PENDING_DOCS="8")
    warm = Load(fn.port, clients=1, batch=8, max_requests=20).start()  # 8 docs: exactly the capacity
    assert warm.wait_for(lambda o: len(o) >= 20, 30)
    assert all(o.ok for o in warm.stop())
    rss_before = rss_kib(fn.process.pid)

    started = time.monotonic()
    burst = Load(fn.port, clients=CLIENTS, batch=8, max_requests=REQUESTS, pause=0.02).start()
    peak = rss_before
    while time.monotonic() - started < 90:
        peak = max(peak, rss_kib(fn.process.pid))
        if burst.wait_for(lambda o: len(o) >= REQUESTS, 0.2):
            break
    outcomes = burst.stop()
    duration = time.monotonic() - started
    rss_after = rss_kib(fn.process.pid)
    probe = Http(fn.port)
    final = probe.post_json({"text": "After the storm: Tim Cook of Apple in Paris.",
                             "request_id": f"{burst.prefix}-final"})
    probe.close()

    result = audit(admin_dsn, outcomes)
    refused = [o for o in outcomes if not o.ok]
    report("overload", clients=CLIENTS, sent=len(outcomes), statuses=status_counts(outcomes),
           error_codes=sorted({o.error for o in refused if o.error}),
           max_refusal_latency_s=round(max((o.elapsed for o in refused), default=0.0), 3),
           accepted_docs_per_s=round(result.acknowledged / duration, 1), lost=len(result.lost),
           rss_before_mib=round(rss_before / 1024, 1), rss_peak_mib=round(peak / 1024, 1),
           rss_after_mib=round(rss_after / 1024, 1), final_status=final.status)

    assert len(outcomes) == REQUESTS
    assert fn.process.poll() is None, "the process crashed under overload"
    assert {o.status for o in refused} <= {429, 503}, status_counts(refused)
    assert any(o.status == 429 for o in refused), "64 clients against 8 pending documents must see 429s"
    assert all(o.retry_after and int(o.retry_after) >= 1 for o in refused), "refusals need Retry-After"
    assert all(o.error == "overloaded" for o in refused if o.status == 429)
    assert result.lost == [] and result.half_written == []
    assert (peak - rss_before) / 1024 < RSS_GROWTH_LIMIT_MIB, "memory grew without bound under overload"
    assert final.status == 200


def test_capacity_is_given_back_when_queued_requests_time_out(function_factory, healthy):
    """Requests that time out while still queued for the model (504) must give their slots back: once
    the burst is over, an idle process accepts a batch of exactly MAX_PENDING_DOCS documents."""
    fn = function_factory("ner-processor", MAX_PENDING_DOCS="64", REQUEST_TIMEOUT_S="0.3")
    long_text = " ".join(["Tim Cook of Apple met Priya Patel of Siemens in Paris on Monday."] * 24)
    statuses = []

    def burst(worker: int):
        client = Http(fn.port)
        try:
            for i in range(6):
                docs = [{"id": f"cap-{run}-{worker}-{i}-{d}", "text": long_text} for d in range(16)]
                statuses.append(client.post_json({"documents": docs}).status)
        finally:
            client.close()

    run = uuid.uuid4().hex[:8]
    threads = [threading.Thread(target=burst, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    time.sleep(3.0)  # idle: the model worker has finished whatever it had started
    client = Http(fn.port)
    full_batch = []
    for attempt in range(3):  # a full-capacity batch, three times one second apart
        docs = [{"id": f"cap-{run}-full{attempt}-{d}", "text": f"Order {d} from Lidl."} for d in range(64)]
        full_batch.append(client.post_json({"documents": docs}).status)
        time.sleep(1.0)
    client.close()
    report("capacity_after_timeouts", burst_statuses=dict(sorted(Counter(statuses).items())),
           idle_full_batch_statuses=full_batch)
    assert set(statuses) <= {200, 429, 503, 504}, Counter(statuses)
    assert fn.process.poll() is None
    assert full_batch[-1] == 200, \
        f"an idle process refuses work after timeouts (leaked model queue capacity): {full_batch}"
