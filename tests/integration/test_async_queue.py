"""The asynchronous path against its real parts: a NATS JetStream server, the local gateway, the
queue-worker process, a real ner-processor process and the session's PostgreSQL primary.

The scaled-down burst (1,000 comments) runs here; the 20,000-comment bursts with faults are
tests/faults/test_campaign_burst.py (soak)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from devtools.campaign import Sent, send
from devtools.campaign_report import CallbackReceiver
from devtools.jetstream import QueueLimits
from devtools.processes import REPO, call, free_port
from functions.runtime.dead_letters import open_store, redrive
from tests.fixtures.queue import unique_prefix

pytestmark = pytest.mark.slow


def items(prefix: str, count: int, invalid_every: int = 0, callback=None) -> list[Sent]:
    out = []
    for i in range(count):
        invalid = bool(invalid_every) and i % invalid_every == invalid_every - 1
        text = "" if invalid else f"Angela Merkel met Lufthansa staff in Frankfurt ({prefix}{i})"
        out.append(Sent(f"{prefix}{i}", json.dumps({"text": text}).encode(), "burst", invalid,
                        callback=callback(i) if callback else None))
    return out


def stored(dsn: str, prefix: str) -> tuple[int, dict[str, tuple]]:
    """(documents with ids of the prefix, call id -> (status, state, reason, body, attempts, redrives))."""
    with psycopg.connect(dsn) as conn:
        docs = conn.execute("SELECT count(*) FROM nlp.documents WHERE request_id LIKE %s",
                            (prefix + "%",)).fetchone()[0]
        letters = {r[0]: tuple(r[1:]) for r in conn.execute(
            "SELECT call_id, status, state, reason, body, attempts, redrives FROM nlp.dead_letters "
            "WHERE call_id LIKE %s", (prefix + "%",))}
    return docs, letters


def drained(dsn: str, prefix: str, count: int):
    """``stored(...)`` once documents and letters of the prefix add up to ``count``, else None."""
    docs, letters = stored(dsn, prefix)
    return (docs, letters) if docs + len(letters) >= count else None


def wait_for(predicate, timeout: float = 60.0, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not reached within {timeout} s")


def test_a_burst_of_1000_is_accepted_then_stored_once_with_each_invalid_comment_one_open_dead_letter(
        async_gateway, owner_dsn):
    prefix = unique_prefix()
    burst = items(prefix, 1000, invalid_every=100)
    started = time.monotonic()
    asyncio.run(send(async_gateway.url + "/async-function/ner-processor", burst, 64))
    assert all(i.accepted_at is not None for i in burst), "every comment answered 202"
    assert time.monotonic() - started < 20
    docs, letters = wait_for(lambda: drained(owner_dsn, prefix, 1000), 180)
    invalid = {i.call_id: i.body for i in burst if i.invalid}
    assert docs == 990 and set(letters) == set(invalid)
    for call_id, (status, state, reason, body, attempts, _) in letters.items():
        assert (status, state, reason, attempts) == (422, "open", "rejected", 1)
        assert bytes(body) == invalid[call_id]
    status, _, answer = call(async_gateway.url, f"/async-call/{prefix}0", method="GET", body=None, content_type=None)
    assert (status, answer["state"], answer["status"]) == (200, "succeeded", 200)
    status, _, answer = call(async_gateway.url, f"/async-call/{prefix}99", method="GET", body=None, content_type=None)
    assert (answer["state"], answer["error_code"]) == ("failed", "empty_text")


def test_redriving_poison_letters_leaves_one_open_letter_each_and_stores_none(async_gateway, owner_dsn):
    prefix = unique_prefix()
    poison = items(prefix, 3, invalid_every=1)
    asyncio.run(send(async_gateway.url + "/async-function/ner-processor", poison, 3))
    # the queue-worker's final record (attempts set), not only the function's own
    wait_for(lambda: [v[4] for v in stored(owner_dsn, prefix)[1].values()] == [1, 1, 1])
    store = open_store(owner_dsn)
    try:
        for item in poison[:2]:
            (result,) = redrive(store, async_gateway.url, call_id=item.call_id)
            assert result["redriven"] and result["status"] == 202
    finally:
        store.close()
    cli = subprocess.run([sys.executable, "-m", "functions.runtime.dead_letters", "redrive", "--dsn", owner_dsn,
                          "--gateway", async_gateway.url, "--call-id", poison[2].call_id],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and json.loads(cli.stdout.splitlines()[0])["redriven"], cli.stderr
    def failed_again():
        docs, letters = stored(owner_dsn, prefix)
        return (docs, letters) if all(v[1] == "open" and v[5] == 1 for v in letters.values()) else None

    docs, letters = wait_for(failed_again, 60)
    assert docs == 0 and len(letters) == 3
    listed = subprocess.run([sys.executable, "-m", "functions.runtime.dead_letters", "list", "--dsn", owner_dsn,
                             "--call-id", poison[0].call_id], cwd=REPO, capture_output=True, text=True, timeout=60)
    (line,) = [json.loads(text) for text in listed.stdout.splitlines()]
    assert (line["call_id"], line["status"], line["error"], line["attempts"]) == (poison[0].call_id, 422,
                                                                                 "empty_text", 1)
    assert json.loads(line["body"]) == {"text": ""}


def test_an_outage_longer_than_the_retry_window_is_a_dead_letter_stored_once_when_redriven(
        private_queue, pg_cluster, ner_server, owner_dsn, tmp_path):
    stack = (REPO / "stack.yml").read_text()
    short = tmp_path / "stack.yml"
    short.write_text(stack.replace('com.openfaas.retry.attempts: "12"', 'com.openfaas.retry.attempts: "3"')
                     .replace('com.openfaas.retry.min_wait: "5s"', 'com.openfaas.retry.min_wait: "200ms"')
                     .replace('com.openfaas.retry.max_wait: "60s"', 'com.openfaas.retry.max_wait: "400ms"'))
    (short.parent / "env.yml").write_text((REPO / "env.yml").read_text())
    gone = f"http://127.0.0.1:{free_port()}"  # the function is away for longer than the window
    queue = private_queue(function_url=gone)
    queue.start_worker(gone, pg_cluster.secrets_dir, stack=short)
    prefix = unique_prefix()
    (item,) = items(prefix, 1)
    asyncio.run(send(queue.url + "/async-function/ner-processor", [item], 1))
    _, letters = wait_for(lambda: drained(owner_dsn, prefix, 1), 30)
    status, state, reason, _, attempts, _ = letters[item.call_id]
    assert (status, state, reason, attempts) == (0, "open", "retries_exhausted", 3)
    queue.worker.stop()
    queue.start_worker(ner_server.url, pg_cluster.secrets_dir)  # recovered
    store = open_store(owner_dsn)
    try:
        for _ in range(2):  # a second redrive finds nothing open
            redrive(store, queue.url, call_id=item.call_id)
    finally:
        store.close()
    def resolved():
        docs, letters = stored(owner_dsn, prefix)
        return (docs, letters) if docs and letters[item.call_id][1] == "resolved" else None

    docs, letters = wait_for(resolved, 30)
    assert docs == 1 and letters[item.call_id][5] == 1


def test_each_callback_url_gets_exactly_one_final_outcome_with_call_id_and_status(async_gateway, owner_dsn):
    receiver = CallbackReceiver().start()
    gone = f"http://127.0.0.1:{free_port()}/gone"
    prefix = unique_prefix()
    burst = items(prefix, 60, invalid_every=10, callback=lambda i: gone if i % 10 == 3 else receiver.url)
    try:
        asyncio.run(send(async_gateway.url + "/async-function/ner-processor", burst, 16))
        wanted = [i for i in burst if i.callback == receiver.url]
        wait_for(lambda: all(receiver.received.get(i.call_id) for i in wanted), 60)
        time.sleep(1.0)  # nothing more arrives
        for item in wanted:
            (got,) = receiver.received[item.call_id]
            assert got == {"status": "422" if item.invalid else "200", "name": "ner-processor"}
    finally:
        receiver.stop()


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("POST", "/async-function/ner-processor", b"x" * (1024 * 1024 + 1), 413, "payload_too_large"),
    ("GET", "/async-function/ner-processor", None, 405, "method_not_allowed"),
    ("POST", "/async-function/no-such-function", b"{}", 404, "not_found"),
])
def test_refused_async_requests_get_a_json_4xx_at_once_and_are_not_queued(async_gateway, method, path, body,
                                                                           status, code):
    call_id = unique_prefix() + "refused"
    got, _, answer = call(async_gateway.url, path, method=method, body=body, headers={"X-Call-Id": call_id})
    assert (got, answer["error"], answer["request_id"]) == (status, code, call_id)
    time.sleep(0.3)
    got, _, _ = call(async_gateway.url, f"/async-call/{call_id}", method="GET", body=None, content_type=None)
    assert got == 404


def test_a_full_queue_answers_429_with_retry_after_and_a_repeated_call_id_is_queued_once(private_queue):
    queue = private_queue(limits=QueueLimits(max_msgs=3))  # no worker: nothing drains
    prefix = unique_prefix()
    first = [call(queue.url, "/async-function/ner-processor", body={"text": "a"}, headers={"X-Call-Id": f"{prefix}{i}"})
             for i in range(3)]
    repeated = call(queue.url, "/async-function/ner-processor", body={"text": "a"}, headers={"X-Call-Id": f"{prefix}0"})
    assert [s for s, _, _ in first] == [202, 202, 202] and repeated[0] == 202
    status, headers, answer = call(queue.url, "/async-function/ner-processor", body={"text": "b"})
    assert (status, answer["error"], headers["retry-after"]) == (429, "queue_full", "5")
    streams = queue.nats.jsz()["account_details"][0]["stream_detail"]
    assert next(s for s in streams if s["name"] == "faas-request")["state"]["messages"] == 3


def test_the_function_keeps_a_refused_input_that_came_through_a_gateway(ner_server, owner_dsn):
    prefix = unique_prefix()
    status, _, _ = call(ner_server, "/", body={"text": "  "}, headers={"X-Call-Id": f"{prefix}fn"})
    status_without, _, _ = call(ner_server, "/", body={"text": " ", "request_id": f"{prefix}direct"})
    assert status == status_without == 422
    _, letters = stored(owner_dsn, prefix)
    assert set(letters) == {f"{prefix}fn"} and letters[f"{prefix}fn"][:3] == (422, "open", "rejected")
    with urllib.request.urlopen(ner_server.url + "/metrics", timeout=5) as resp:  # noqa: S310
        assert 'nlp_dead_letters_total{function="ner-processor",status="422"}' in resp.read().decode()


def test_make_run_serves_the_async_path_on_nats_and_stops_it_on_ctrl_c(tmp_path):
    from devtools.campaign import MakeRunStack

    stack = MakeRunStack(Path(tmp_path) / "local", free_port())
    stack.start()
    try:
        assert any("NATS JetStream" in line for line in stack.output) and stack.nats.running()
        status, headers, _ = call(stack.url, "/async-function/ner-processor", body={"text": "Tim Cook in Berlin"},
                                  headers={"X-Call-Id": "make-run-async"})
        assert status == 202
        wait_for(lambda: call(stack.url, "/async-call/make-run-async", method="GET", body=None,
                              content_type=None)[2].get("state") == "succeeded", 60)
    finally:
        stack.stop()
    assert stack.process.returncode == 0 and stack.nats.pid() is None
