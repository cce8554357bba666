"""Retries: the gateway's queue-worker re-delivers a request (same X-Call-Id / request id) after a
timeout or a 5xx, possibly while the first delivery is still running. Whatever the interleaving, the
primary must end up with exactly one document and one set of entity rows per id, every delivery must
get a 2xx with the same entities, and exactly one delivery may say ``duplicate: false``.
"""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from tests.faults.support import Http, entity_tuples, report

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONCURRENT = 20


def _rows(admin_dsn: str, ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """id -> (documents rows, entity rows, entity_count column)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT i, (SELECT count(*) FROM nlp.documents d WHERE d.request_id = i),"
            " (SELECT count(*) FROM nlp.entities e WHERE e.request_id = i),"
            " (SELECT coalesce(max(entity_count), -1) FROM nlp.documents d WHERE d.request_id = i)"
            " FROM unnest(%s::text[]) AS i", (ids,)).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _concurrently(port: int, send) -> list:
    """``send(client)`` from CONCURRENT threads released at the same instant."""
    barrier = threading.Barrier(CONCURRENT)
    replies: list = [None] * CONCURRENT

    def worker(i: int):
        client = Http(port)
        try:
            barrier.wait(10)
            replies[i] = send(client)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return replies


def test_replayed_requests_store_exactly_one_document_and_one_set_of_entities(function_factory, healthy,
                                                                               admin_dsn):
    fn = function_factory("ner-processor")
    run = uuid.uuid4().hex[:8]
    text = "Refund for order 77 from Amazon in Seattle: Maria Garcia waited since Monday."
    figures = {}

    # 1. Sequential re-deliveries of a JSON request with a body request id.
    seq_id = f"retry-seq-{run}"
    client = Http(fn.port)
    seq = [client.post_json({"text": text, "request_id": seq_id}) for _ in range(5)]
    client.close()
    assert [r.status for r in seq] == [200] * 5
    assert [r.json["duplicate"] for r in seq] == [False, True, True, True, True]
    assert len({str(entity_tuples(r.json["entities"])) for r in seq}) == 1

    # 2. 20 concurrent deliveries of the same text/plain request, id only in X-Call-Id (the async path).
    call_id = f"retry-callid-{run}"
    par = _concurrently(fn.port, lambda c: c.request("POST", body=text, content_type="text/plain",
                                                      headers={"X-Call-Id": call_id}))
    assert [r.status for r in par] == [200] * CONCURRENT, [r.status for r in par]
    assert all(r.json["request_id"] == call_id and r.headers["x-request-id"] == call_id for r in par)
    figures["concurrent_single_first_writes"] = sum(not r.json["duplicate"] for r in par)
    assert len({str(entity_tuples(r.json["entities"])) for r in par}) == 1

    # 3. 20 concurrent deliveries of one batch of 5 documents.
    batch_id = f"retry-batch-{run}"
    docs = [{"id": f"{batch_id}.{i}", "text": f"Doc {i}: {text}"} for i in range(5)]
    bat = _concurrently(fn.port, lambda c: c.post_json({"request_id": batch_id, "documents": docs}))
    assert [r.status for r in bat] == [200] * CONCURRENT, [r.status for r in bat]
    first_writes = {d["id"]: 0 for d in docs}
    for r in bat:
        for d in r.json["documents"]:
            first_writes[d["id"]] += not d["duplicate"]
    figures["concurrent_batch_first_writes_per_doc"] = sorted(set(first_writes.values()))

    ids = [seq_id, call_id, *first_writes]
    rows = _rows(admin_dsn, ids)
    expected_entities = {seq_id: len(seq[0].json["entities"]), call_id: len(par[0].json["entities"])}
    expected_entities.update({d["id"]: len(d["entities"]) for d in bat[0].json["documents"]})
    report("retries", sequential_deliveries=len(seq), concurrent_deliveries=CONCURRENT * 2,
           documents_per_id=sorted({r[0] for r in rows.values()}),
           entity_rows_match=all(rows[i][1] == expected_entities[i] == rows[i][2] for i in ids), **figures)

    for rid in ids:
        documents, entity_rows, entity_count = rows[rid]
        assert documents == 1, f"{rid}: {documents} documents"
        assert entity_rows == entity_count == expected_entities[rid], (rid, rows[rid], expected_entities[rid])
    assert figures["concurrent_single_first_writes"] == 1, "exactly one delivery may report duplicate=false"
    assert set(first_writes.values()) == {1}, first_writes
