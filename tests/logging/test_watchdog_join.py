"""The join against real functions: a real ner-processor and entity-stats (over HTTP, real PostgreSQL) answer
calls carrying the gateway's X-Call-Id; their real log lines, next to the access line of-watchdog 0.11.6 writes
for each answer (its exact format: tests/logging/fixtures/watchdog-lines.txt; the binary itself cannot be
installed here), go through the Filebeat configuration and the Logstash pipeline (tests/logging/pipeline_sim.py),
and the request trail (request_id) shows both lines of a request with the same status.

Uses the ``ner_server`` / ``stats_server`` fixtures of tests/fixtures/servers.py; skipped where unavailable.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus

import pytest

from tests.logging import fieldrefs, pipeline_sim

pytestmark = pytest.mark.integration

FAILURE_TAGS = {"_jsonparsefailure", "_grokparsefailure"}


def _server(request, name: str):
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.skip(f"the {name} fixture (tests/fixtures/servers.py) is not available")


def human_size(size: float) -> str:
    """github.com/docker/go-units HumanSize, which the access line uses: decimal units, 4 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    index = 0
    while size >= 1000 and index < len(units) - 1:
        size /= 1000
        index += 1
    return f"{size:.4g}{units[index]}"


def _cri_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class Watchdog:
    """Calls a real function the way of-watchdog proxies them, and writes the access line it would write
    (log_callid=true): ``<method> <uri> - <status> <reason> - ContentLength: <size> (<seconds>s) [<call id>]``."""

    def __init__(self):
        self.records: list[tuple[str, str, str]] = []

    def call(self, server, path: str, *, method: str = "POST", body=None, content_type="application/json",
             call_id: str | None = None, headers: dict | None = None):
        from devtools.processes import call

        headers = {**(headers or {}), **({"X-Call-Id": call_id} if call_id else {})}
        started = time.perf_counter()
        status, response_headers, payload = call(server, path, method=method, body=body,
                                                 content_type=content_type, headers=headers)
        seconds = time.perf_counter() - started
        when = datetime.now(tz=UTC)
        length = int(response_headers.get("content-length", "-1"))
        line = (f"{when.strftime('%Y/%m/%d %H:%M:%S')} {method} {path} - {status} {HTTPStatus(status).phrase}"
                f" - ContentLength: {human_size(length)} ({seconds:.4f}s) [{call_id or 'none'}]")
        self.records.append((_cri_time(when), "stderr", line))
        return status, response_headers, payload


def _pod_events(server, watchdog_records, pod: pipeline_sim.Pod) -> list[dict]:
    records = list(watchdog_records)
    for raw in server.raw_log().splitlines():
        line = json.loads(raw)
        when = datetime.fromisoformat(line["@timestamp"].replace("Z", "+00:00"))
        records.append((_cri_time(when), "stdout", raw))
    records.sort(key=lambda record: record[0])
    shipped = pipeline_sim.filebeat_events(pipeline_sim.cri_log(records), pod=pod)
    pipeline = pipeline_sim.Pipeline()
    return [pipeline.run(event) for event in shipped]


def _trail(events: list[dict], request_id: str) -> list[tuple[str, str, int]]:
    return [(event["component"], event["event"], event.get("status_code")) for event in events
            if event.get("request_id") == request_id and "status_code" in event]


def _wait_for_request_line(server, request_id: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(line.get("request_id") == request_id and "status_code" in line for line in server.log_lines()):
        assert time.monotonic() < deadline, f"no request line for {request_id}"
        time.sleep(0.05)


def test_a_real_ner_processor_request_trail_has_both_lines(request):
    server = _server(request, "ner_server")
    watchdog = Watchdog()
    ok, bad, own_id, call_of_own = (f"join-{name}-{uuid.uuid4().hex}" for name in ("ok", "bad", "own", "call"))
    status, headers, _ = watchdog.call(server, "/", body=b"Tim Cook visited Berlin", content_type="text/plain",
                                       call_id=ok)
    assert (status, headers["x-request-id"]) == (200, ok)
    status, headers, _ = watchdog.call(server, "/", body={"documents": [{"id": "a"}]}, call_id=bad)
    assert (status, headers["x-request-id"]) == (422, bad)
    # A body request_id wins over the call id: the documented case where the two lines do not join.
    status, headers, _ = watchdog.call(server, "/", body={"text": "Ada Lovelace in Paris", "request_id": own_id},
                                       call_id=call_of_own)
    assert (status, headers["x-request-id"]) == (200, own_id)
    for request_id in (ok, bad, own_id):
        _wait_for_request_line(server, request_id)

    events = _pod_events(server, watchdog.records, pipeline_sim.Pod())
    assert [e for e in events if FAILURE_TAGS & set(e.get("tags", []))] == []
    assert _trail(events, ok) == [("function", "request.completed", 200), ("watchdog", "watchdog.request", 200)]
    assert _trail(events, bad) == [("function", "request.failed", 422), ("watchdog", "watchdog.request", 422)]
    assert _trail(events, own_id) == [("function", "request.completed", 200)]
    assert _trail(events, call_of_own) == [("watchdog", "watchdog.request", 200)]
    access = next(e for e in events if e.get("request_id") == ok and e["component"] == "watchdog")
    assert access["function"] == "ner-processor" and access["duration_ms"] > 0 and access["method"] == "POST"


def test_a_real_entity_stats_request_trail_has_both_lines(request):
    server = _server(request, "stats_server")
    watchdog = Watchdog()
    call_id = f"join-stats-{uuid.uuid4().hex}"
    token = request.getfixturevalue("stats_token")
    status, headers, _ = watchdog.call(server, "/?window=1h&limit=5", method="GET", content_type=None,
                                       call_id=call_id, headers={"Authorization": f"Bearer {token}"})
    assert (status, headers["x-request-id"]) == (200, call_id)
    _wait_for_request_line(server, call_id)
    pod = pipeline_sim.Pod(name="entity-stats-6c5d4b3a2f-k8s9q",
                           labels=(("faas_function", "entity-stats"), ("com.nlp-enrichment/logs", "json")))
    events = _pod_events(server, watchdog.records, pod)
    assert _trail(events, call_id) == [("function", "request.completed", 200),
                                       ("watchdog", "watchdog.request", 200)]
    access = next(e for e in events if e.get("request_id") == call_id and e["component"] == "watchdog")
    assert (access["function"], access["path"]) == ("entity-stats", "/?window=1h&limit=5")


def test_the_access_line_written_here_is_the_fixture_format():
    """The line Watchdog.call writes parses like the fixture's real examples (same grok, same fields)."""
    lines = fieldrefs.REPO.joinpath("tests/logging/fixtures/watchdog-lines.txt").read_text(encoding="utf-8")
    assert "POST / - 200 OK - ContentLength: 313B (0.0123s) [" in lines
    assert human_size(313) == "313B" and human_size(1234) == "1.234kB" and human_size(4610) == "4.61kB"
    assert human_size(-1) == "-1B"
