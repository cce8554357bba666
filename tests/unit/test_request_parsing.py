"""ner-processor request parsing: every caller mistake gets its status and stable error code."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.runtime import http, request_context
from functions.runtime.contract import Event, Headers, Query
from functions.runtime.errors import FunctionError
from functions.runtime.http import error_response
from functions.runtime.ner_service import NerService
from functions.runtime.request_context import RequestContext
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
    (event(b"\xc3\x28{}", "text/plain"), 400, "invalid_utf8"),
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
    assert request.request_id == "mine" and request.documents[0].document_id == "mine"


def test_curl_default_form_content_type_is_sniffed(service):
    request = service.parse(event(b'{"text": "hello Paris"}', "application/x-www-form-urlencoded"))
    assert request.documents[0].text == "hello Paris"
    request = service.parse(event(b"hello Paris", "application/x-www-form-urlencoded"))
    assert request.documents[0].text == "hello Paris"


def test_batch_ids_default_to_request_id_and_index(service):
    request = service.parse(event({"documents": [{"text": "a"}, {"id": "x", "text": "b"}]},
                                  headers={"X-Call-Id": "c"}))
    assert [d.document_id for d in request.documents] == ["c:0", "x"] and request.batch


def test_new_uuid_when_no_id_given(service):
    a = service.parse(event({"text": "hi"})).request_id
    b = service.parse(event({"text": "hi"})).request_id
    assert a != b and len(a) == 36


def test_escaped_surrogate_pairs_are_valid_unicode(service):
    request = service.parse(event(b'{"text": "nice \\ud83d\\ude00 Paris"}'))
    assert request.documents[0].text == "nice \U0001F600 Paris"


def text_of(request) -> str:
    return request.documents[0].text


# -- request ids: one rule for body ids, batch ids and X-Call-Id ---------------------

@pytest.mark.parametrize("bad_id", ["请求-1", "\U0001F600", "id-\U0001F680", "caf\u00e9", "a\tb", " x"])
def test_a_request_id_that_cannot_be_echoed_in_a_header_is_a_422_before_anything_else(service, bad_id):
    raw = json.dumps({"text": "Tim Cook visited Berlin", "request_id": bad_id}, ensure_ascii=False).encode()
    status, code, response = error_of(service, event(raw))
    assert (status, code, response["body"]["field"]) == (422, "invalid_field", "request_id")
    assert "visible ASCII" in response["body"]["message"]


def test_a_batch_document_id_follows_the_same_rule(service):
    status, code, response = error_of(service, event({"documents": [{"id": "ok", "text": "a"},
                                                                   {"id": "文档", "text": "b"}]}))
    assert (status, code, response["body"]["field"]) == (422, "invalid_field", "documents[1].id")


def test_a_call_id_that_fails_the_rule_is_replaced_by_a_new_uuid(service):
    request = service.parse(event(b"hello", "text/plain", headers={"X-Call-Id": "\u00e9t\u00e9"}))
    assert len(request.request_id) == 36 and request.request_id.isascii()


# -- declared charsets --------------------------------------------------------------

@pytest.mark.parametrize(("raw", "content_type", "expected"), [
    # the issue's reproducers: what the client declared is what is analysed
    (b"The Z\xc3\xbcrich office of Google hired Tim Cook.", "text/plain; charset=iso-8859-1",
     "The Z\u00c3\u00bcrich office of Google hired Tim Cook."),
    (b"M\xfcnchen", "text/plain; charset=iso-8859-1", "M\u00fcnchen"),
    ("\ufeffTim Cook visited M\u00fcnchen".encode("utf-16-le"), "text/plain; charset=utf-16",
     "Tim Cook visited M\u00fcnchen"),
    ("\ufeffTim Cook visited M\u00fcnchen".encode("utf-16-be"), "text/plain; charset=UTF-16",
     "Tim Cook visited M\u00fcnchen"),
    # labels: quoted, upper case, aliases, other parameters around it
    (b"M\xfcnchen", 'text/plain; charset="ISO-8859-1"', "M\u00fcnchen"),
    (b"M\xfcnchen", "text/plain;format=flowed; CHARSET=latin1", "M\u00fcnchen"),
    (b"\x80 5 in Paris", "text/plain; charset=windows-1252", "\u20ac 5 in Paris"),
    ("東京のソニー".encode("shift_jis"), "text/plain; charset=Shift_JIS", "東京のソニー"),
    ("Москва".encode("koi8-r"), "text/plain; charset=koi8-r", "Москва"),
    # UTF-16/32 without a BOM: big-endian (RFC 2781); explicit byte orders as declared
    ("Tim Cook".encode("utf-16-be"), "text/plain; charset=utf-16", "Tim Cook"),
    ("Tim Cook".encode("utf-16-le"), "text/plain; charset=utf-16le", "Tim Cook"),
    ("Tim Cook".encode("utf-32-be"), "text/plain; charset=utf-32", "Tim Cook"),
    # UTF-8: the default, declared, or an empty label
    ("Zoë in Köln".encode(), "text/plain", "Zoë in Köln"),
    ("Zoë in Köln".encode(), "text/plain; charset=utf-8", "Zoë in Köln"),
    ("Zoë in Köln".encode(), "text/plain; charset=", "Zoë in Köln"),
])
def test_a_declared_charset_is_how_a_text_body_is_decoded(service, raw, content_type, expected):
    assert text_of(service.parse(event(raw, content_type))) == expected


@pytest.mark.parametrize(("raw", "content_type"), [
    ('{"text": "M\u00fcnchen"}'.encode("latin-1"), "application/json; charset=iso-8859-1"),
    ('{"text": "M\u00fcnchen"}'.encode("utf-16-be"), "application/json; charset=utf-16"),
    ('{"text": "M\u00fcnchen"}'.encode("utf-32-le"), "application/json; charset=utf-32le"),
    ('{"text": "M\u00fcnchen"}'.encode(), "application/json; charset=UTF-8"),
    ('{"text": "M\u00fcnchen"}'.encode(), "application/json; charset=utf8"),
    ('{"text": "M\u00fcnchen"}'.encode("latin-1"), "application/x-www-form-urlencoded; charset=iso-8859-1"),
])
def test_json_is_utf8_unless_the_client_declared_another_charset(service, raw, content_type):
    assert text_of(service.parse(event(raw, content_type))) == "M\u00fcnchen"


@pytest.mark.parametrize("label", ["klingon", "utf-9", "base64", "rot13", "hex", "zlib", "unicode-escape",
                                   "raw_unicode_escape", "utf-7", "idna", "punycode", "undefined",
                                   "x-user-defined", "utf-8 utf-16"])
@pytest.mark.parametrize("media", ["text/plain", "application/json", "application/x-www-form-urlencoded"])
def test_an_unknown_or_non_text_charset_is_a_415_unsupported_charset(service, label, media):
    status, code, response = error_of(service, event(b'{"text": "hi"}', f'{media}; charset="{label}"'))
    assert (status, code) == (415, "unsupported_charset")
    assert response["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize(("raw", "content_type", "code"), [
    (b"caf\xe9", "text/plain; charset=us-ascii", "invalid_encoding"),
    (b"Tim Cook\x00", "text/plain; charset=utf-16", "invalid_encoding"),  # odd length: a truncated unit
    (b"\xd8\x00\x00A", "text/plain; charset=utf-16be", "invalid_encoding"),  # lone high surrogate
    (b"\x81\x20", "text/plain; charset=shift_jis", "invalid_encoding"),
    (b"\xff\xfe\x00", "text/plain", "invalid_encoding"),  # a UTF-16 BOM, then half a code unit
    (b"caf\xe9", "text/plain; charset=utf-8", "invalid_utf8"),
    (b"caf\xe9", "text/plain", "invalid_utf8"),
    (b'{"text": "caf\xe9"}', "application/json", "invalid_utf8"),
    (b'{"text": "caf\xe9"}', "application/json; charset=ascii", "invalid_encoding"),
])
def test_bytes_invalid_in_the_charset_are_a_400_naming_the_encoding(service, raw, content_type, code):
    status, got, response = error_of(service, event(raw, content_type))
    assert (status, got) == (400, code)


# -- byte-order marks: the same for every content type -------------------------------

BOMS = {"utf-8": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff",
        "utf-32-le": b"\xff\xfe\x00\x00", "utf-32-be": b"\x00\x00\xfe\xff"}


@pytest.mark.parametrize("encoding", list(BOMS))
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None, "application/json",
                                          "application/json; charset=utf-8", "application/vnd.api+json"])
def test_a_bom_before_json_is_dropped_and_the_json_is_read(service, encoding, content_type):
    source = '{"text":"Tim Cook visited Berlin","request_id":"bom-1"}'
    request = service.parse(event(BOMS[encoding] + source.encode(encoding), content_type))
    assert request.request_id == "bom-1" and text_of(request) == "Tim Cook visited Berlin"


@pytest.mark.parametrize("encoding", list(BOMS))
@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=iso-8859-1",
                                          "application/x-www-form-urlencoded", None])
def test_a_bom_before_text_is_dropped_and_decides_the_encoding(service, encoding, content_type):
    request = service.parse(event(BOMS[encoding] + "Zoë visited Köln".encode(encoding), content_type))
    assert text_of(request) == "Zoë visited Köln"


def test_the_issue_reproducer_with_curls_form_type_is_json_under_its_own_id(service):
    raw = b'\xef\xbb\xbf{"text":"Tim Cook visited Berlin","request_id":"bom-1"}'
    first = service.parse(event(raw, "application/x-www-form-urlencoded"))
    again = service.parse(event(raw, "application/x-www-form-urlencoded"))
    assert first == again and first.request_id == "bom-1" and not first.batch


@pytest.mark.parametrize(("raw", "expected"), [
    (b"a=1&b=2", "a=1&b=2"),                        # a real form body is a text, as before
    (b"  \r\n\t{\"text\": \"hi Paris\"}", "hi Paris"),  # JSON after whitespace is sniffed, as before
    (b"Paris {is} nice", "Paris {is} nice"),
    (b"\xc2\xa0{\"text\": \"x\"}", "\u00a0{\"text\": \"x\"}"),  # NBSP is not JSON whitespace: a text
])
def test_form_type_sniffing_is_unchanged_without_a_bom(service, raw, expected):
    assert text_of(service.parse(event(raw, "application/x-www-form-urlencoded"))) == expected


def test_a_bom_in_the_middle_is_part_of_the_text(service):
    assert text_of(service.parse(event("Apple\ufeff in Paris".encode(), "text/plain"))) == "Apple\ufeff in Paris"


# -- the NUL rule: decoded values only ---------------------------------------------

@pytest.mark.parametrize("raw", [
    b'{"text":"Tim Cook visited Berlin","metadata":{"regex":"\\\\u0000"}}',
    b'{"text":"Tim Cook visited Berlin","metadata":{"a":[{"b":"x\\\\u0000y"}],"\\\\u0000":1}}',
    b'{"text":"Tim Cook visited Berlin \\\\u0000","source":"s\\\\u0000"}',
    b'{"documents":[{"text":"a \\\\u0000","metadata":{"r":"\\\\\\\\\\\\u0000"}}]}',
])
def test_an_escaped_backslash_before_u0000_is_six_characters_and_accepted(service, raw):
    request = service.parse(event(raw))
    doc = request.documents[0]
    stored = json.dumps([doc.text, doc.source, doc.metadata])
    assert "\\\\u0000" in stored and "\x00" not in doc.text


def test_the_issue_reproducer_keeps_the_six_characters_in_metadata(service):
    request = service.parse(event(b'{"text":"Tim Cook visited Berlin","metadata":{"regex":"\\\\u0000"}}'))
    assert request.documents[0].metadata == {"regex": "\\u0000"} and len(request.documents[0].metadata["regex"]) == 6


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"text":"a\\u0000b"}', "text"),
    (b'{"text":"ok","metadata":{"k":"\\u0000"}}', "metadata"),
    (b'{"text":"ok","metadata":{"k":{"deep":[1,["x\\u0000"]]}}}', "metadata"),
    (b'{"text":"ok","metadata":{"k\\u0000":1}}', "metadata"),
    (b'{"text":"ok","metadata":{"r":"\\\\\\u0000"}}', "metadata"),  # a backslash, then a real NUL
    (b'{"text":"ok","source":"\\u0000"}', "source"),
    (b'{"documents":[{"text":"ok","metadata":{"a":["\\u0000"]}}]}', "documents[0].metadata"),
])
def test_a_real_nul_anywhere_is_still_a_422_naming_the_field(service, raw, field):
    status, code, response = error_of(service, event(raw))
    assert (status, code, response["body"]["field"]) == (422, "invalid_field", field)


def test_a_nul_from_a_declared_charset_is_a_422_too(service):
    status, code, _ = error_of(service, event("Tim\x00Cook".encode("utf-16-be"), "text/plain; charset=utf-16"))
    assert (status, code) == (422, "invalid_field")


def test_deep_metadata_is_checked_without_recursion_limits(service):
    raw = b'{"text":"ok","metadata":{"a":' + b"[" * 900 + b'"\\u0000"' + b"]" * 900 + b"}}"
    status, _, _ = error_of(service, event(raw))
    assert status in (400, 422)  # 400 only if json.loads itself refuses the depth


@pytest.mark.parametrize(("ev", "field"), [
    (event({"text": "a\u0000b", "request_id": "mine-1"}), "text"),
    (event({"text": "ok", "metadata": [1], "request_id": "mine-1"}), "metadata"),
    (event({"documents": [{"text": ""}], "request_id": "mine-1"}), "documents[0].text"),
    (event(b"", "text/plain", headers={"X-Call-Id": "mine-1"}), "body"),
])
def test_an_error_after_the_id_passed_the_rule_carries_the_callers_id(service, ev, field):
    ctx = RequestContext.from_headers(ev.headers)
    with request_context.active(ctx), pytest.raises(FunctionError) as info:
        service.parse(ev)
    assert ctx.request_id == "mine-1" and info.value.field == field


# -- decoding as a property: the text the client encoded is the text analysed ---------------------------

_CODECS = {"utf-8": "utf-8", "utf-16": "utf-16-be", "utf-16le": "utf-16-le", "UTF-16BE": "utf-16-be",
           "utf-32": "utf-32-be", "utf-32le": "utf-32-le", "iso-8859-1": "latin-1", "windows-1252": "cp1252",
           "shift_jis": "shift_jis", "koi8-r": "koi8-r", "gb18030": "gb18030"}
_BOM_OF = {"utf-8": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff",
           "utf-32-le": b"\xff\xfe\x00\x00", "utf-32-be": b"\x00\x00\xfe\xff"}


@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=60), label=st.sampled_from(list(_CODECS)),
       with_bom=st.booleans())
@settings(max_examples=3000, deadline=None, derandomize=True, database=None)
def test_any_text_encoded_as_declared_decodes_to_itself(text, label, with_bom):
    codec = _CODECS[label]
    try:
        raw = text.encode(codec)
    except UnicodeEncodeError:
        return  # not representable in that charset: nothing a client could send
    if text.startswith("\x00"):
        return  # a leading NUL can read as part of a UTF-32 mark (00 00 FE FF, FF FE 00 00); 422 anyway
    bom = _BOM_OF.get(codec, b"") if with_bom else b""
    expected = text if bom or codec not in _BOM_OF else text.removeprefix("\ufeff")  # a leading U+FEFF is a BOM
    assert http.decode_text(bom + raw, label) == expected


def test_the_invalid_byte_is_named_by_its_position_in_the_body_as_sent(service):
    _, _, response = error_of(service, event(b"\xef\xbb\xbfab\xff", "text/plain"))
    assert "byte 5" in response["body"]["message"]
    _, _, response = error_of(service, event(b"\xfe\xff\x00a\xd8\x00", "text/plain"))
    assert "byte 4" in response["body"]["message"] and response["body"]["error"] == "invalid_encoding"
