"""The HTTP edge of every function: body decoding, the request-id rules, JSON responses and the ONE
place that renders a JSON error (:func:`error_response`: handler errors through :func:`handles_errors`,
malformed HTTP through the runtime server).

Everything here returns python3-http response dicts (``statusCode``, ``body``, ``headers``), so a
handler using it runs unchanged under the official OpenFaaS template.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from functions.runtime import metrics, request_log, settings
from functions.runtime.errors import (
    BadRequest,
    FunctionError,
    InvalidField,
    PayloadTooLarge,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID_CHARS = 128

# curl -d sends form encoding and some clients send nothing: their bodies are sniffed (JSON object or text).
_SNIFFED_TYPES = {"", "application/x-www-form-urlencoded"}


INTERNAL_ERROR = FunctionError("internal error; the request was not processed")


def json_response(status: int, body: Any, *, request_id: str | None = None,
                  headers: dict[str, str] | None = None) -> dict:
    out_headers = {"Content-Type": "application/json"}
    if request_id:
        out_headers[REQUEST_ID_HEADER] = request_id
    if headers:
        out_headers.update(headers)
    return {"statusCode": status, "body": body, "headers": out_headers}


def error_response(exc: FunctionError, request_id: str | None) -> dict:
    """``exc`` as a JSON error response: ``{"error": code, "message", "request_id"[, "field"]}`` with
    its status and headers (``Retry-After``, ``Allow``) plus ``X-Request-Id``."""
    body = {"error": exc.code, "message": exc.message, "request_id": request_id}
    if isinstance(exc, InvalidField):
        body["field"] = exc.field
    return json_response(exc.status, body, request_id=request_id, headers=exc.headers)


_UNSET = object()


def request_id(headers, given: Any = _UNSET, field: str = "request_id") -> str:
    """The request id, by the one rule set of the project.

    ``given`` (the body's ``request_id``) when it is not None, validated (InvalidField(``field``) when
    unusable); else the gateway's ``X-Call-Id`` from ``headers`` (anything with a case-insensitive
    ``.get``, or None) when usable (it is kept across async retries; an unusable one is ignored); else a
    new UUID. Usable: 1-128 printable characters without surrounding whitespace.
    """
    if given is not _UNSET and given is not None:
        return validate_request_id(given, field)
    value = headers.get("X-Call-Id") if headers is not None else None
    if isinstance(value, str) and _valid_request_id(value):
        return value
    return str(uuid.uuid4())


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= MAX_REQUEST_ID_CHARS and value.isprintable() and value.strip() == value


def validate_request_id(value: Any, field: str) -> str:
    """``value`` if it is a usable id (see :func:`request_id`); raises InvalidField(``field``)."""
    if not isinstance(value, str):
        raise InvalidField(field, f"'{field}' must be a string")
    if not _valid_request_id(value):
        raise InvalidField(field, f"'{field}' must be 1-{MAX_REQUEST_ID_CHARS} printable characters "
                                  "without surrounding spaces")
    return value


def media_type(event) -> str:
    raw = event.headers.get("Content-Type", "") if event.headers is not None else ""
    return (raw or "").split(";", 1)[0].strip().lower()


def decode_body(event, *, max_bytes: int) -> tuple[str, Any]:
    """Return ``("json", value)`` or ``("text", str)`` for the request body.

    Raises PayloadTooLarge (413), UnsupportedMediaType (415), BadRequest (400: invalid UTF-8 or JSON).
    """
    body = event.body or b""
    if isinstance(body, str):  # tolerate str bodies from other runtimes
        body = body.encode("utf-8")
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}")
    kind = media_type(event)
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        as_json = True
    elif kind == "text/plain":
        as_json = False
    elif kind in _SNIFFED_TYPES:
        as_json = body.lstrip()[:1] in (b"{", b"[")
    else:
        raise UnsupportedMediaType(f"content type {kind!r} is not supported; send application/json "
                                   "or text/plain")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8 (byte {exc.start})", code="invalid_utf8") from None
    if not as_json:
        return "text", text
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadRequest("request body JSON is nested too deeply", code="invalid_json") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(body):
        # \ud800-style escapes decode to lone surrogates, which no database or log line can encode;
        # valid pairs (emoji) pass. Only bodies that contain such an escape pay for this check.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("request body JSON contains an unpaired surrogate escape (invalid Unicode)",
                             code="invalid_json") from None
    return "json", value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"number {literal[:20]} is out of range")
    return value


def handles_errors(handle: Callable) -> Callable:
    """Decorator for ``handle(event, context)``: the error edge and the request log line.

    Project exceptions become JSON error responses and anything unexpected a JSON 500. Each call writes
    one ``request.completed`` (2xx/3xx) or ``request.failed`` line with the fields the services
    collected; never the request body.
    """

    @functools.wraps(handle)
    def wrapper(event, context):
        token = request_log.start()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            response = handle(event, context)
        except FunctionError as exc:
            error = exc
            response = error_response(exc, getattr(exc, "request_id", None) or request_id(event.headers))
        except Exception as exc:
            error = exc
            rid = request_id(event.headers)
            log.error("unhandled error in handler", exc_info=True, extra={
                "event": "request.crashed", "request_id": rid, "error.type": type(exc).__name__})
            response = error_response(INTERNAL_ERROR, rid)
        fields = request_log.finish(token)
        seconds = time.perf_counter() - started
        status = response.get("statusCode", 200) if isinstance(response, dict) else 200
        metrics.observe_request(settings.current().function_name, status, seconds, fields)
        headers = response.get("headers") or {} if isinstance(response, dict) else {}
        fields["request_id"] = headers.get(REQUEST_ID_HEADER) or fields.get("request_id")
        fields.update(status_code=status, duration_ms=round(seconds * 1000.0, 3),
                      method=event.method)
        if error is None:
            fields["event"] = "request.completed"
            log.info("request completed", extra=fields)
        else:
            fields.update({"event": "request.failed", "error.type": type(error).__name__,
                           "error.code": getattr(error, "code", "internal_error"),
                           "error.message": getattr(error, "message", "internal error")})
            log.log(logging.ERROR if status >= 500 else logging.WARNING, "request failed", extra=fields)
        return response

    return wrapper
