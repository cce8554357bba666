"""Hostile input against a real ner-processor process and the session's PostgreSQL primary:
request ids that cannot be echoed in a header, declared charsets, byte-order marks and the NUL rule.

The promise checked every time: a complete HTTP answer arrives, and the rows stored under an id are
exactly what the answer for that id said (nothing stored-but-unanswered); a retry behaves the same.
"""

from __future__ import annotations

import http.client
import http.server
import json
import queue
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from devtools.gateway import Gateway, read_stack
from devtools.processes import free_port
from devtools.queueworker import start_queue_worker
from tests.fixtures.queue import start_private_nats

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

TEXT = "Tim Cook visited Berlin"


def send(fn, body: bytes, content_type: str | None = "application/json",
         headers: dict[str, str | bytes] | None = None, path: str = "/function/ner-processor",
         expect_json: bool = True) -> tuple[int, dict, dict | bytes]:
    """One POST with the body and header values as raw bytes (``str`` values are sent as UTF-8, the way
    curl sends what a terminal typed). Returns (status, lower-cased headers, JSON body); a connection
    dropped before a complete answer raises (http.client.RemoteDisconnected), failing the test."""
    port = fn.port if hasattr(fn, "port") else int(fn.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        all_headers = {"Content-Length": str(len(body)), **({"Content-Type": content_type} if content_type else {}),
                       **(headers or {})}
        for name, value in all_headers.items():
            conn.putheader(name, value.encode("utf-8") if isinstance(value, str) else value)
        conn.endheaders(body)
        resp = conn.getresponse()
        raw = resp.read()
        resp_headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    if not expect_json:
        return resp.status, resp_headers, raw
    assert resp_headers.get("content-type") == "application/json", (resp.status, raw[:300])
    return resp.status, resp_headers, json.loads(raw)


def stored(dsn: str, request_id: str) -> dict | None:
    """What the primary holds under ``request_id``: body, metadata and entity tuples, or None."""
    with psycopg.connect(dsn) as conn:
        doc = conn.execute("SELECT body, metadata FROM nlp.documents WHERE request_id = %s",
                           (request_id,)).fetchone()
        ents = conn.execute("SELECT text, label, start_char, end_char FROM nlp.entities WHERE request_id = %s "
                            "ORDER BY ordinal", (request_id,)).fetchall()
    if doc is None:
        assert not ents
        return None
    return {"body": doc[0], "metadata": doc[1], "entities": [tuple(e) for e in ents]}


def answered_entities(body: dict) -> list[tuple]:
    return [(e["text"], e["label"], e["start_char"], e["end_char"]) for e in body["entities"]]


def assert_answer_is_what_is_stored(dsn: str, status: int, headers: dict, body: dict, sent_text: str) -> dict:
    """A 200 whose id is in the header and body, whose offsets point into ``sent_text``, and whose
    entities are the rows stored under that id."""
    assert status == 200, body
    rid = body["request_id"]
    assert headers["x-request-id"] == rid and body["persisted"] is True
    for text, _, start, end in answered_entities(body):
        assert sent_text[start:end] == text
    row = stored(dsn, rid)
    assert row is not None and row["body"] == sent_text and row["entities"] == answered_entities(body)
    return row


# -- item 1: request ids ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad_id", ["请求-1", "😀", f"emoji-{'🚀' * 3}", "Zürich-1"])
def test_an_unechoable_body_request_id_is_answered_422_and_nothing_is_stored_on_every_retry(
        ner_server, admin_dsn, bad_id):
    raw = json.dumps({"text": TEXT, "request_id": bad_id}, ensure_ascii=False).encode()
    answers = [send(ner_server, raw) for _ in range(3)]  # the issue: every retry failed the same way
    for status, headers, body in answers:
        assert (status, body["error"], body["field"]) == (422, "invalid_field", "request_id")
        assert headers["x-request-id"] == body["request_id"] and body["request_id"].isascii()
    assert stored(admin_dsn, bad_id) is None
    escaped = json.dumps({"text": TEXT, "request_id": bad_id}).encode()  # \uXXXX escapes: the same id
    status, _, body = send(ner_server, escaped)
    assert status == 422 and stored(admin_dsn, bad_id) is None


def test_an_unechoable_batch_document_id_is_a_422_and_no_document_of_the_batch_is_stored(ner_server, admin_dsn):
    run = uuid.uuid4().hex[:8]
    raw = json.dumps({"documents": [{"id": f"{run}-ok", "text": TEXT}, {"id": f"{run}-文档", "text": TEXT}]},
                     ensure_ascii=False).encode()
    status, _, body = send(ner_server, raw)
    assert (status, body["field"]) == (422, "documents[1].id")
    assert stored(admin_dsn, f"{run}-ok") is None and stored(admin_dsn, f"{run}-文档") is None


@pytest.mark.parametrize("bad_call_id", ["请求-1", "😀", "tab\there"])
def test_an_unechoable_call_id_is_ignored_and_the_comment_is_stored_under_the_answered_id(
        ner_server, admin_dsn, bad_call_id):
    for _ in range(2):
        status, headers, body = send(ner_server, TEXT.encode(), "text/plain", {"X-Call-Id": bad_call_id})
        assert_answer_is_what_is_stored(admin_dsn, status, headers, body, TEXT)
        assert str(uuid.UUID(body["request_id"])) == body["request_id"]


def test_a_visible_ascii_id_with_inner_spaces_is_stored_and_echoed_and_a_retry_is_a_duplicate(
        ner_server, admin_dsn):
    rid = f"order {uuid.uuid4().hex[:8]} / line 7"
    raw = json.dumps({"text": TEXT, "request_id": rid}).encode()
    first, again = send(ner_server, raw), send(ner_server, raw)
    assert assert_answer_is_what_is_stored(admin_dsn, *first, TEXT) == assert_answer_is_what_is_stored(
        admin_dsn, *again, TEXT)
    assert (first[2]["request_id"], first[2]["duplicate"], again[2]["duplicate"]) == (rid, False, True)


# -- item 3: declared charsets --------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "content_type", "sent_text"), [
    (b"The Z\xc3\xbcrich office of Google hired Tim Cook.", "text/plain; charset=iso-8859-1",
     "The Z\u00c3\u00bcrich office of Google hired Tim Cook."),
    (b"Tim Cook flew to M\xfcnchen with Lufthansa.", "text/plain; charset=iso-8859-1",
     "Tim Cook flew to M\u00fcnchen with Lufthansa."),
    ("\ufeffAngela Merkel met Emmanuel Macron in Paris.".encode("utf-16-le"), "text/plain; charset=utf-16",
     "Angela Merkel met Emmanuel Macron in Paris."),
    ("Zoë Müller joined Siemens in Köln.".encode("utf-16-be"), "text/plain; charset=utf-16",
     "Zoë Müller joined Siemens in Köln."),
    (json.dumps({"text": "Zoë Müller joined Siemens in Köln."}, ensure_ascii=False).encode("latin-1"),
     "application/json; charset=ISO-8859-1", "Zoë Müller joined Siemens in Köln."),
])
def test_a_declared_charset_is_decoded_and_offsets_point_into_the_text_the_client_sent(
        ner_server, admin_dsn, raw, content_type, sent_text):
    call_id = str(uuid.uuid4())
    status, headers, body = send(ner_server, raw, content_type, {"X-Call-Id": call_id})
    assert body.get("request_id") == call_id
    assert_answer_is_what_is_stored(admin_dsn, status, headers, body, sent_text)


@pytest.mark.parametrize("label", ["klingon", "unicode-escape", "base64"])
def test_an_unknown_charset_is_a_json_415_and_nothing_is_stored(ner_server, admin_dsn, label):
    call_id = str(uuid.uuid4())
    status, headers, body = send(ner_server, TEXT.encode(), f"text/plain; charset={label}", {"X-Call-Id": call_id})
    assert (status, body["error"], body["request_id"], headers["x-request-id"]) == (
        415, "unsupported_charset", call_id, call_id)
    assert stored(admin_dsn, call_id) is None


def test_bytes_invalid_in_the_declared_charset_are_a_json_400_and_nothing_is_stored(ner_server, admin_dsn):
    call_id = str(uuid.uuid4())
    status, _, body = send(ner_server, b"caf\xe9 in Paris", "text/plain; charset=us-ascii", {"X-Call-Id": call_id})
    assert (status, body["error"]) == (400, "invalid_encoding") and stored(admin_dsn, call_id) is None


# -- item 4: byte-order marks ----------------------------------------------------------------------

def test_the_issue_bom_reproducer_with_curls_form_type_is_stored_under_bom_1_and_idempotent(
        ner_server, admin_dsn):
    # printf '\xef\xbb\xbf{...}' | curl --data-binary @- (curl's default form content type)
    raw = b'\xef\xbb\xbf{"text":"Tim Cook visited Berlin","request_id":"bom-1"}'
    answers = [send(ner_server, raw, "application/x-www-form-urlencoded") for _ in range(3)]
    rows = [assert_answer_is_what_is_stored(admin_dsn, *answer, TEXT) for answer in answers]
    assert [a[2]["request_id"] for a in answers] == ["bom-1"] * 3
    assert [a[2]["duplicate"] for a in answers] == [False, True, True]
    assert rows[0] == rows[2] and [e[0] for e in rows[0]["entities"]] == ["Tim Cook", "Berlin"]


@pytest.mark.parametrize(("bom", "encoding"), [(b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"),
                                                (b"\x00\x00\xfe\xff", "utf-32-be")])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_a_bom_is_handled_the_same_for_every_content_type(ner_server, admin_dsn, bom, encoding, content_type):
    rid = f"bom-{uuid.uuid4().hex[:8]}"
    if content_type == "text/plain":
        raw, headers = bom + TEXT.encode(encoding), {"X-Call-Id": rid}
    else:
        raw, headers = bom + json.dumps({"text": TEXT, "request_id": rid}).encode(encoding), {}
    status, resp_headers, body = send(ner_server, raw, content_type, headers)
    assert body.get("request_id") == rid
    assert_answer_is_what_is_stored(admin_dsn, status, resp_headers, body, TEXT)


# -- item 5: the NUL rule -------------------------------------------------------------------------

def test_a_literal_backslash_u0000_in_metadata_is_accepted_and_stored_as_six_characters(ner_server, admin_dsn):
    rid = f"nul-{uuid.uuid4().hex[:8]}"
    raw = b'{"text":"Tim Cook visited Berlin","metadata":{"regex":"\\\\u0000","deep":[{"k":"a\\\\u0000"}]},' \
          b'"request_id":"' + rid.encode() + b'"}'
    row = assert_answer_is_what_is_stored(admin_dsn, *send(ner_server, raw), TEXT)
    assert row["metadata"] == {"regex": "\\u0000", "deep": [{"k": "a\\u0000"}]}
    assert len(row["metadata"]["regex"]) == 6


@pytest.mark.parametrize(("fragment", "field"), [
    (b'"text":"Tim Cook\\u0000 visited Berlin"', "text"),
    (b'"text":"Tim Cook visited Berlin","metadata":{"regex":"\\u0000"}', "metadata"),
    (b'"text":"Tim Cook visited Berlin","metadata":{"a":{"b":["\\\\\\u0000"]}}', "metadata"),
    (b'"text":"Tim Cook visited Berlin","metadata":{"k\\u0000":1}', "metadata"),
])
def test_a_real_nul_anywhere_is_a_422_and_nothing_is_stored(ner_server, admin_dsn, fragment, field):
    rid = f"nul-{uuid.uuid4().hex[:8]}"
    status, _, body = send(ner_server, b"{" + fragment + b',"request_id":"' + rid.encode() + b'"}')
    assert (status, body["error"], body["field"], body["request_id"]) == (422, "invalid_field", field, rid)
    assert stored(admin_dsn, rid) is None


# -- the issue's reproducers through the local gateway, sync and async ------------------------------

@pytest.fixture(scope="module")
def gateway(pg_cluster, tmp_path_factory):
    """The gateway with the stack's function processes; /async-function/ on a NATS server of its own,
    delivered by a queue-worker process."""
    log_dir = tmp_path_factory.mktemp("gateway-logs")
    nats = start_private_nats(log_dir)
    gw = Gateway(read_stack(REPO / "stack.yml"), secrets_dir=pg_cluster.secrets_dir,
                 log_dir=log_dir, port=free_port(), nats_url=nats.url)
    gw.start()
    worker = start_queue_worker(nats.url, log_dir, secrets_dir=pg_cluster.secrets_dir,
                                functions={name: fn.url for name, fn in gw.processes.items()})
    yield gw
    worker.stop()
    gw.stop()
    nats.destroy()


@pytest.fixture
def callbacks():
    """An X-Callback-Url receiver: yields (url, queue of (X-Function-Status, X-Call-Id, JSON body))."""
    received: queue.Queue = queue.Queue()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.put((int(self.headers["X-Function-Status"]), self.headers["X-Call-Id"], json.loads(payload)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format, *args):  # noqa: A002
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cb", received
    server.shutdown()
    server.server_close()


def test_gateway_sync_and_async_with_a_non_latin1_id_answer_422_and_store_nothing(gateway, callbacks, admin_dsn):
    url, received = callbacks
    bad_id = f"请求-{uuid.uuid4().hex[:6]}"
    raw = json.dumps({"text": TEXT, "request_id": bad_id}, ensure_ascii=False).encode()
    for _ in range(2):  # the issue: 502 from the gateway on every retry, the document committed
        status, headers, body = send(gateway, raw)
        assert (status, body["error"], body["field"]) == (422, "invalid_field", "request_id")
        assert headers["x-request-id"] == body["request_id"]
        status, headers, _ = send(gateway, raw, path="/async-function/ner-processor",
                                  headers={"X-Callback-Url": url}, expect_json=False)
        assert status == 202
        fn_status, call_id, body = received.get(timeout=30)
        assert (fn_status, call_id, body["error"], body["request_id"]) == (
            422, headers["x-call-id"], "invalid_field", call_id)
    assert stored(admin_dsn, bad_id) is None


def test_gateway_bom_reproducer_sync_then_async_is_one_document_under_its_id(gateway, callbacks, admin_dsn):
    url, received = callbacks
    rid = f"bom-gw-{uuid.uuid4().hex[:6]}"
    raw = b"\xef\xbb\xbf" + json.dumps({"text": TEXT, "request_id": rid}).encode()
    status, headers, body = send(gateway, raw, "application/x-www-form-urlencoded")
    row = assert_answer_is_what_is_stored(admin_dsn, status, headers, body, TEXT)
    assert (body["request_id"], body["duplicate"]) == (rid, False)
    assert send(gateway, raw, "application/x-www-form-urlencoded", path="/async-function/ner-processor",
                headers={"X-Callback-Url": url}, expect_json=False)[0] == 202
    fn_status, _, body = received.get(timeout=30)
    assert (fn_status, body["request_id"], body["duplicate"]) == (200, rid, True)
    assert stored(admin_dsn, rid) == row
