"""NerService.process and the one-service-per-process pattern (app.create), without PostgreSQL or the
model: a stand-in recogniser and the real EntityWriter over the in-memory document store."""

from __future__ import annotations

import json

import pytest

from functions.runtime import app, lifecycle, readiness, request_context
from functions.runtime.contract import Event, Headers, Query
from functions.runtime.errors import FunctionError, Timeout, Unavailable
from functions.runtime.http import handles_errors
from functions.runtime.ner_service import NerService
from functions.runtime.persistence import EntityWriter
from functions.runtime.recognizer import Recognizer
from functions.runtime.request_context import RequestContext
from functions.runtime.settings import Settings
from functions.runtime.shapes import Entity
from functions.runtime.stores.memory import InMemoryDocumentStore


class _Info:
    name, version = "en_test", "1.0"

    def as_dict(self):
        return {"name": self.name, "version": self.version}


class _Engine:
    """Recognises every capitalised word as an ORG (enough to check the plumbing)."""

    info = _Info()

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail
        self.closed = False
        self.request_ids: list[str | None] = []

    def submit(self, texts, request_id=None):
        raise NotImplementedError

    def recognize(self, texts, *, request_id=None, timeout=None):
        self.request_ids.append(request_id)
        if self.fail is not None:
            raise self.fail
        out = []
        for text in texts:
            entities, offset = [], 0
            for word in text.split():
                start = text.index(word, offset)
                offset = start + len(word)
                if word[:1].isupper():
                    entities.append(Entity(word, "ORG", start, offset))
            out.append(entities)
        return out

    def ready(self):
        return not self.closed

    def close(self, timeout=30.0):
        self.closed = True


def test_the_stand_in_recogniser_fits_the_seam():
    assert isinstance(_Engine(), Recognizer)


@pytest.fixture
def store():
    return InMemoryDocumentStore()


@pytest.fixture
def service(store):
    writer = EntityWriter(store, write_timeout=5)
    writer.open()
    svc = NerService(Settings(), _Engine(), writer)
    yield svc
    svc.close()


def post(body, content_type="application/json", call_id=None) -> Event:
    headers = {"Content-Type": content_type}
    if call_id:
        headers["X-Call-Id"] = call_id
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return Event(raw, Headers(headers.items()), "POST", Query(""), "/")


def run(service, event, ctx: RequestContext | None = None):
    """parse, process, respond under one request context; returns (response, the context's log fields)."""
    ctx = ctx or RequestContext.from_headers(event.headers)
    with request_context.active(ctx):
        request = service.parse(event)
        return service.respond(request, service.process(request)), ctx.log


def failing(service, event, error: type[BaseException]) -> tuple[BaseException, RequestContext]:
    """The error ``service`` raises for ``event`` and the request context it ran under."""
    ctx = RequestContext.from_headers(event.headers)
    with pytest.raises(error) as info:
        run(service, event, ctx)
    return info.value, ctx


def test_one_comment_is_recognised_persisted_and_answered(service, store):
    response, fields = run(service, post({"text": "we love Acme and Globex", "request_id": "c-1"}))
    body = response["body"]
    assert response["statusCode"] == 200 and response["headers"]["X-Request-Id"] == "c-1"
    assert body["entities"] == [{"text": "Acme", "label": "ORG", "start_char": 8, "end_char": 12},
                                {"text": "Globex", "label": "ORG", "start_char": 17, "end_char": 23}]
    assert body["model"] == {"name": "en_test", "version": "1.0"}
    assert body["persisted"] is True and body["duplicate"] is False and body["commit_lsn"] == "0/1"
    assert store.documents["c-1"]["entity_count"] == 2
    assert service.engine.request_ids == ["c-1"]  # the recogniser gets the request's id
    assert fields["entity_count"] == 2 and fields["entities_by_label"] == {"ORG": 2}


def test_a_repeated_comment_is_a_duplicate(service):
    run(service, post(b"Hello Berlin", "text/plain", call_id="same"))
    response, fields = run(service, post(b"Hello Berlin", "text/plain", call_id="same"))
    assert response["body"]["duplicate"] is True and fields["duplicate_count"] == 1


def test_a_batch_answers_per_document_with_default_ids(service, store):
    response, _ = run(service, post({"request_id": "b", "documents": [{"text": "Acme rocks"},
                                                                       {"id": "x", "text": "no names"}]}))
    docs = response["body"]["documents"]
    assert [d["id"] for d in docs] == ["b:0", "x"]
    assert [len(d["entities"]) for d in docs] == [1, 0]
    assert set(store.documents) == {"b:0", "x"}


def test_without_a_database_the_answer_is_503_carrying_the_request_id():
    service = NerService(Settings(), _Engine(), None)
    error, ctx = failing(service, post({"text": "Acme", "request_id": "r-9"}), Unavailable)
    assert error.code == "database_unavailable" and ctx.request_id == "r-9"
    assert service.ready() is False


def test_a_model_that_does_not_finish_in_time_is_504_with_the_request_id(store):
    service = NerService(Settings(), _Engine(fail=TimeoutError()), EntityWriter(store))
    error, ctx = failing(service, post({"text": "Acme", "request_id": "slow"}), Timeout)
    assert error.status == 504 and ctx.request_id == "slow"


def test_an_engine_error_keeps_its_status(store):
    service = NerService(Settings(), _Engine(fail=FunctionError("boom", code="x", status=429)), EntityWriter(store))
    error, ctx = failing(service, post({"text": "Acme", "request_id": "busy"}), FunctionError)
    assert error.status == 429 and ctx.request_id == "busy"


def test_an_unexpected_engine_crash_is_a_json_500_carrying_the_body_request_id(store):
    service = NerService(Settings(), _Engine(fail=RuntimeError("bug")), EntityWriter(store))

    @handles_errors
    def handle(event, context):
        request = service.parse(event)
        return service.respond(request, service.process(request))

    response = handle(post({"text": "Acme", "request_id": "body-id-7"}, call_id="call-7"), None)
    assert response["statusCode"] == 500 and response["body"]["error"] == "internal_error"
    assert response["body"]["request_id"] == "body-id-7" and response["headers"]["X-Request-Id"] == "body-id-7"


def test_ready_checks_name_the_model_and_the_database(service):
    checks = service.ready_checks()
    assert set(checks) == {"model", "database"}
    assert checks["model"]() is True and checks["database"]() is True


# -- app.create ---------------------------------------------------------------------------------------

class _Probe(app.Service):
    created = 0

    def __init__(self, settings):
        super().__init__(settings)
        _Probe.created += 1
        self.closed = False

    def process(self, request):
        return {"ok": request.request_id}

    def ready_checks(self):
        return {"probe": lambda: True}

    def close(self):
        self.closed = True


def test_create_builds_once_registers_readiness_and_the_shutdown_hook(monkeypatch):
    monkeypatch.setattr(readiness, "_checks", {})
    monkeypatch.setattr(lifecycle, "_hooks", [])
    service = app.create(_Probe, Settings())
    assert _Probe.created >= 1 and readiness.status() == {"probe": True}
    lifecycle.run_shutdown_hooks()
    assert service.closed


def test_the_default_service_edge_uses_the_call_id_and_answers_json():
    service = _Probe(Settings())
    event = Event(b"", Headers([("X-Call-Id", "c-5")]), "GET", Query(""), "/")
    request = service.parse(event)
    assert service.respond(request, service.process(request)) == {
        "statusCode": 200, "body": {"ok": "c-5"},
        "headers": {"Content-Type": "application/json", "X-Request-Id": "c-5"}}


def test_a_service_without_process_is_a_programming_error():
    with pytest.raises(NotImplementedError):
        app.Service(Settings()).process(None)
