"""OpenFaaS's queue-worker in the same index as the functions: Filebeat ships its pods (namespace openfaas, pod
label app: queue-worker, as the OpenFaaS chart deploys it) and no other unlabelled pod; Logstash parses its JSON
lines into "queue_worker", lifts the call id, function, final status and level only when a line has them, never
lets a request or response body through, and leaves the function's and the watchdog's lines as they were.

The sample lines (tests/logging/fixtures/queue-worker-lines.txt) say where each comes from: captured, reconstructed
or hypothetical (no JSON line of the JetStream queue-worker is public).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.logging import fieldrefs, pipeline_sim
from tests.logging.test_watchdog_lines import SAMPLES as WATCHDOG_SAMPLES
from tests.logging.test_watchdog_lines import shipped as shipped_function_pod

FIXTURE = Path(__file__).with_name("fixtures") / "queue-worker-lines.txt"
QUEUE_WORKER_POD = pipeline_sim.Pod(name="queue-worker-6b579d58d7-krgx5", namespace="openfaas",
                                    labels=(("app", "queue-worker"), ("pod-template-hash", "6b579d58d7")))
WITHHELD = "queue-worker line withheld: it carried a request or response body"


@dataclass(frozen=True)
class Sample:
    line_number: int
    source: str
    expect: dict
    line: str


def load_samples() -> list[Sample]:
    samples, source, expect, start = [], None, None, 0
    for number, line in enumerate(FIXTURE.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("# source: "):
            source = line[len("# source: "):]
        elif line.startswith("# expect: "):
            expect, start = json.loads(line[len("# expect: "):]), number
        elif line.startswith("#") or not line.strip():
            continue
        else:
            assert expect is not None and source, f"queue-worker-lines.txt:{number}: a line without source/expect"
            samples.append(Sample(start, source, expect, line))
            source, expect = None, None
    return samples


SAMPLES = load_samples()


def shipped(message: str, pod: pipeline_sim.Pod = QUEUE_WORKER_POD) -> dict:
    """What Filebeat sends for one stderr line of a pod (after add_kubernetes_metadata)."""
    return pipeline_sim.filebeat_event(message, pod, time="2026-12-07T10:15:02.123456789Z")


@pytest.fixture(scope="module")
def pipeline() -> pipeline_sim.Pipeline:
    return pipeline_sim.Pipeline()


@pytest.fixture(scope="module")
def events(pipeline) -> list[dict]:
    return [pipeline.run(shipped(sample.line)) for sample in SAMPLES]


# --- the fixture --------------------------------------------------------------------------------------------


def test_every_sample_says_where_it_comes_from():
    assert SAMPLES
    for sample in SAMPLES:
        assert sample.source.split(":")[0] in {"captured", "reconstructed", "hypothetical"}, sample.line_number
    kinds = {sample.source.split(":")[0] for sample in SAMPLES}
    assert kinds == {"captured", "reconstructed", "hypothetical"}


# --- Logstash ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"line{s.line_number}")
def test_each_sample_becomes_the_event_it_expects(pipeline, sample):
    event = pipeline.run(shipped(sample.line))
    assert event is not None, "a queue-worker line was dropped"
    for key, value in sample.expect.items():
        if key == "_tags":
            assert set(value) <= set(event.get("tags", [])), (value, event.get("tags"))
        elif key == "_absent":
            assert not [name for name in value if name in event], [name for name in value if name in event]
        elif key == "_secret":
            assert value not in json.dumps(event, ensure_ascii=False), "body text reached the event"
        else:
            assert event.get(key) == value, (key, event.get(key), value)
    assert event["component"] == "queue-worker"
    # The shipper's own "event" object never survives (the pack's "event" is a keyword).
    assert not isinstance(event.get("event"), dict)


def test_no_body_reaches_the_index(events):
    """Whatever key a body is logged under (string or object value, any case of "body"), and the NATS
    Streaming queue-worker's dump of the queued request: the text is not in any indexed field."""
    secrets = [sample.expect["_secret"] for sample in SAMPLES if "_secret" in sample.expect]
    assert len(secrets) >= 3
    for sample, event in zip(SAMPLES, events, strict=True):
        text = json.dumps(event, ensure_ascii=False)
        for secret in secrets:
            assert secret not in text, (sample.line_number, secret)
        parsed = event.get("queue_worker", {})
        for key, value in parsed.items():
            if "body" in key.lower() and isinstance(value, str):
                assert value == "[redacted]", (sample.line_number, key)


def test_a_string_with_escaped_quotes_is_redacted_whole(pipeline):
    body = json.dumps({"text": 'He said "Alice Moreau" \\ twice', "more": "x" * 50})
    line = json.dumps({"level": "info", "msg": "request", "requestBody": body, "after": "kept"})
    event = pipeline.run(shipped(line))
    assert event["queue_worker"] == {"level": "info", "msg": "request", "requestBody": "[redacted]", "after": "kept"}
    assert "Alice" not in json.dumps(event)


def test_the_lift_only_happens_when_the_line_has_the_field(events):
    for sample, event in zip(SAMPLES, events, strict=True):
        parsed = event.get("queue_worker")
        if not isinstance(parsed, dict):
            assert not {"request_id", "status_code", "function"} & set(event), sample.line_number
            continue
        assert ("request_id" in event) == ("X-Call-Id" in parsed), sample.line_number
        assert ("status_code" in event) == ("X-Function-Status" in parsed), sample.line_number
        assert ("function" in event) == ("X-Function-Name" in parsed or "Function" in parsed), sample.line_number
        assert (event["event"] == "queue_worker.outcome") == ("X-Function-Status" in parsed), sample.line_number
        if "status_code" in event:
            assert isinstance(event["status_code"], int)


def test_parsed_queue_worker_events_fit_the_index_template(events):
    mappings = fieldrefs.template_mappings(fieldrefs.load_template())
    assert mappings["queue_worker"]["type"] == "flattened"
    for event in events:
        for key, value in event.items():
            if key.split(".")[0] in fieldrefs.SHIPPER_ROOTS or key == "@timestamp":
                continue
            assert key in mappings, f"{key} has no explicit mapping"
            if isinstance(value, int) and not isinstance(value, bool):
                assert mappings[key]["type"] in {"short", "integer", "long"}, key
            elif isinstance(value, dict):
                assert mappings[key]["type"] in {"object", "flattened"}, key
            else:
                assert mappings[key]["type"] in {"keyword", "text"}, key


def test_function_and_watchdog_lines_are_untouched_by_the_queue_worker_branch(pipeline):
    """The function's JSON lines keep every key and value (a "body" in a function line is its own business:
    the function never logs comment text), and no function-pod event gets queue-worker fields."""
    lines = fieldrefs.representative_lines()
    lines.append({"@timestamp": "2026-12-07T10:00:00.000Z", "log.level": "warning", "message": "request body too large",
                  "service": "nlp-enrichment", "function": "ner-processor", "event": "request.failed",
                  "status_code": 413, "error.type": "PayloadTooLarge", "error.message": "body over 1 MiB"})
    for line in lines:
        event = pipeline.run(shipped_function_pod(json.dumps(line), stream="stdout"))
        assert event["component"] == "function"
        assert "queue_worker" not in event and "tags" not in event
        for key, value in line.items():
            if key == "@timestamp":
                continue
            assert event[key] == value, key
    for sample in WATCHDOG_SAMPLES:
        event = pipeline.run(shipped_function_pod(sample.message))
        assert event.get("component") != "queue-worker" and "queue_worker" not in event
        assert event["function"] == "ner-processor" and event["service"] == "nlp-enrichment"


def test_a_queue_worker_label_outside_the_openfaas_namespace_is_not_selected(pipeline):
    elsewhere = pipeline_sim.Pod(name="queue-worker-1", namespace="jobs", labels=(("app", "queue-worker"),))
    assert pipeline.run(shipped(SAMPLES[0].line, pod=elsewhere)) is None


# --- Filebeat ---------------------------------------------------------------------------------------------


def test_filebeat_ships_the_queue_worker_pod_and_joins_none_of_its_json_lines():
    lines = [sample.line for sample in SAMPLES]
    times = [f"2026-12-07T10:15:02.{index:09d}Z" for index in range(len(lines))]
    log = pipeline_sim.cri_log(zip(times, ["stderr"] * len(lines), lines, strict=True))
    events = pipeline_sim.filebeat_events(log, pod=QUEUE_WORKER_POD)
    assert [event["message"] for event in events] == lines
    assert all(event["kubernetes"]["namespace"] == "openfaas" for event in events)


def test_filebeat_does_not_ship_other_unlabelled_pods():
    log = pipeline_sim.cri_log([("2026-12-07T10:15:02.000000001Z", "stderr", SAMPLES[0].line)])
    for pod in (pipeline_sim.Pod(name="queue-worker-1", namespace="jobs", labels=(("app", "queue-worker"),)),
                pipeline_sim.Pod(name="gateway-1", namespace="openfaas", labels=(("app", "gateway"),))):
        assert pipeline_sim.filebeat_events(log, pod=pod) == [], pod


# --- Kibana ---------------------------------------------------------------------------------------------------


def test_the_failures_search_reads_fields_the_queue_worker_events_have(events):
    generator = fieldrefs.load_generator()
    (search,) = [obj for obj in fieldrefs.saved_objects() if obj["id"] == generator.QUEUE_WORKER_FAILURES_SEARCH_ID]
    assert search["type"] == "search" and search["attributes"]["sort"] == [["@timestamp", "desc"]]
    fields = fieldrefs.emitted_fields(events) | {"@timestamp"}
    assert fieldrefs.kibana_fields(search) <= fields, fieldrefs.kibana_fields(search) - fields
    (board,) = [obj for obj in fieldrefs.saved_objects() if obj["type"] == "dashboard"]
    assert search["id"] in {ref["id"] for ref in board["references"]}


def _failure(event: dict) -> bool:
    """QUEUE_WORKER_FAILURES_KQL evaluated on one event (the query is checked to be exactly this)."""
    return event.get("component") == "queue-worker" and (
        (isinstance(event.get("status_code"), int) and event["status_code"] >= 300)
        or event.get("log.level") in {"error", "critical"})


def test_the_failures_search_selects_the_failed_outcome_and_not_the_successful_one(events):
    generator = fieldrefs.load_generator()
    assert generator.QUEUE_WORKER_FAILURES_KQL == (
        '(component : "queue-worker") and (status_code >= 300 or log.level : ("error" or "critical"))')
    selected = [event for event in events if _failure(event)]
    assert {event.get("status_code") for event in selected} == {503}
    assert not [event for event in events if event.get("status_code") == 200 and _failure(event)]
