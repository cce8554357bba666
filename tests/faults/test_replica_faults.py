"""The read replica fails or falls behind, seen over HTTP by real ner-processor and entity-stats processes.

* Replica stopped: writes are not affected; entity-stats answers from the primary when
  STATS_PRIMARY_FALLBACK=true, else a fast 503 (+ Retry-After), and its readiness says so; after the
  replica is back the same processes read from it again.
* Replica lagging (replay paused): ``freshness`` shows the lag growing, eventual reads are stale, and
  ``consistency=strong`` (or ``min_lsn``) still returns the just-written entities within its bound.

Counts are compared through ``label_mix`` over a 30-day window: the total number of entity mentions,
which moves by exactly the number of entities the ner-processor responses listed.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.faults.support import Http, Load, audit, bearer, report, status_counts, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

FAST_S = 2.0
STRONG_WAIT_MS = 1000


def _stats(client: Http, query: str) -> tuple[int, dict, float, dict]:
    reply = client.request("GET", "/?" + query, content_type=None)
    return reply.status, reply.json, reply.elapsed, reply.headers


def _mentions(body: dict) -> int:
    return sum(row["count"] for row in body["label_mix"])


def test_replica_stopped_writes_unaffected_and_stats_fall_back_or_fail_fast(function_factory, healthy,
                                                                             admin_dsn, stats_token):
    cluster = healthy
    ner = function_factory("ner-processor")
    fallback = function_factory("entity-stats", STATS_PRIMARY_FALLBACK="true")
    strict = function_factory("entity-stats", STATS_PRIMARY_FALLBACK="false")
    fb, st = Http(fallback.port, headers=bearer(stats_token)), Http(strict.port, headers=bearer(stats_token))
    assert _stats(fb, "window=1h")[1]["served_by"] == "replica"
    assert _stats(st, "window=1h")[1]["served_by"] == "replica"

    cluster.stop_replica()
    try:
        load = Load(ner.port, clients=4).start()
        time.sleep(3.0)
        outcomes = load.stop()
        fb_answers = [_stats(fb, "window=1h&limit=5") for _ in range(3)]
        st_answers = [_stats(st, "window=1h&limit=5") for _ in range(3)]
        fb_ready = wait_until(lambda: fallback.ready_status() == 200, 5)
        st_not_ready = wait_until(lambda: strict.ready_status() == 503, 5)
        strong_on_strict = _stats(st, "window=1h&consistency=strong")
    finally:
        cluster.start_replica()
    recovered_at = time.monotonic()
    back = wait_until(lambda: _stats(st, "window=1h")[1].get("served_by") == "replica", 30, 0.25)
    back_s = time.monotonic() - recovered_at
    ready_again = wait_until(lambda: strict.ready_status() == 200, 10)

    result = audit(admin_dsn, outcomes)
    report("replica_stopped", ner_sent=len(outcomes), ner_2xx=sum(o.ok for o in outcomes),
           ner_statuses=status_counts(outcomes), lost=len(result.lost),
           fallback_served_by=sorted({a[1].get("served_by") for a in fb_answers}),
           fallback_max_s=round(max(a[2] for a in fb_answers), 3),
           strict_statuses=[a[0] for a in st_answers], strict_max_s=round(max(a[2] for a in st_answers), 3),
           readiness_fallback_ok=bool(fb_ready), readiness_strict_503=bool(st_not_ready),
           strict_replica_again_after_s=round(back_s, 2))

    assert outcomes and all(o.ok for o in outcomes), f"writes need no replica: {status_counts(outcomes)}"
    assert result.lost == []
    for status, body, elapsed, _ in fb_answers:
        assert status == 200 and body["served_by"] == "primary" and elapsed < FAST_S, (status, body, elapsed)
    for status, body, elapsed, headers in st_answers:
        assert status == 503 and body["error"] == "database_unavailable", (status, body)
        assert int(headers["retry-after"]) >= 1 and elapsed < FAST_S
    assert strong_on_strict[0] == 200 and strong_on_strict[1]["served_by"] == "primary", \
        "consistency=strong reads the primary whatever the fallback setting"
    assert fb_ready, "with fallback allowed, entity-stats stays ready without the replica"
    assert st_not_ready, "without fallback, entity-stats readiness must report the replica outage"
    assert back, "the same entity-stats process reads from the replica again once it is back"
    assert ready_again
    assert ner.process.poll() is None and fallback.process.poll() is None and strict.process.poll() is None


def test_paused_replay_lag_grows_and_strong_reads_return_just_written_data(function_factory, healthy, stats_token,
                                                                          rollups):
    cluster = healthy
    ner = function_factory("ner-processor")
    stats = function_factory("entity-stats", STATS_STRONG_WAIT_MS=str(STRONG_WAIT_MS))
    writer, reader = Http(ner.port), Http(stats.port, headers=bearer(stats_token))
    run = uuid.uuid4().hex[:8]
    window = "window=30d&limit=5"

    cluster.wait_for_replay(rollups.catch_up(), timeout=30)  # eventual answers count everything so far
    status, base, _, _ = _stats(reader, window + "&consistency=strong")
    assert status == 200
    before = _mentions(base)

    def write(i: int) -> tuple[int, str]:
        text = f"Lag check {i}: Tim Cook of Apple met Priya Patel in Paris on Monday."
        reply = writer.post_json({"text": text, "request_id": f"lag-{run}-{i}"})
        assert reply.status == 200, reply.body
        return len(reply.json["entities"]), reply.json["commit_lsn"]

    cluster.pause_replay()
    try:
        added, lsn = 0, None
        for i in range(5):
            n, lsn = write(i)
            added += n
        s1, first, _, _ = _stats(reader, window)
        time.sleep(1.5)
        for i in range(5, 10):
            n, lsn = write(i)
            added += n
        s2, second, _, _ = _stats(reader, window)
        s3, strong, strong_s, _ = _stats(reader, window + "&consistency=strong")
        s4, by_lsn, lsn_s, _ = _stats(reader, f"{window}&min_lsn={lsn}")
    finally:
        cluster.resume_replay()
    cluster.wait_for_replay(rollups.catch_up(), timeout=30)  # the rollups count the new rows too
    caught_up = wait_until(
        lambda: _stats(reader, f"{window}&min_lsn={lsn}")[1].get("served_by") == "replica", 20)
    s5, after, _, _ = _stats(reader, window)

    lag1, lag2 = first["freshness"], second["freshness"]
    report("replica_lagging", entities_written=added, lag_bytes=[lag1["lag_bytes"], lag2["lag_bytes"]],
           lag_seconds=[lag1["lag_seconds"], lag2["lag_seconds"]],
           eventual_mentions_stale=[_mentions(first) - before, _mentions(second) - before],
           strong_served_by=strong["served_by"], strong_s=round(strong_s, 3),
           strong_sees_new=_mentions(strong) - before, min_lsn_served_by=by_lsn["served_by"],
           min_lsn_s=round(lsn_s, 3), after_resume_lag_bytes=after["freshness"]["lag_bytes"])

    assert (s1, s2, s3, s4, s5) == (200,) * 5
    assert added > 0
    # Eventual reads come from the paused replica: stale, and they say so.
    assert first["served_by"] == second["served_by"] == "replica"
    assert _mentions(first) == _mentions(second) == before, "the paused replica cannot have the new rows"
    assert 0 < lag1["lag_bytes"] < lag2["lag_bytes"], "lag_bytes must grow while the primary takes writes"
    if lag1["lag_seconds"] is not None:
        assert lag2["lag_seconds"] >= lag1["lag_seconds"] + 1.0, "lag_seconds must grow with time"
    # Strong reads see everything just written, within STATS_STRONG_WAIT_MS (+ query time).
    assert _mentions(strong) == before + added and strong["served_by"] == "primary"
    assert _mentions(by_lsn) == before + added and by_lsn["served_by"] == "primary"
    assert strong_s < STRONG_WAIT_MS / 1000 + 1.0 and lsn_s < STRONG_WAIT_MS / 1000 + 1.0
    # After resume the replica catches up and serves the new data itself.
    assert caught_up and after["served_by"] == "replica" and _mentions(after) == before + added
