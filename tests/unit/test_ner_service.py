"""NerService.process and the one-service-per-process pattern (app.create), without PostgreSQL or the
model: a stand-in engine and the real EntityWriter over the in-memory database."""

from __future__ import annotations

import json

import pytest

from functions.runtime import app, lifecycle, readiness, request_log
from functions.runtime.contract import Event, Headers, Query
from functions.runtime.errors import FunctionError, Timeout, Unavailable
from functions.runtime.ner_service import NerService
from functions.runtime.persistence import EntityWriter
from functions.runtime.settings import Settings
from functions.runtime.shapes import Entity
from tests.unit.inmemory import InMemoryPool


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

    def recognize(self, texts, timeout=None):
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

    def close(self):
        self.closed = True


@pytest.fixture
def pool():
    return InMemoryPool()


@pytest.fixture
def service(pool):
    writer = EntityWriter(pool, write_timeout=5)
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


def run(service, event):
    token = request_log.start()
    try:
        request = service.parse(event)
        return service.respond(request, service.process(request)), request_log.finish(token)
    except BaseException:
        request_log.finish(token)
        raise


def test_one_comment_is_recognised_persisted_and_answered(service, pool):
    response, fields = run(service, post({"text": "we love Acme and Globex", "request_id": "c-1"}))
    body = response["body"]
    assert response["statusCode"] == 200 and response["headers"]["X-Request-Id"] == "c-1"
    assert body["entities"] == [{"text": "Acme", "label": "ORG", "start_char": 8, "end_char": 12},
                                {"text": "Globex", "label": "ORG", "start_char": 17, "end_char": 23}]
    assert body["model"] == {"name": "en_test", "version": "1.0"}
    assert body["persisted"] is True and body["duplicate"] is False and body["commit_lsn"] == "0/1"
    assert pool.database.documents["c-1"]["entity_count"] == 2
    assert fields["entity_count"] == 2 and fields["entities_by_label"] == {"ORG": 2}


def test_a_repeated_comment_is_a_duplicate(service):
    run(service, post(b"Hello Berlin", "text/plain", call_id="same"))
    response, fields = run(service, post(b"Hello Berlin", "text/plain", call_id="same"))
    assert response["body"]["duplicate"] is True and fields["duplicate_count"] == 1


def test_a_batch_answers_per_document_with_default_ids(service, pool):
    response, _ = run(service, post({"request_id": "b", "documents": [{"text": "Acme rocks"},
                                                                       {"id": "x", "text": "no names"}]}))
    docs = response["body"]["documents"]
    assert [d["id"] for d in docs] == ["b:0", "x"]
    assert [len(d["entities"]) for d in docs] == [1, 0]
    assert set(pool.database.documents) == {"b:0", "x"}


def test_without_a_database_the_answer_is_503_carrying_the_request_id():
    service = NerService(Settings(), _Engine(), None)
    with pytest.raises(Unavailable) as info:
        run(service, post({"text": "Acme", "request_id": "r-9"}))
    assert info.value.code == "database_unavailable" and info.value.request_id == "r-9"
    assert service.ready() is False


def test_a_model_that_does_not_finish_in_time_is_504_with_the_request_id(pool):
    service = NerService(Settings(), _Engine(fail=TimeoutError()), EntityWriter(pool))
    with pytest.raises(Timeout) as info:
        run(service, post({"text": "Acme", "request_id": "slow"}))
    assert info.value.status == 504 and info.value.request_id == "slow"


def test_an_engine_error_keeps_its_status(pool):
    service = NerService(Settings(), _Engine(fail=FunctionError("boom", code="x", status=429)), EntityWriter(pool))
    with pytest.raises(FunctionError) as info:
        run(service, post({"text": "Acme", "request_id": "busy"}))
    assert info.value.status == 429 and info.value.request_id == "busy"


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
