"""The logs of a real ner-processor (over HTTP, real PostgreSQL): every stdout line is contract JSON, the
comment text never appears, error paths carry error.type and the right level, and every field the
Logstash/Kibana files name is one these real lines carry.

Uses the ``ner_server`` fixture of tests/fixtures/servers.py (attributes ``url``, ``log_lines()``,
``raw_log()``); skipped where that fixture is unavailable.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.logging import fieldrefs
from tests.logging.fieldrefs import assert_contract_line, emitted_fields, unknown_references

pytestmark = pytest.mark.integration

# Fields only a failure the suite cannot cause on a healthy server would show (an unhandled exception's
# trace, a line over 60 KiB); the unit tests prove the logger writes them.
FAILURE_ONLY_FIELDS = frozenset({"error.stack_trace", "log.truncated"})


@pytest.fixture(scope="module")
def server(request):
    try:
        return request.getfixturevalue("ner_server")
    except pytest.FixtureLookupError:
        pytest.skip("the ner_server fixture (tests/fixtures/servers.py) is not available")


def _post(server, body: bytes, content_type: str, request_id: str):
    from devtools.processes import call

    return call(server, "/", body=body, content_type=content_type, headers={"X-Call-Id": request_id})


def _lines_for(server, request_id: str, timeout: float = 10.0) -> list[dict]:
    """The request's lines once its last one (the one with status_code) has been written."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in server.log_lines() if line.get("request_id") == request_id]
        if any("status_code" in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.fixture(scope="module")
def exchanges(server) -> dict:
    """One of each kind of request, made once for the module: name -> (status, request id, text)."""
    token = f"Zyxqwv{uuid.uuid4().hex[:8]} Corp"
    text = f"{token} hired Ada Lovelace in Paris for $3 million on Monday."
    max_chars = int(server.env.get("MAX_TEXT_CHARS", "100000"))
    cases = {
        "single": (json.dumps({"text": text, "source": "logging-test"}).encode(), "application/json"),
        "batch": (json.dumps({"documents": [{"id": f"doc-{uuid.uuid4().hex}", "text": text},
                                            {"id": f"doc-{uuid.uuid4().hex}", "text": text[::-1]}]}).encode(),
                  "application/json"),
        "plain": (text.encode(), "text/plain"),
        "invalid_json": (b'{"text": "' + token.encode() + b'", ', "application/json"),
        "too_long": (((token + " ") * (max_chars // len(token) + 2)).encode(), "text/plain"),
    }
    results = {}
    for name, (body, content_type) in cases.items():
        request_id = f"logtest-{name}-{uuid.uuid4().hex}"
        status, headers, _ = _post(server, body, content_type, request_id)
        assert headers.get("x-request-id") == request_id, (name, headers)
        results[name] = (status, request_id)
    for _status, request_id in results.values():
        _lines_for(server, request_id)
    return {"token": token, "results": results}


def test_every_stdout_line_is_contract_json(server, exchanges):
    lines = server.log_lines()  # raises on a line that is not JSON
    assert lines
    for line in lines:
        for key in ("@timestamp", "log.level", "message", "service", "function"):
            assert key in line, (key, line)
        assert_contract_line(line)
    raw = server.raw_log().splitlines()
    assert all(len(row.encode()) < 64 * 1024 for row in raw)


def test_the_model_load_is_logged_once_with_its_duration(server, exchanges):
    loaded = [line for line in server.log_lines() if line.get("event") == "model.loaded"]
    assert len(loaded) == 1
    assert loaded[0]["load_ms"] > 0 and loaded[0]["model_name"] and loaded[0]["model_version"]


def test_a_completed_request_logs_its_numbers_and_model(server, exchanges):
    status, request_id = exchanges["results"]["single"]
    assert status == 200
    done = [line for line in _lines_for(server, request_id) if "status_code" in line]
    assert len(done) == 1
    line = done[0]
    assert line["status_code"] == 200 and line["log.level"] == "info"
    for key in ("duration_ms", "text_length", "entity_count", "entities_by_label", "model_name",
                "model_version"):
        assert key in line, key
    assert sum(line["entities_by_label"].values()) == line["entity_count"]


def test_the_comment_text_never_appears_in_the_logs(server, exchanges):
    raw = server.raw_log()
    assert exchanges["token"] not in raw
    assert exchanges["token"].split()[0] not in raw
    assert "Ada Lovelace" not in raw


@pytest.mark.parametrize(("case", "status"), [("invalid_json", 400), ("too_long", 413)])
def test_client_errors_log_error_type_at_warning(server, exchanges, case, status):
    got, request_id = exchanges["results"][case]
    assert got == status
    failed = [line for line in _lines_for(server, request_id) if "status_code" in line]
    assert len(failed) == 1, failed
    line = failed[0]
    assert line["status_code"] == status
    assert line["log.level"] == "warning"
    assert line["error.type"] and isinstance(line["error.type"], str)


@pytest.fixture(scope="module")
def queue_worker_lines(server, tmp_path_factory) -> list[dict]:
    """The JSON lines of a real queue-worker delivering to ``server`` (its ``queue.depth`` line included):
    the asynchronous path's rules name its fields."""
    from devtools.queueworker import start_queue_worker
    from tests.fixtures.queue import start_private_nats

    base = tmp_path_factory.mktemp("queue-worker-logs")
    nats = start_private_nats(base)
    worker = start_queue_worker(nats.url, base, functions={"ner-processor": server.url},
                                extra_args=["--depth-interval", "0.2"])
    try:
        deadline = time.monotonic() + 15
        while not any(line.get("event") == "queue.depth" for line in worker.log_lines()):
            assert time.monotonic() < deadline, "no queue.depth line"
            time.sleep(0.1)
        return worker.log_lines()
    finally:
        worker.stop()
        nats.destroy()


def test_every_field_the_logstash_and_kibana_files_name_is_in_the_real_logs(server, exchanges, queue_worker_lines):
    observed = emitted_fields(server.log_lines()) | emitted_fields(queue_worker_lines) | FAILURE_ONLY_FIELDS
    labels = fieldrefs.load_generator().NER_LABELS
    problems = {artifact: sorted(unknown_references(fields, observed, labels))
                for artifact, fields in fieldrefs.referenced_logger_fields().items()}
    problems = {artifact: names for artifact, names in problems.items() if names}
    assert not problems, f"named in logstash/ but absent from the real function's and queue-worker's logs: {problems}"
