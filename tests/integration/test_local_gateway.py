"""The local gateway in front of the real functions (real model, real primary + replica): faas-cli's
exact requests for invoke (sync, async, text/plain, JSON), list, describe, ready, logs (tail, since,
follow) and version, each answer decoded the way faas-cli decodes it (tests/gateway/faas_cli.py); a
chunked body processed exactly as when sent direct."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest

from devtools.gateway import Gateway, Timeouts, read_stack
from devtools.processes import free_port
from devtools.queueworker import start_queue_worker
from tests.fixtures.queue import start_private_nats
from tests.fixtures.servers import call
from tests.gateway import faas_cli

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FOLLOW_S = 3.0


@pytest.fixture(scope="module")
def gateway(pg_cluster, tmp_path_factory):
    """The gateway with the stack's function processes, /async-function/ on a NATS server of its own and
    a queue-worker delivering to those processes."""
    log_dir = tmp_path_factory.mktemp("gateway-logs")
    nats = start_private_nats(log_dir)
    gw = Gateway(read_stack(REPO / "stack.yml"), secrets_dir=pg_cluster.secrets_dir,
                 log_dir=log_dir, port=free_port(), timeouts=Timeouts(logs_follow_s=FOLLOW_S), nats_url=nats.url)
    gw.start()
    worker = start_queue_worker(nats.url, log_dir, secrets_dir=pg_cluster.secrets_dir,
                                functions={name: fn.url for name, fn in gw.processes.items()})
    yield gw
    worker.stop()
    gw.stop()
    nats.destroy()


def _entities(doc: dict) -> list[tuple]:
    return [(e["text"], e["label"], e["start_char"], e["end_char"]) for e in doc["entities"]]


def _wait_persisted(admin_dsn: str, request_id: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM nlp.documents WHERE request_id = %s", (request_id,)).fetchone():
                return
            time.sleep(0.1)
    pytest.fail(f"{request_id} was not persisted within {timeout} s")


def test_faas_cli_invoke_text_plain_returns_entities(gateway):
    # echo "Tim Cook visited Berlin" | faas-cli invoke ner-processor --gateway URL
    status, headers, body = faas_cli.invoke(gateway.url, "ner-processor", b"Tim Cook visited Berlin\n")
    parsed = json.loads(body)
    assert status == 200
    assert [(e["text"], e["label"]) for e in parsed["entities"]] == [("Tim Cook", "PERSON"), ("Berlin", "GPE")]
    assert parsed["persisted"] is True and headers["x-call-id"] == parsed["request_id"]
    assert float(headers["x-duration-seconds"]) > 0


def test_faas_cli_invoke_json_content_type(gateway):
    # faas-cli invoke ner-processor --content-type application/json < samples/comment.json
    payload = (REPO / "samples" / "comment.json").read_bytes()
    status, _, body = faas_cli.invoke(gateway.url, "ner-processor", payload, content_type="application/json")
    assert status == 200 and json.loads(body)["entities"]


def test_faas_cli_invoke_async_is_accepted_then_persisted_under_its_call_id(gateway, admin_dsn):
    call_id = f"async-{uuid.uuid4()}"
    status, headers, body = faas_cli.invoke(gateway.url, "ner-processor",
                                            b"Jensen Huang presented Nvidia's roadmap in Taipei.",
                                            asynchronous=True, headers={"X-Call-Id": call_id})
    assert status == 202 and headers["x-call-id"] == call_id and body == b""
    _wait_persisted(admin_dsn, call_id)


def test_faas_cli_invoke_async_json_gets_a_call_id_when_none_is_sent(gateway, admin_dsn):
    status, headers, _ = faas_cli.invoke(gateway.url, "ner-processor",
                                         json.dumps({"text": "Satya Nadella spoke in Redmond."}).encode(),
                                         content_type="application/json", asynchronous=True)
    assert status == 202
    _wait_persisted(admin_dsn, headers["x-call-id"])


def test_curl_data_file_with_default_form_content_type_works(gateway):
    payload = (REPO / "samples" / "comment.json").read_bytes()
    status, _, body = call(gateway.url, "/function/ner-processor", body=payload,
                           content_type="application/x-www-form-urlencoded")
    assert status == 200 and body["entities"]


def test_chunked_json_body_is_processed_exactly_as_when_sent_direct(gateway):
    texts = [json.loads(line)["text"] for line in
             (REPO / "samples" / "comments.jsonl").read_text(encoding="utf-8").splitlines()[:12]]

    def body(tag: str) -> bytes:
        return json.dumps({"request_id": f"chunked-{tag}-{uuid.uuid4()}", "documents": [
            {"id": f"{tag}-{i}-{uuid.uuid4()}", "text": t} for i, t in enumerate(texts)]}).encode()

    direct_status, _, direct = call(gateway.processes["ner-processor"], "/", body=body("direct"))
    chunked = body("gw")
    pieces = (chunked[i:i + 97] for i in range(0, len(chunked), 97))  # generator -> http.client sends chunked
    status, _, through = faas_cli.request(gateway.url, "POST", "/function/ner-processor.openfaas-fn", pieces,
                                          {"Content-Type": "application/json"})
    through = json.loads(through)
    assert direct_status == status == 200
    assert [_entities(d) for d in through["documents"]] == [_entities(d) for d in direct["documents"]]
    assert through["model"] == direct["model"] and through["persisted"] is direct["persisted"] is True
    assert all(d["duplicate"] is False for d in through["documents"])


def test_faas_cli_list_decodes_every_function(gateway):
    for path in ("/system/functions", f"/system/functions?namespace={faas_cli.NAMESPACE}"):
        status, _, body = faas_cli.request(gateway.url, "GET", path)
        assert status == 200
        functions = {f["name"]: f for f in faas_cli.decode_list(body)}
        assert set(functions) == {spec.name for spec in read_stack(REPO / "stack.yml")}
        assert all(f["availableReplicas"] == 1 and f["replicas"] == 1 for f in functions.values())
        assert functions["ner-processor"]["image"] == "ghcr.io/nlp-enrichment/ner-processor:0.1.0"
        assert functions["ner-processor"]["labels"]["com.openfaas.scale.min"] == "1"


def test_faas_cli_describe_and_ready_read_system_function(gateway):
    faas_cli.invoke(gateway.url, "entity-stats", b"")  # counted as an invocation, whatever it answers
    status, _, body = faas_cli.request(gateway.url, "GET",
                                       f"/system/function/entity-stats?namespace={faas_cli.NAMESPACE}")
    described = faas_cli.decode_function_status(json.loads(body))
    assert status == 200 and described["name"] == "entity-stats"
    assert described["availableReplicas"] >= 1  # what `faas-cli ready` waits for
    assert described["invocationCount"] >= 1
    assert described["secrets"] == ["stats-replica-dsn", "stats-primary-dsn", "entity-stats-token"]
    assert described["usage"]["totalMemoryBytes"] > 0


def test_faas_cli_describe_unknown_function_is_404(gateway):
    # faas-cli prints "No such function: nope" on a 404, whatever the body
    assert faas_cli.request(gateway.url, "GET", "/system/function/nope?namespace=openfaas-fn")[0] == 404
    assert faas_cli.request(gateway.url, "GET", "/system/function/ner-processor?namespace=other")[0] == 404


def test_faas_cli_version_decodes_system_info(gateway):
    status, _, body = faas_cli.request(gateway.url, "GET", "/system/info")
    assert status == 200 and faas_cli.decode_info(body)["provider"]["provider"]


def _logs_query(**params) -> str:
    base = {"name": "ner-processor", "namespace": faas_cli.NAMESPACE, "follow": "false"}
    return "/system/logs?" + urlencode({**base, **params})


def test_faas_cli_logs_tail_returns_the_functions_json_lines(gateway):
    faas_cli.invoke(gateway.url, "ner-processor", b"Angela Merkel met Emmanuel Macron in Paris.")
    status, headers, body = faas_cli.request(gateway.url, "GET", _logs_query(tail=3))
    messages = faas_cli.decode_logs(body)
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    assert len(messages) == 3
    assert {m["name"] for m in messages} == {"ner-processor"}
    assert all(m["instance"] == gateway.upstreams["ner-processor"].instance for m in messages)
    assert all(json.loads(m["text"])["@timestamp"] for m in messages)  # the function's JSON log lines


def test_faas_cli_logs_since_filters_by_time(gateway):
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert faas_cli.decode_logs(faas_cli.request(gateway.url, "GET", _logs_query(since=future))[2]) == []
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert faas_cli.decode_logs(faas_cli.request(gateway.url, "GET", _logs_query(since=past, tail=-1))[2])


def test_faas_cli_logs_unknown_function_and_bad_query(gateway):
    assert faas_cli.request(gateway.url, "GET", _logs_query(name="nope"))[0] == 404
    status, _, body = faas_cli.request(gateway.url, "GET", _logs_query(tail="x"))
    assert status == 422 and json.loads(body)["error"] == "invalid_request"


def test_faas_cli_logs_follow_streams_new_lines_and_ends_within_the_bound(gateway):
    result: dict = {}

    def follow():
        started = time.monotonic()
        result["answer"] = faas_cli.request(gateway.url, "GET", _logs_query(follow="true", tail=1))
        result["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.5)
    call_id = f"follow-{uuid.uuid4()}"
    assert faas_cli.invoke(gateway.url, "ner-processor", b"Sundar Pichai flew to Zurich.",
                           headers={"X-Call-Id": call_id})[0] == 200
    reader.join(FOLLOW_S + 10)
    assert not reader.is_alive()
    status, headers, body = result["answer"]
    messages = faas_cli.decode_logs(body)
    assert status == 200 and headers.get("transfer-encoding") == "chunked"
    assert any(call_id in m["text"] for m in messages), "the line logged during the follow was not streamed"
    assert FOLLOW_S - 0.5 <= result["seconds"] <= FOLLOW_S + 3


def test_feed_survives_a_function_killed_mid_run_and_the_stack_keeps_serving(pg_cluster, tmp_path, stats_token):
    from devtools.up import feed

    gw = Gateway(read_stack(REPO / "stack.yml"), secrets_dir=pg_cluster.secrets_dir, log_dir=tmp_path,
                 port=free_port())
    gw.start()
    try:
        comments = [{"id": f"kill-{uuid.uuid4()}", "text": f"Comment {i} about Lisbon and Lufthansa."}
                    for i in range(400)]
        outcome: dict = {}
        feeder = threading.Thread(target=lambda: outcome.update(result=feed(gw.url, comments, concurrency=4,
                                                                           timeout=20)))
        feeder.start()
        deadline = time.monotonic() + 30
        while gw.upstreams["ner-processor"].invocations < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        gw.processes["ner-processor"].process.kill()  # SIGKILL mid-feed: resets, then 502s
        feeder.join(120)
        assert not feeder.is_alive()
        ok, failures, _ = outcome["result"]
        assert failures and ok + len(failures) == len(comments)
        assert any("HTTP 502 function_unreachable" in f for f in failures)
        # the rest of the stack still answers
        assert call(gw.url, "/healthz", method="GET", body=None, content_type=None)[0] == 200
        status, _, stats = call(gw.url, "/function/entity-stats?window=1h&limit=3", method="GET", body=None,
                                content_type=None, headers={"Authorization": f"Bearer {stats_token}"})
        assert status == 200 and "top_entities" in stats
        described = json.loads(faas_cli.request(gw.url, "GET", "/system/function/ner-processor")[2])
        assert described["availableReplicas"] == 0  # what `faas-cli ready` would now wait on
    finally:
        gw.stop()
