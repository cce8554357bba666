"""The HTTP edge of every function: body decoding, JSON responses and the ONE place that renders a
JSON error (:func:`error_response`: handler errors through :func:`handles_errors`,
malformed HTTP through the runtime server).

Everything here returns python3-http response dicts (``statusCode``, ``body``, ``headers``), so a
handler using it runs unchanged under the official OpenFaaS template.
"""

from __future__ import annotations

import codecs
import email.message
import email.utils
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from functions.runtime import metrics, request_context, settings
from functions.runtime.errors import (
    BadRequest,
    FunctionError,
    InvalidField,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from functions.runtime.request_context import RequestContext, is_request_id

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"

# curl -d sends form encoding and some clients send nothing: their bodies are sniffed (JSON object or text).
_SNIFFED_TYPES = {"", "application/x-www-form-urlencoded"}


INTERNAL_ERROR = FunctionError("internal error; the request was not processed")


def json_response(status: int, body: Any, *, request_id: str | None = None,
                  headers: dict[str, str] | None = None) -> dict:
    """A python3-http response dict; ``X-Request-Id`` only for an id that passes the request-id rule
    (:func:`functions.runtime.request_context.is_request_id`: every id the edge decides does; the guard
    keeps a service's own id from breaking the header)."""
    out_headers = {"Content-Type": "application/json"}
    if is_request_id(request_id):
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


def media_type(event) -> str:
    """The lower-cased media type of the request's ``Content-Type`` ("" when absent)."""
    return content_type(event)[0]


def content_type(event) -> tuple[str, str | None]:
    """``(media type lower-cased, charset label or None)`` of the request's ``Content-Type``.

    Parsed by the standard library's MIME header parser (quoted values, repeated ``;``); an empty
    ``charset=`` counts as none.
    """
    raw = event.headers.get("Content-Type", "") if event.headers is not None else ""
    return _parse_content_type(raw or "")


@functools.lru_cache(maxsize=256)  # a handful of distinct values in practice; the parser costs ~10 us
def _parse_content_type(raw: str) -> tuple[str, str | None]:
    if ";" not in raw:  # no parameters: nothing for the parser to do
        return raw.strip().lower(), None
    message = email.message.Message()
    message["Content-Type"] = raw
    kind = message.get_params(header="Content-Type", failobj=[("", "")])[0][0].strip().lower()
    charset = message.get_param("charset", header="Content-Type")
    if isinstance(charset, tuple):  # RFC 2231 form charset*=...: (charset, language, value)
        charset = email.utils.collapse_rfc2231_value(charset)
    charset = (charset or "").strip()
    return kind, charset or None


# Byte-order marks, longest first (the UTF-32 LE mark begins with the UTF-16 LE one). A BOM decides the
# encoding over a declared charset (as the WHATWG Encoding Standard decodes) and is not part of the text.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# Python's own text codecs that are not character sets (docs: "Python Specific Encodings"): they would
# turn escapes into characters (unicode-escape) or are not meant for data; UTF-7 hides characters in
# ASCII-looking bytes (the WHATWG standard forbids it).
_NOT_CHARSETS = frozenset({"idna", "mbcs", "oem", "palmos", "punycode", "raw-unicode-escape", "undefined",
                           "unicode-escape", "utf-7"})
_JSON_WHITESPACE = " \t\n\r\x0b\x0c"  # what bytes.lstrip() stripped before sniffing: kept as it was


@functools.lru_cache(maxsize=64)
def codec_for(label: str) -> str | None:
    """The Python codec name for a ``charset`` label (``"ISO-8859-1"`` -> ``"iso8859-1"``), or None when
    Python has no such character set (unknown labels, binary transforms, :data:`_NOT_CHARSETS`)."""
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    # Binary and text transforms (base64, zlib, rot13) are registered codecs too; the flag marks them.
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def decode_text(body: bytes, charset: str | None) -> str:
    """``body`` as text by the one rule for every content type: a byte-order mark (UTF-8/16/32) decides
    the encoding and is dropped; else the declared ``charset``; else UTF-8 (RFC 8259 for JSON, and what
    every client of text/plain sends). Offsets of entities refer to this text.

    Raises UnsupportedMediaType (415 ``unsupported_charset``) for a charset Python does not know and
    BadRequest (400 ``invalid_utf8`` for UTF-8, ``invalid_encoding`` for other charsets) for bytes
    that are invalid in the encoding.
    """
    codec, skipped = None, 0
    for bom, bom_codec in _BOMS:
        if body.startswith(bom):
            body, codec, skipped = body[len(bom):], bom_codec, len(bom)
            break
    if codec is None and charset is not None:
        codec = codec_for(charset)
        if codec is None:
            raise UnsupportedMediaType(f"charset {charset[:40]!r} is not supported; send UTF-8 (or declare a "
                                       "character set Python knows, e.g. iso-8859-1, utf-16)",
                                       code="unsupported_charset")
    codec = codec or "utf-8"
    if codec == "utf-8-sig":  # the BOM was handled above, the same way for every codec
        codec = "utf-8"
    elif codec in ("utf-16", "utf-32"):  # no BOM: big-endian (RFC 2781 4.3), not Python's native order
        codec += "-be"
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        if codec == "utf-8":
            raise BadRequest(f"request body is not valid UTF-8 (byte {skipped + exc.start})",
                             code="invalid_utf8") from None
        raise BadRequest(f"request body is not valid {codec} (byte {skipped + exc.start})",
                         code="invalid_encoding") from None
    return text


def decode_body(event, *, max_bytes: int) -> tuple[str, Any]:
    """Return ``("json", value)`` or ``("text", str)`` for the request body.

    Content types: ``application/json`` and ``application/*+json`` are JSON; ``text/plain`` is text;
    none or ``application/x-www-form-urlencoded`` (curl's default) are sniffed after decoding (a JSON
    object or array, else text). Every type is decoded by :func:`decode_text` (BOM, then ``charset``,
    then UTF-8).

    Raises PayloadTooLarge (413), UnsupportedMediaType (415 ``unsupported_media_type`` or
    ``unsupported_charset``), BadRequest (400: ``invalid_utf8``, ``invalid_encoding``, ``invalid_json``).
    """
    body = event.body or b""
    if isinstance(body, str):  # tolerate str bodies from other runtimes
        body = body.encode("utf-8")
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}")
    kind, charset = content_type(event)
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        as_json = True
    elif kind == "text/plain":
        as_json = False
    elif kind in _SNIFFED_TYPES:
        as_json = None  # decided on the decoded text
    else:
        raise UnsupportedMediaType(f"content type {kind!r} is not supported; send application/json "
                                   "or text/plain")
    text = decode_text(body, charset)
    if as_json is None:
        as_json = text.lstrip(_JSON_WHITESPACE)[:1] in ("{", "[")
    if not as_json:
        return "text", text
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadRequest("request body is JSON nested too deeply", code="invalid_json") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(text):
        # \ud800-style escapes decode to lone surrogates, which no database or log line can encode;
        # valid pairs (emoji) pass. Only bodies that contain such an escape pay for this check.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("request body JSON contains an unpaired surrogate escape (invalid Unicode)",
                             code="invalid_json") from None
    return "json", value


def contains_nul(value: Any) -> bool:
    """True when a decoded JSON value (str, list, dict; nested, keys included) holds the character
    U+0000, which PostgreSQL cannot store in text or jsonb. Looks at decoded values only: the six
    characters backslash-u-0-0-0-0 are not a NUL. Iterative, so any depth json.loads accepted is fine."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return True
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return False


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


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
        # The runtime server creates the request's context before calling handle(); under the official
        # template (flask + waitress) nothing has, so this is the edge.
        ctx = request_context.current()
        if ctx is not None:
            return _handle(handle, event, context, ctx)
        ctx = RequestContext.from_headers(event.headers)
        with request_context.active(ctx):
            return _handle(handle, event, context, ctx)

    return wrapper


def _handle(handle: Callable, event, context, ctx: RequestContext) -> dict:
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        response = handle(event, context)
    except FunctionError as exc:
        error = exc
        response = error_response(exc, ctx.request_id)
    except Exception as exc:
        error = exc
        log.error("unhandled error in handler", exc_info=True, extra={
            "event": "request.crashed", "request_id": ctx.request_id, "error.type": type(exc).__name__})
        response = error_response(INTERNAL_ERROR, ctx.request_id)
    fields = ctx.log
    seconds = time.perf_counter() - started
    status = response.get("statusCode", 200) if isinstance(response, dict) else 200
    metrics.observe_request(settings.current().function_name, status, seconds, fields)
    fields["request_id"] = ctx.request_id
    fields.update(status_code=status, duration_ms=round(seconds * 1000.0, 3), method=event.method)
    if error is None:
        fields["event"] = "request.completed"
        log.info("request completed", extra=fields)
    else:
        fields.update({"event": "request.failed", "error.type": type(error).__name__,
                       "error.code": getattr(error, "code", "internal_error"),
                       "error.message": getattr(error, "message", "internal error")})
        log.log(logging.ERROR if status >= 500 else logging.WARNING, "request failed", extra=fields)
    return response
