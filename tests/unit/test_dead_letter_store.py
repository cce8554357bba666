"""The dead-letter rules at the store seam (InMemoryDeadLetterStore has the named queries' semantics;
tests/integration/test_async_queue.py runs the PostgreSQL store), the function's reject recorder and the
invocation encoding of the queue."""

from __future__ import annotations

import json

from devtools.jetstream import Invocation
from devtools.queueworker.outcomes import CallbackJob, Outcome, callback_job, error_of, letter_of
from functions.runtime.contract import Event, Headers, Query
from functions.runtime.errors import InvalidField, Overloaded
from functions.runtime.rejects import RejectRecorder
from functions.runtime.stores.dead_letters import DeadLetter
from functions.runtime.stores.memory import InMemoryDeadLetterStore


def letter(call_id: str = "c1", **changes) -> DeadLetter:
    base = {"function": "ner-processor", "call_id": call_id, "reason": "rejected", "status": 422,
            "body": b'{"text": ""}', "error_code": "empty_text", "attempts": 1}
    return DeadLetter(**{**base, **changes})


def test_a_letter_the_function_recorded_is_completed_not_duplicated_by_the_queue_worker():
    store = InMemoryDeadLetterStore()
    store.record_rejected(letter(attempts=None))
    store.record_final(letter(attempts=1))
    (only,) = store.letters()
    assert only.attempts == 1 and only.recorded_by == "queue-worker" and only.state == "open"


def test_a_redriven_letter_that_fails_again_is_one_open_letter_again():
    store = InMemoryDeadLetterStore()
    store.record_final(letter())
    (read,) = store.letters()
    assert store.mark_redriven(read)
    assert store.letters() == []
    store.record_final(letter())
    (again,) = store.letters()
    assert again.redrives == 1 and len(store.rows) == 1


def test_a_redrive_the_gateway_did_not_queue_leaves_the_letter_open_as_it_was():
    store = InMemoryDeadLetterStore()
    store.record_final(letter())
    (read,) = store.letters()
    redrives = store.mark_redriven(read)
    assert redrives == 1 and store.mark_redriven(read) is None  # a second redrive finds it taken
    store.unmark_redriven(read, redrives)
    (again,) = store.letters()
    assert (again.state, again.redrives) == ("open", 0)


def test_a_redriven_letter_resolves_when_its_invocation_succeeds():
    store = InMemoryDeadLetterStore()
    store.record_final(letter())
    store.mark_redriven(store.letters()[0])
    assert store.resolve("ner-processor", "c1")
    assert store.count_by_state() == {"resolved": 1}


def test_the_printed_line_carries_the_original_body_and_the_function_error():
    line = letter().as_line()
    assert (line["call_id"], line["status"], line["error"], line["attempts"]) == ("c1", 422, "empty_text", 1)
    assert json.loads(line["body"]) == {"text": ""}
    assert "body_base64" in letter(body=b"\xff\xfe").as_line()


def event(body: bytes, call_id: str | None = "call-7") -> Event:
    headers = {"Content-Type": "application/json"}
    if call_id:
        headers["X-Call-Id"] = call_id
    return Event(body, Headers(headers.items()), "POST", Query("lang=en"), "/")


def test_the_function_keeps_what_it_refuses_for_good_with_its_body_and_headers():
    store = InMemoryDeadLetterStore()
    recorder = RejectRecorder("ner-processor", lambda: store)
    assert recorder.record(event(b'{"text": ""}'), InvalidField("text", "empty", code="empty_text"))
    (kept,) = store.letters()
    assert (kept.call_id, kept.status, kept.error_code, kept.body, kept.recorded_by) == (
        "call-7", 422, "empty_text", b'{"text": ""}', "function")
    assert kept.headers["content-type"] == "application/json" and kept.query == "lang=en"


def test_the_function_keeps_nothing_that_is_retried_or_came_without_a_call_id():
    store = InMemoryDeadLetterStore()
    recorder = RejectRecorder("ner-processor", lambda: store)
    assert not recorder.record(event(b"x"), Overloaded("busy"))
    assert not recorder.record(event(b"x", call_id=None), InvalidField("text", "empty", code="empty_text"))
    assert not RejectRecorder("f", lambda: store, enabled=False).record(event(b"x"), InvalidField("t", "e"))
    assert store.letters() == []


def test_a_letter_that_cannot_be_written_does_not_change_the_refusal():
    store = InMemoryDeadLetterStore()
    store.unreachable = 1
    assert not RejectRecorder("ner-processor", lambda: store).record(event(b"x"), InvalidField("t", "e"))


def test_an_invocation_travels_through_the_queue_unchanged():
    inv = Invocation("ner-processor", "id with spaces", b"\x00body", path="/x", query="a=1",
                     headers={"Content-Type": "text/plain", "X-Callback-Url": "http://cb"}, accepted_at=1.5, redrive=2)
    subject, headers, data = inv.encode()
    assert subject.startswith("faas-request.ner-processor.") and " " not in subject
    assert headers["Nats-Msg-Id"] == "id with spaces:redrive:2"
    assert Invocation.decode(headers, data) == inv and inv.callback_url == "http://cb" and inv.target == "/x?a=1"


def test_a_failed_outcome_becomes_a_letter_with_the_original_request_and_a_callback_with_the_answer():
    inv = Invocation("ner-processor", "c9", b"{}", headers={"Content-Type": "application/json",
                                                           "X-Callback-Url": "http://cb", "X-Forwarded-For": "1.2.3.4"})
    answer = json.dumps({"error": "missing_field", "message": "'text' is required"}).encode()
    code, message = error_of(422, {"Content-Type": "application/json"}, answer)
    outcome = Outcome("c9", "ner-processor", "failed", 422, 1, "rejected", code, message)
    kept = letter_of(inv, outcome)
    assert (kept.error_code, kept.body, kept.content_type) == ("missing_field", b"{}", "application/json")
    assert "X-Forwarded-For" not in kept.headers
    job = callback_job(inv, outcome, {"Content-Type": "application/json"}, answer)
    subject, headers, data = job.encode()
    again = CallbackJob.decode(headers, data)
    assert again.request_headers()["X-Function-Status"] == "422" and again.body == answer
    assert headers["Nats-Msg-Id"] == "c9:callback"
