"""The gateway's own behaviour against fake upstreams: framing kept, pooled connections, and a JSON
error (with a request id) for every failure the gateway produces itself."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from devtools.gateway import Gateway, Timeouts
from devtools.processes import free_port
from tests.gateway.conftest import json_body, raw_request, silent_upstream, stack_specs


def _post(path: str, body: bytes, extra: str = "", content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: {content_type}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def assert_json_error(status: int, headers: dict, body: bytes, expect_status: int, code: str) -> dict:
    assert status == expect_status, body
    assert headers["content-type"].startswith("application/json")
    parsed = json_body(body)
    assert parsed["error"] == code and parsed["message"] and parsed["request_id"]
    return parsed


def test_chunked_request_is_forwarded_chunked_with_the_same_bytes(fake_gateway):
    payload = b'{"text": "Tim Cook visited Berlin"}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 7]), payload[i:i + 7]) for i in range(0, len(payload), 7))
    status, _, body = raw_request(fake_gateway.port, (
        b"POST /function/ner-processor.openfaas-fn/sub?x=1 HTTP/1.1\r\nHost: gw\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n" + chunks + b"0\r\n\r\n"))
    seen = json_body(body)
    assert status == 200
    assert seen["body"] == payload.decode() and seen["path"] == "/sub?x=1"
    assert seen["headers"].get("Transfer-Encoding") == "chunked" and "Content-Length" not in seen["headers"]


def test_fixed_length_request_stays_fixed_and_gets_gateway_headers(fake_gateway):
    status, headers, body = raw_request(fake_gateway.port, _post("/function/ner-processor", b'{"text":"a"}',
                                                                  extra="X-Call-Id: call-1\r\n"))
    seen = json_body(body)
    assert status == 200 and seen["headers"]["Content-Length"] == "12"
    assert seen["headers"]["X-Call-Id"] == "call-1" and "X-Start-Time" in seen["headers"]
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert headers["x-call-id"] == "call-1" and float(headers["x-duration-seconds"]) >= 0


def test_large_answer_is_streamed_back_whole(fake_gateway):
    status, _, body = raw_request(fake_gateway.port, b"GET /function/ner-processor/big HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert status == 200 and body == b"x" * (3 * 1024 * 1024)


def test_sequential_requests_reuse_one_pooled_upstream_connection(fake_gateway, echo):
    echo.peers.clear()
    for _ in range(20):
        assert raw_request(fake_gateway.port, _post("/function/ner-processor", b"{}"))[0] == 200
    assert len(echo.peers) == 20 and len(set(echo.peers)) == 1


def test_async_body_arriving_in_many_chunks_is_queued_whole(fake_gateway, echo):
    payload = b"y" * 300_000
    pieces = [payload[i:i + 4096] for i in range(0, len(payload), 4096)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    status, headers, _ = raw_request(fake_gateway.port, (
        b"POST /async-function/ner-processor HTTP/1.1\r\nHost: gw\r\nX-Call-Id: async-big\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"))
    assert status == 202 and headers["x-call-id"] == "async-big"
    deadline = time.monotonic() + 10
    while "async-big" not in echo.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert echo.received["async-big"] == len(payload)


def test_async_body_over_the_limit_gets_json_413(fake_gateway):
    body = b"z" * (1024 * 1024 + 1)
    status, headers, answer = raw_request(fake_gateway.port, _post("/async-function/ner-processor", body))
    assert_json_error(status, headers, answer, 413, "payload_too_large")


def test_invalid_content_length_gets_json_400(fake_gateway):
    status, headers, body = raw_request(fake_gateway.port, b"POST /function/ner-processor HTTP/1.1\r\nHost: gw\r\n"
                                                           b"Content-Length: abc\r\n\r\nhello")
    assert_json_error(status, headers, body, 400, "invalid_request")


def test_malformed_chunk_size_gets_json_400(fake_gateway):
    status, headers, body = raw_request(fake_gateway.port, b"POST /function/ner-processor HTTP/1.1\r\nHost: gw\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
    assert_json_error(status, headers, body, 400, "invalid_request")


def test_malformed_chunk_after_a_good_one_gets_json_400(fake_gateway):
    status, headers, body = raw_request(fake_gateway.port, b"POST /function/ner-processor HTTP/1.1\r\nHost: gw\r\n"
                                                           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nqq\r\n")
    assert_json_error(status, headers, body, 400, "invalid_request")


def test_seventy_thousand_character_url_gets_json_414(fake_gateway):
    status, headers, body = raw_request(
        fake_gateway.port, b"GET /function/ner-processor?q=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert_json_error(status, headers, body, 414, "uri_too_long")


def test_oversized_header_gets_json_431(fake_gateway):
    status, headers, body = raw_request(
        fake_gateway.port, b"GET /function/ner-processor HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
    assert_json_error(status, headers, body, 431, "headers_too_large")


@pytest.mark.parametrize("path", ["/function/nope", "/function/ner-processor.other-ns", "/async-function/nope",
                                  "/function/", "/nothing-here"])
def test_unknown_function_or_route_gets_json_404(fake_gateway, path):
    status, headers, body = raw_request(fake_gateway.port, _post(path, b"x", content_type="text/plain"))
    assert_json_error(status, headers, body, 404, "not_found")


def test_unreachable_function_gets_json_502_with_call_id(fake_gateway):
    status, headers, body = raw_request(fake_gateway.port, _post("/function/entity-stats", b"{}",
                                                                  extra="X-Call-Id: c-502\r\n"))
    parsed = assert_json_error(status, headers, body, 502, "function_unreachable")
    assert parsed["request_id"] == "c-502"


def test_function_slower_than_the_upstream_timeout_gets_json_504(fake_gateway):
    status, headers, body = raw_request(fake_gateway.port,
                                        b"GET /function/ner-processor/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert_json_error(status, headers, body, 504, "upstream_timeout")


def test_hung_function_gets_json_504_and_the_gateway_keeps_serving(tmp_path):
    with silent_upstream() as url:
        gw = Gateway(stack_specs(), log_dir=tmp_path, port=free_port(),
                     upstreams={"ner-processor": url, "entity-stats": url}, timeouts=Timeouts(upstream_s=0.5))
        gw.start()
        try:
            status, headers, body = raw_request(gw.port, _post("/function/ner-processor", b"{}"))
            assert_json_error(status, headers, body, 504, "upstream_timeout")
            assert raw_request(gw.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")[0] == 200
        finally:
            gw.stop()


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("POST", "/system/functions", 501, "not_implemented"),
    ("DELETE", "/system/functions", 501, "not_implemented"),
    ("GET", "/system/secrets", 501, "not_implemented"),
    ("GET", "/system/namespaces", 501, "not_implemented"),
    ("GET", "/metrics", 501, "not_implemented"),
    ("GET", "/ui/", 501, "not_implemented"),
    ("POST", "/system/scale-function/ner-processor", 501, "not_implemented"),
    ("PUT", "/system/function/ner-processor", 405, "method_not_allowed"),
])
def test_routes_not_served_answer_json(fake_gateway, method, path, status, code):
    got, headers, body = raw_request(fake_gateway.port, f"{method} {path} HTTP/1.1\r\nHost: gw\r\n"
                                                        f"Content-Length: 0\r\n\r\n".encode())
    assert_json_error(got, headers, body, status, code)


def test_gateway_start_fails_loudly_when_the_port_is_taken(tmp_path, fake_gateway):
    gw = Gateway(stack_specs(), log_dir=Path(tmp_path), port=fake_gateway.port,
                 upstreams={"ner-processor": "http://127.0.0.1:1", "entity-stats": "http://127.0.0.1:1"})
    with pytest.raises(OSError):
        gw.start()


def test_body_shorter_than_its_content_length_gets_json_408(echo, tmp_path):
    gw = Gateway(stack_specs(), log_dir=tmp_path, port=free_port(),
                 upstreams={"ner-processor": echo.url, "entity-stats": echo.url}, timeouts=Timeouts(read_s=0.5))
    gw.start()
    try:
        status, headers, body = raw_request(gw.port, b"POST /function/ner-processor HTTP/1.1\r\nHost: gw\r\n"
                                                     b"Content-Length: 10\r\n\r\nabc")
        assert_json_error(status, headers, body, 408, "timeout")
    finally:
        gw.stop()


def test_chunked_body_that_stops_mid_line_gets_json_408_not_a_hang(fake_gateway):
    # Headers first, then a chunk-size line that never ends: once the body is being streamed upstream the
    # parser waits for the line's newline, and the upstream timeout (2 s here) ends the request.
    with socket.create_connection(("127.0.0.1", fake_gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /function/ner-processor HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.3)
        sock.sendall(b'{"text": "x"}')
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2]:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in
               (line.split(":", 1) for line in head.decode().split("\r\n")[1:])}
    assert_json_error(int(head.split()[1]), headers, body, 408, "timeout")


def test_expect_100_continue_is_answered_before_the_body(fake_gateway):
    with socket.create_connection(("127.0.0.1", fake_gateway.port), timeout=2) as sock:
        sock.sendall(b"POST /function/ner-processor HTTP/1.1\r\nHost: gw\r\nContent-Length: 13\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # no wait for a timeout
        sock.sendall(b'{"text":"hi"}')
        answer = b""
        while b'"body"' not in answer:
            answer += sock.recv(65536)
    assert b"HTTP/1.1 200 OK" in answer and b'"Expect"' not in answer  # answered here, not forwarded
