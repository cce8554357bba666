"""ner-processor request parsing: every caller mistake gets its status and stable error code."""

from __future__ import annotations

import json

import pytest

from functions.runtime.contract import Event, Headers, Query
from functions.runtime.errors import FunctionError
from functions.runtime.http import error_response
from functions.runtime.ner_service import NerService
from functions.runtime.settings import Settings


class _Info:
    def as_dict(self):
        return {"name": "en_test", "version": "0"}


class _NoEngine:
    info = _Info()


@pytest.fixture
def service():
    return NerService(Settings(max_text_chars=50, max_batch_docs=3, max_body_bytes=2000), _NoEngine(), None)


def event(body=b"", content_type="application/json", method="POST", headers=None):
    all_headers = {"Content-Type": content_type} if content_type else {}
    all_headers.update(headers or {})
    if isinstance(body, dict | list):
        body = json.dumps(body).encode()
    return Event(body=body, headers=Headers(all_headers.items()), method=method, query=Query(""), path="/")


def error_of(service, ev) -> tuple[int, str, dict]:
    with pytest.raises(FunctionError) as info:
        service.parse(ev)
    response = error_response(info.value, "rid")
    return response["statusCode"], response["body"]["error"], response


@pytest.mark.parametrize(("ev", "status", "code"), [
    (event(b"{not json"), 400, "invalid_json"),
    (event(b"\xff\xfe{}", "text/plain"), 400, "invalid_utf8"),
    (event(b"x" * 2001, "text/plain"), 413, "payload_too_large"),
    (event({"text": "x" * 51}), 413, "text_too_long"),
    (event({"documents": [{"text": "a"}] * 4}), 413, "too_many_documents"),
    (event(b"hello", "application/xml"), 415, "unsupported_media_type"),
    (event(b"hello", "multipart/form-data; boundary=x"), 415, "unsupported_media_type"),
    (event({"text": "hi"}, method="GET"), 405, "method_not_allowed"),
    (event({}), 422, "missing_field"),
    (event({"text": None}), 422, "missing_field"),
    (event({"text": ""}), 422, "empty_text"),
    (event({"text": "   \n\t"}), 422, "empty_text"),
    (event({"text": 12}), 422, "invalid_field"),
    (event({"text": ["a"]}), 422, "invalid_field"),
    (event({"text": "a\u0000b"}), 422, "invalid_field"),
    (event(b'{"text": "bad \\ud800 surrogate"}'), 400, "invalid_json"),
    (event(b'{"text": "ok", "metadata": {"k": "\\udfff"}}'), 400, "invalid_json"),
    (event(b'{"text": "ok", "metadata": {"n": NaN}}'), 400, "invalid_json"),
    (event(b'{"text": "ok", "metadata": {"n": 1e400}}'), 400, "invalid_json"),
    (event([1, 2]), 422, "invalid_field"),
    (event({"documents": []}), 422, "invalid_field"),
    (event({"documents": "abc"}), 422, "invalid_field"),
    (event({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}), 422, "invalid_field"),
    (event({"documents": [{"id": 5, "text": "x"}]}), 422, "invalid_field"),
    (event({"text": "ok", "request_id": ""}), 422, "invalid_field"),
    (event({"text": "ok", "metadata": "nope"}), 422, "invalid_field"),
    (event(b"  ", "text/plain"), 422, "empty_text"),
])
def test_bad_requests_map_to_status_and_code(service, ev, status, code):
    got_status, got_code, response = error_of(service, ev)
    assert (got_status, got_code) == (status, code)
    assert set(response["body"]) >= {"error", "message", "request_id"}
    assert response["headers"]["Content-Type"] == "application/json"


def test_missing_field_message_names_the_field(service):
    _, _, response = error_of(service, event({"documents": [{"id": "a"}]}))
    assert response["body"]["field"] == "documents[0].text"
    assert "documents[0].text" in response["body"]["message"]


def test_405_carries_allow_header(service):
    _, _, response = error_of(service, event(b"", method="PUT"))
    assert response["headers"]["Allow"] == "POST"


def test_plain_text_body_is_one_comment_with_call_id_as_request_id(service):
    request = service.parse(event(b"Tim Cook visited Berlin\n", "text/plain", headers={"X-Call-Id": "call-1"}))
    assert (request.request_id, request.batch) == ("call-1", False)
    assert request.documents[0].text == "Tim Cook visited Berlin\n"


def test_body_request_id_wins_over_call_id(service):
    request = service.parse(event({"text": "hi", "request_id": "mine"}, headers={"X-Call-Id": "call-1"}))
    assert request.request_id == "mine" and request.documents[0].id == "mine"


def test_curl_default_form_content_type_is_sniffed(service):
    request = service.parse(event(b'{"text": "hello Paris"}', "application/x-www-form-urlencoded"))
    assert request.documents[0].text == "hello Paris"
    request = service.parse(event(b"hello Paris", "application/x-www-form-urlencoded"))
    assert request.documents[0].text == "hello Paris"


def test_batch_ids_default_to_request_id_and_index(service):
    request = service.parse(event({"documents": [{"text": "a"}, {"id": "x", "text": "b"}]},
                                  headers={"X-Call-Id": "c"}))
    assert [d.id for d in request.documents] == ["c:0", "x"] and request.batch


def test_new_uuid_when_no_id_given(service):
    a = service.parse(event({"text": "hi"})).request_id
    b = service.parse(event({"text": "hi"})).request_id
    assert a != b and len(a) == 36


def test_escaped_surrogate_pairs_are_valid_unicode(service):
    request = service.parse(event(b'{"text": "nice \\ud83d\\ude00 Paris"}'))
    assert request.documents[0].text == "nice \U0001F600 Paris"
