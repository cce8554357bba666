"""The one error edge and the request-id rules, without a database or the model: handler errors
(``handles_errors``) and malformed HTTP (the runtime server's own refusals) give the same JSON body
``{"error", "message", "request_id"}`` with the same request-id rules."""

from __future__ import annotations

import json
import socket
import threading
import time
import types
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.runtime import errors, http, request_context, server
from functions.runtime.contract import Context, Event, Headers, Query
from functions.runtime.request_context import RequestContext, is_request_id
from functions.runtime.settings import Settings


def headers(**values) -> Headers:
    return Headers((k.replace("_", "-"), v) for k, v in values.items())


def request_id(hdrs, body_id=None, field: str = "request_id") -> str:
    """The id one request context decides for these headers and body ``request_id``."""
    return RequestContext.from_headers(hdrs).adopt(body_id, field)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# -- request ids ---------------------------------------------------------------------------------------

def test_the_gateway_call_id_is_the_request_id():
    assert request_id(headers(X_Call_Id="call-123")) == "call-123"


def test_the_header_lookup_is_case_insensitive():
    assert request_id(Headers([("x-call-id", "lower")])) == "lower"


# Ids that cannot be echoed in a header as they are: outside Latin-1 (the reproducers), Latin-1
# but not ASCII, control characters, too long, surrounding spaces.
UNECHOABLE_IDS = ["请求-1", "\U0001F600", "id-\U0001F600", "é" * 10, "caf\u00e9", "nbsp\u00a0x", "del\x7f",
                  "new\nline", "cr\rlf", "tab\tinside", "nul\x00", "bell\x07", "x" * 129, " padded", "padded ",
                  "", " "]


@pytest.mark.parametrize("bad", UNECHOABLE_IDS)
def test_an_unusable_call_id_is_ignored_for_a_new_uuid(bad):
    assert is_uuid(request_id(headers(X_Call_Id=bad)))


def test_no_headers_at_all_gives_a_new_uuid():
    assert is_uuid(request_id(None)) and request_id(None) != request_id(None)


def test_the_body_request_id_wins_over_the_call_id():
    assert request_id(headers(X_Call_Id="call"), "from-body") == "from-body"


def test_a_none_body_request_id_falls_back_to_the_call_id():
    assert request_id(headers(X_Call_Id="call"), None) == "call"


@pytest.mark.parametrize("bad", [*UNECHOABLE_IDS, 12, ["a"], {"a": 1}, True])
def test_an_unusable_body_request_id_is_a_422_naming_the_field(bad):
    with pytest.raises(errors.InvalidField) as info:
        request_id(None, bad, "documents[2].id")
    assert info.value.field == "documents[2].id" and info.value.status == 422


@pytest.mark.parametrize("good", ["x" * 128, "a", "order 42 / line 7", "c-1001:3", "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
                                  str(uuid.UUID(int=7))])
def test_visible_ascii_ids_up_to_128_characters_are_usable_from_body_and_header(good):
    assert request_id(None, good) == good
    assert request_id(headers(X_Call_Id=good)) == good
    assert is_request_id(good)


@given(st.text(st.characters(max_codepoint=0x7f), max_size=140) | st.text(max_size=140))
@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
def test_an_id_passes_the_rule_exactly_when_it_is_visible_ascii_without_surrounding_spaces(value):
    # The rule exists so that the X-Request-Id header can always be written.
    expected = (0 < len(value) <= 128 and all(" " <= c <= "~" for c in value) and value.strip(" ") == value)
    assert is_request_id(value) is expected
    if expected:
        value.encode("latin-1")  # what an HTTP/1.1 server must do with a header value


def test_a_response_never_carries_an_id_the_rule_refuses_in_its_header():
    response = http.json_response(200, {"request_id": "请求-1"}, request_id="请求-1")
    assert "X-Request-Id" not in response["headers"] and response["body"]["request_id"] == "请求-1"
    assert http.json_response(200, {}, request_id="ok-1")["headers"]["X-Request-Id"] == "ok-1"


# -- rendering -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("exc", "status", "code", "extra_headers"), [
    (errors.BadRequest("x", code="invalid_json"), 400, "invalid_json", {}),
    (errors.MethodNotAllowed("x", allow="POST"), 405, "method_not_allowed", {"Allow": "POST"}),
    (errors.Conflict("x"), 409, "request_id_conflict", {}),
    (errors.PayloadTooLarge("x", code="text_too_long"), 413, "text_too_long", {}),
    (errors.UnsupportedMediaType("x"), 415, "unsupported_media_type", {}),
    (errors.InvalidField("text", "x", code="missing_field"), 422, "missing_field", {}),
    (errors.Overloaded("x"), 429, "overloaded", {"Retry-After": "1"}),
    (errors.Unavailable("x", code="database_unavailable", retry_after=7), 503, "database_unavailable",
     {"Retry-After": "7"}),
    (errors.Timeout("x"), 504, "timeout", {}),
    (errors.FunctionError("x"), 500, "internal_error", {}),
    (errors.FunctionError("x", code="uri_too_long", status=414), 414, "uri_too_long", {}),
])
def test_every_error_renders_as_json_with_status_code_message_and_request_id(exc, status, code, extra_headers):
    response = http.error_response(exc, "rid-1")
    assert response["statusCode"] == status
    assert response["body"]["error"] == code and response["body"]["message"] == "x"
    assert response["body"]["request_id"] == "rid-1"
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["X-Request-Id"] == "rid-1"
    for key, value in extra_headers.items():
        assert response["headers"][key] == value


def test_an_invalid_field_error_names_the_field():
    body = http.error_response(errors.InvalidField("window", "bad window"), "r")["body"]
    assert body["field"] == "window" and body["error"] == "invalid_field"


def event(method="POST", call_id=None) -> Event:
    hdrs = Headers([("X-Call-Id", call_id)] if call_id else [])
    return Event(b"", hdrs, method, Query(""), "/")


def test_handles_errors_renders_project_errors_with_the_call_id():
    @http.handles_errors
    def handle(ev, context):
        raise errors.Unavailable("down", code="database_unavailable")

    response = handle(event(call_id="c-1"), Context())
    assert response["statusCode"] == 503 and response["body"]["request_id"] == "c-1"
    assert response["headers"]["Retry-After"] == "2"


def test_handles_errors_answers_with_the_request_id_the_service_adopted_from_the_body():
    @http.handles_errors
    def handle(ev, context):
        request_context.current().adopt("from-body")
        raise errors.Conflict("used")

    assert handle(event(call_id="c-1"), Context())["body"]["request_id"] == "from-body"


def test_a_handler_crash_after_the_body_was_parsed_is_a_500_carrying_the_body_request_id():
    @http.handles_errors
    def handle(ev, context):
        request_context.current().adopt("from-body")
        raise KeyError("boom")

    response = handle(event(call_id="c-1"), Context())
    assert response["statusCode"] == 500 and response["body"]["error"] == "internal_error"
    assert response["body"]["request_id"] == "from-body" and response["headers"]["X-Request-Id"] == "from-body"


def test_the_request_id_is_decided_once_and_never_recomputed():
    ctx = RequestContext.from_headers(None)
    first = ctx.request_id
    assert is_uuid(first) and ctx.request_id == first and ctx.adopt(None) == first
    with pytest.raises(RuntimeError):
        ctx.adopt("another")


def test_handles_errors_turns_a_crash_into_a_json_500_without_internals():
    @http.handles_errors
    def handle(ev, context):
        raise KeyError("secret internal detail")

    response = handle(event(), Context())
    assert response["statusCode"] == 500
    assert response["body"]["error"] == "internal_error" and "secret" not in json.dumps(response["body"])
    assert is_uuid(response["body"]["request_id"])


def test_handles_errors_passes_a_success_through():
    @http.handles_errors
    def handle(ev, context):
        return http.json_response(200, {"ok": True}, request_id="r")

    assert handle(event(), Context()) == {"statusCode": 200, "body": {"ok": True},
                                          "headers": {"Content-Type": "application/json", "X-Request-Id": "r"}}


# -- the runtime server's own refusals -----------------------------------------------------------------

class RunningServer:
    """The real uvicorn server of the runtime on a free port, in a thread, with a fake handler module."""

    def __init__(self, app: server.EdgeApp):
        self.app = app
        self.server = server.EdgeServer(server.make_config(app, app.settings, port=0), app, drain_s=0)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.server_address = self.server.servers[0].sockets[0].getsockname()[:2]

    @property
    def handler_module(self):
        return self.app.handler_module

    @handler_module.setter
    def handler_module(self, module):
        self.app.handler_module = module

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def running_server():
    settings = Settings.from_env({"MAX_BODY_BYTES": "100", "PORT": "1", "BODY_READ_TIMEOUT_S": "0.5"})
    module = types.ModuleType("fake_handler")

    @http.handles_errors
    def handle(ev, context):
        if ev.path == "/crash-outside-edge":
            raise RuntimeError("escaped")
        if ev.path == "/echo-id":
            # Sets the header itself: http.json_response would leave out an id that fails the request-id
            # rule, and the server's own encoding is what this route checks.
            return {"statusCode": 200, "body": {"ok": True}, "headers": {"X-Request-Id": ev.body.decode()}}
        return http.json_response(200, {"echo": ev.body.decode()}, request_id=request_context.current().request_id)

    module.handle = handle
    srv = RunningServer(server.EdgeApp(settings, module))
    yield srv
    srv.stop()


def raw(srv, payload: bytes) -> tuple[int, dict[str, str], dict]:
    with socket.create_connection(srv.server_address, timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(rest) >= length[0]:
                break
    if not data.startswith(b"HTTP/"):
        # http.server answers a request line it cannot read as HTTP/0.9: no status line, no headers.
        return 0, {}, json.loads(data)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, hdrs, json.loads(body)


def assert_error(answer, status: int, code: str, request_id: str | None = None):
    """``status`` 0: an HTTP/0.9 answer (body only)."""
    got_status, hdrs, body = answer
    assert got_status == status, body
    assert body["error"] == code and body["message"]
    if request_id is None:
        assert is_uuid(body["request_id"])
    else:
        assert body["request_id"] == request_id
    if status:
        assert hdrs["content-type"] == "application/json"
        assert hdrs["x-request-id"] == body["request_id"]
    return hdrs


def test_a_garbled_request_line_is_a_json_400_with_a_request_id_header(running_server):
    hdrs = assert_error(raw(running_server, b"GET / HXTP/1.1\r\n\r\n"), 400, "invalid_request")
    assert hdrs["connection"] == "close"
    # Not a method the parser knows (the first word of any garbage line): 400 unknown_method.
    assert_error(raw(running_server, b"THIS IS NOT HTTP\r\n\r\n"), 400, "unknown_method")


def test_an_unsupported_http_version_is_a_json_4xx_or_505(running_server):
    status, hdrs, body = raw(running_server, b"GET / HTTP/3.0\r\nHost: x\r\n\r\n")
    assert (status, body["error"]) in {(505, "http_version_not_supported"), (400, "invalid_request")}
    assert hdrs["x-request-id"] == body["request_id"]


def test_an_invalid_content_length_is_a_json_400_with_the_call_id(running_server):
    request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Call-Id: call-7\r\nContent-Length: -5\r\n\r\n"
    assert_error(raw(running_server, request), 400, "invalid_request", "call-7")


def test_a_malformed_chunked_body_is_a_json_400(running_server):
    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Call-Id: c\r\n\r\nzz\r\n"
    assert_error(raw(running_server, request), 400, "invalid_request", "c")


def test_a_body_over_the_limit_is_a_json_413(running_server):
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + b"x" * 101
    assert_error(raw(running_server, request), 413, "payload_too_large")


def test_a_chunked_body_over_the_limit_is_a_json_413_with_the_call_id(running_server):
    chunk = b"x" * 60
    request = (b"POST / HTTP/1.1\r\nHost: x\r\nX-Call-Id: big-1\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"3c\r\n" + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    assert_error(raw(running_server, request), 413, "payload_too_large", "big-1")


def test_a_stalled_body_is_a_json_408_not_a_hang(running_server):
    request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Call-Id: slow-1\r\nContent-Length: 50\r\n\r\nabc"
    started = time.monotonic()
    assert_error(raw(running_server, request), 408, "body_timeout", "slow-1")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(("rid", "sent"), [
    ("请求-1", "%E8%AF%B7%E6%B1%82-1"), ("emoji-\U0001f600", "emoji-%F0%9F%98%80"),
    ("café-1", "café-1"), ("a\r\nSet-Cookie: x=1", "a%0D%0ASet-Cookie:%20x=1"),
])
def test_a_request_id_header_outside_latin_1_is_encoded_never_a_crash(running_server, rid, sent):
    body = rid.encode("utf-8")
    request = b"POST /echo-id HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with socket.create_connection(running_server.server_address, timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert head[0].startswith("HTTP/1.1 200")
    assert [line for line in head if line.lower().startswith("x-request-id:")] == [f"x-request-id: {sent}"]
    assert not any(line.lower().startswith("set-cookie") for line in head)


def test_the_server_applies_the_request_id_rules_to_the_call_id(running_server):
    # (HTTP strips surrounding spaces of a header value; a control character is what reaches the rule)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Call-Id: bad\x07id\r\nContent-Length: -1\r\n\r\n"
    assert_error(raw(running_server, request), 400, "invalid_request")  # a fresh UUID, not "bad\x07id"
    request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Call-Id: " + b"x" * 129 + b"\r\nContent-Length: -1\r\n\r\n"
    assert_error(raw(running_server, request), 400, "invalid_request")


def test_a_handler_crash_outside_the_edge_is_still_a_json_500(running_server):
    module = running_server.handler_module
    original = module.handle
    module.handle = lambda ev, ctx: (_ for _ in ()).throw(RuntimeError("escaped"))
    try:
        request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Call-Id: boom\r\nContent-Length: 0\r\n\r\n"
        assert_error(raw(running_server, request), 500, "internal_error", "boom")
    finally:
        module.handle = original


def test_a_starting_function_answers_503_not_ready_with_retry_after(running_server):
    module, running_server.handler_module = running_server.handler_module, None
    try:
        request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Call-Id: early\r\nContent-Length: 0\r\n\r\n"
        hdrs = assert_error(raw(running_server, request), 503, "not_ready", "early")
        assert hdrs["retry-after"] == "2"
    finally:
        running_server.handler_module = module


def test_a_normal_request_reaches_the_handler(running_server):
    request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Call-Id: ok\r\nContent-Length: 2\r\n\r\nhi"
    status, hdrs, body = raw(running_server, request)
    assert status == 200 and body == {"echo": "hi"} and hdrs["x-request-id"] == "ok"


def test_the_server_runs_on_the_uvloop_event_loop_its_config_names(monkeypatch):
    # uvicorn applies Config(loop=...) only inside Server.run(); serve() runs its own coroutine, so
    # asyncio.run() there would silently give the default selector loop.
    import asyncio

    import uvloop

    seen = {}

    async def fake_run(srv, app, settings, started):
        seen["loop"] = type(asyncio.get_running_loop())
        seen["configured"] = srv.config.loop
        return 0

    monkeypatch.setattr(server, "_run", fake_run)
    assert server.serve(Settings()) == 0
    assert seen["configured"] == "uvloop" and seen["loop"] is uvloop.Loop
