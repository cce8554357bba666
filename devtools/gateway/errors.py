"""The gateway's own error answers: JSON ``{"error", "message", "request_id"}``, also for the framing
errors aiohttp answers itself (bad request line, headers, Content-Length or chunks, over-long lines)."""

from __future__ import annotations

import json
import logging
import uuid

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

# The longest request line / header line accepted. Go's net/http (the real gateway) allows 1 MiB of
# headers; the function behind it (http.server) refuses request lines over 64 KiB, so the gateway
# refuses them first, with JSON.
MAX_LINE_BYTES = 65536
# One byte less for a header field, so a LineTooLong error tells which limit it hit (aiohttp's parser
# names neither): the request line's limit -> 414, a header's -> 431.
MAX_FIELD_BYTES = MAX_LINE_BYTES - 1


def error_body(code: str, message: str, request_id: str | None) -> bytes:
    """The JSON bytes of an error answer (a new request id when none is given)."""
    return json.dumps({"error": code, "message": message, "request_id": request_id or str(uuid.uuid4())},
                      separators=(",", ":")).encode()


def json_error(status: int, code: str, message: str, request_id: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    """The gateway's own error answer: JSON ``{"error", "message", "request_id"}``."""
    return web.Response(status=status, body=error_body(code, message, request_id),
                        content_type="application/json", headers=headers)


def bad_body(exc: BaseException | None, call_id: str) -> web.Response:
    """400 ``invalid_request`` for a request body that could not be read; the connection is closed."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    log.warning("bad request body", extra={"event": "gateway.bad_request", "request_id": call_id,
                                           "error.message": str(message)[:300]})
    resp = json_error(400, "invalid_request", f"request body could not be read: {message}"[:300], call_id)
    resp.force_close()
    return resp


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's protocol handler, with JSON instead of text/plain for the errors it answers itself
    (unparseable request line or headers, bad Content-Length or chunk framing, over-long lines)."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The JSON error answer for a request aiohttp could not parse (414 / 431 for over-long lines);
        raises ConnectionError once the answer has started."""
        if request.writer.output_size > 0:  # the answer has started: nothing else can be sent
            raise ConnectionError("response already started")
        code = "internal_error" if status >= 500 else "invalid_request"
        if isinstance(exc, LineTooLong):
            url = len(exc.args) > 1 and exc.args[1] == MAX_LINE_BYTES
            status, code = (414, "uri_too_long") if url else (431, "headers_too_large")
            text = f"{'request line' if url else 'a header line'} longer than {exc.args[1]} bytes"
        else:
            text = (exc.message if isinstance(exc, HttpProcessingError) and exc.message else message) or "bad request"
            text = str(text).splitlines()[0]
        log.warning("gateway rejected a request", extra={
            "event": "gateway.bad_request", "status_code": status, "error_code": code,
            "error.message": str(text)[:300]})
        resp = web.Response(status=status, body=error_body(code, str(text)[:300], None),
                            content_type="application/json")
        resp.force_close()
        return resp


class JsonErrorServer(web.Server):
    """``web.Server`` whose connections use :class:`JsonErrorRequestHandler`."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)
