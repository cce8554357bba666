"""JSON logging for every function: one JSON object per line on stdout, flat field names.

The field names are a contract shared with ``logstash/`` (pipeline, index template, Kibana objects);
``tests/logging`` fails when one side renames a field. Usage::

    from functions.runtime import logs
    logs.configure("ner-processor", level=settings.log_level)      # once, at process start
    logs.set_static_fields(model_name="...", model_version="...")  # once the model is loaded

    log = logging.getLogger(__name__)
    log.info("request completed", extra={"event": "request.completed", "status_code": 200, ...})

Every line carries ``@timestamp`` (ISO 8601, UTC, milliseconds, ``Z``), ``log.level`` (lower-case),
``message``, ``service``, ``function``, ``logger`` and the static fields, plus whatever the call passes in
``extra`` (``event``, ``request_id``, ``status_code``, ``duration_ms``, ...). A call with ``exc_info`` adds
``error.type``, ``error.message`` and a bounded ``error.stack_trace`` (frames only, never locals).

Guarantees that do not depend on callers' discipline:

* a line is at most ``MAX_LINE_BYTES``: of-watchdog reads the function's stdout with a
  ``bufio.Scanner`` whose buffer is 64 KiB (``log_buffer_size``); a longer line stops its log pipe for
  good. Oversized strings are cut and the line gets ``log.truncated: true``.
* DSN passwords and ``password=...`` values are redacted from the message, every string field and the
  exception text (a safety net: callers must not log secrets, nor raw comment text, in the first place).
* PostgreSQL ``DETAIL`` lines (``Failing row contains (...)`` quotes whole rows, i.e. comment text) are
  never copied into ``error.message`` / ``error.stack_trace``.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

SERVICE = "nlp-enrichment"

# of-watchdog's default log_buffer_size is bufio.MaxScanTokenSize (65536 bytes, newline included) and
# with prefix_logs=true it prepends ~30 bytes; stay well below.
MAX_LINE_BYTES = 60 * 1024
# Per-field caps applied to every line, so the common case never needs the slower fitting loop.
MAX_MESSAGE_CHARS = 8 * 1024
MAX_STACK_TRACE_CHARS = 8 * 1024
MAX_ERROR_MESSAGE_CHARS = 2 * 1024
MAX_OTHER_STRING_CHARS = 2 * 1024
TRUNCATION_MARK = "...[truncated]"
_FIELD_LIMITS = {"message": MAX_MESSAGE_CHARS, "error.stack_trace": MAX_STACK_TRACE_CHARS,
                 "error.message": MAX_ERROR_MESSAGE_CHARS}

# Third-party loggers whose INFO output is noise at our volume (one line per pooled connection, ...).
QUIET_LOGGERS = {
    "psycopg.pool": logging.WARNING,
    "psycopg": logging.WARNING,
    "urllib3": logging.WARNING,
    "filelock": logging.WARNING,
    "asyncio": logging.WARNING,
}

# Keys the formatter owns: a caller's ``extra`` cannot override them.
_OWNED_KEYS = ("@timestamp", "log.level", "message")
# Never cut by the fitting loop (short by construction; Kibana filters on them).
_PROTECTED_KEYS = frozenset({"@timestamp", "log.level", "service", "function", "event", "request_id",
                             "log.truncated", "error.type"})
_RESERVED = frozenset(RESERVED_ATTRS) | {"taskName", "message", "asctime"}

_HANDLER_MARK = "_nlp_enrichment_json_handler"

# --- redaction -----------------------------------------------------------------------------------------

# scheme://user:password@host -> scheme://user:***@host (postgresql://, postgres://, redis://, amqp://...)
# (greedy secret: a raw "@" inside the password must not leave its tail behind)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^\s/]+)@")
# password=secret / password: 'secret' / "password": "secret" (libpq keyword DSNs, dict reprs, JSON)
_KEY_PASSWORD = re.compile(
    r"""(?P<head>(?i:(?:password|passwd|pwd)\b)["']?\s*[=:]\s*)"""
    r"""(?P<secret>'[^']*'|"[^"]*"|[^\s'",;&}]+)"""
)


def redact(text: str) -> str:
    """Mask passwords in DSNs and ``password=...`` pairs; everything else is left as it is."""
    if "@" in text:
        text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    if "pw" in text.lower() or "pass" in text.lower():
        text = _KEY_PASSWORD.sub(_mask_key_password, text)
    return text


def _mask_key_password(match: re.Match) -> str:
    secret = match.group("secret")
    quote = secret[0] if secret[:1] in ("'", '"') else ""
    return f"{match.group('head')}{quote}***{quote}"


_PLAIN_TYPES = (int, float, bool, type(None))


def _redact_value(value: Any) -> Any:
    # Exact-type checks first: this runs for every field of every line, and ABC isinstance is slow.
    kind = type(value)
    if kind is str:
        return redact(value)
    if kind in _PLAIN_TYPES:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Safety net on the handler: masks secrets in the message and in every string ``extra`` field
    before any formatter sees the record (the formatter masks the exception text itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, Mapping):  # logger.info({...}): the dict's values become fields
            record.msg = _redact_value(record.msg)
        else:
            message = record.getMessage()
            redacted = redact(message)
            if redacted != message or record.args:
                # Freeze the formatted message so %-args cannot bring the secret back.
                record.msg, record.args = redacted, ()
        fields = record.__dict__
        for key in fields.keys() - _RESERVED:  # the extras only (a set operation, not a loop over ~20 attrs)
            value = fields[key]
            if type(value) in _PLAIN_TYPES or key.startswith("_"):
                continue
            if isinstance(value, str | Mapping | list | tuple):
                fields[key] = _redact_value(value)
        return True


# --- exceptions ----------------------------------------------------------------------------------------

_DETAIL_LINE = re.compile(r"^\s*(DETAIL|CONTEXT|HINT|QUERY|LINE \d+):", re.MULTILINE)


def safe_exception_message(exc: BaseException) -> str:
    """``str(exc)`` minus what may quote stored data: psycopg errors contribute only their primary
    message (their ``DETAIL`` can be ``Failing row contains (...)``, i.e. a comment's text)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if isinstance(primary, str) and primary:
        message = primary
    else:
        try:
            message = str(exc)
        except Exception:  # a broken __str__ must not lose the log line
            message = f"<unprintable {type(exc).__name__}>"
        found = _DETAIL_LINE.search(message)
        if found:
            message = message[: found.start()].rstrip()
    return _cut(redact(message), MAX_ERROR_MESSAGE_CHARS)


def safe_stack_trace(exc_info) -> str:
    """Frames (file, line, function, source line) of the exception and the type/safe message of its
    causes: no locals, no ``DETAIL``. Keeps the innermost frames when it has to cut."""
    exc_type, exc, tb = exc_info
    if exc is None:
        return ""
    lines = ["Traceback (most recent call last):\n", *traceback.format_tb(tb),
             f"{exc_type.__name__}: {safe_exception_message(exc)}"]
    seen = {id(exc)}
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        lines.append(f"\nCaused by: {type(cause).__name__}: {safe_exception_message(cause)}")
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    text = redact("".join(lines))
    if len(text) > MAX_STACK_TRACE_CHARS:
        text = TRUNCATION_MARK + text[-(MAX_STACK_TRACE_CHARS - len(TRUNCATION_MARK)):]
    return text


# --- formatter -----------------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATION_MARK))] + TRUNCATION_MARK


def format_timestamp(created: float) -> str:
    """``2026-11-21T05:39:00.123Z``: what Logstash's json filter and ES ``date`` parse without help."""
    # Rounded to the microsecond as datetime.fromtimestamp rounds (half to even), then cut to milliseconds.
    fraction, second = math.modf(created)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    return f"{_second_prefix(int(second))}{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second_prefix(second: int) -> str:
    # Every line of the same second shares its date and time: strftime once per second, not per line.
    return datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


class ContractJsonFormatter(JsonFormatter):
    """python-json-logger's JsonFormatter with the project's flat field names and size bound."""

    def __init__(self, static_fields: Callable[[], Mapping[str, Any]] = lambda: {"service": SERVICE}):
        # ensure_ascii: a line is pure ASCII, so its length in bytes is its length in characters.
        super().__init__(json_ensure_ascii=True, reserved_attrs=sorted(_RESERVED))
        # A callable, not a dict: set_static_fields() adds the model fields after configure().
        self._static = static_fields

    def formatException(self, ei) -> str:  # noqa: N802 - logging.Formatter API
        # The base class would render the full traceback, chained exceptions and psycopg DETAIL.
        return safe_stack_trace(ei)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["@timestamp"] = format_timestamp(record.created)
        log_data["log.level"] = record.levelname.lower()
        log_data["message"] = record.message
        log_data.update(self._static())
        log_data["logger"] = record.name

        stack_trace = message_dict.pop("exc_info", None)
        message_dict.pop("stack_info", None)  # stack_info=True dumps are not part of the contract
        extras = dict(message_dict)  # logger.info({...}): a dict message is a set of fields
        for key, value in record.__dict__.items():
            if key not in self._skip_fields and not key.startswith("_"):
                extras[key] = value
        for key, value in extras.items():
            if key not in _OWNED_KEYS:
                log_data[key] = value

        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            log_data.setdefault("error.type", type(exc).__name__)
            log_data.setdefault("error.message", safe_exception_message(exc))
            if stack_trace:
                log_data["error.stack_trace"] = stack_trace

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        truncated = False
        for key, value in log_data.items():
            if not isinstance(value, str) or len(value) <= MAX_OTHER_STRING_CHARS:  # common case: no cut
                continue
            limit = _FIELD_LIMITS.get(key, MAX_OTHER_STRING_CHARS)
            if len(value) > limit:
                log_data[key] = _cut(value, limit)
                truncated = True
        if truncated:
            log_data["log.truncated"] = True
        return log_data

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        line = self._serialize(log_data)
        if len(line) > MAX_LINE_BYTES:
            line = self._fit(log_data)
        return line

    def _serialize(self, log_data: dict[str, Any]) -> str:
        # "%" as \u0025: of-watchdog versions with prefix_logs=false pass each line to log.Printf as
        # the *format*; an escaped percent sign is the same JSON and immune to that.
        return self.jsonify_log_record(log_data).replace("%", "\\u0025")

    def _fit(self, log_data: dict[str, Any]) -> str:
        """Shrink the biggest field until the line fits (each round halves or drops one field). The
        line length is tracked per field, so a pathological line costs a few serializations."""
        data = dict(log_data)
        data["log.truncated"] = True
        line = self._serialize(data)
        excess = len(line) - MAX_LINE_BYTES
        sizes = {key: self._entry_size(key, value) for key, value in data.items()
                 if key not in _PROTECTED_KEYS}
        while excess > 0 and sizes:
            key = max(sizes, key=sizes.__getitem__)
            value = data[key]
            if isinstance(value, str) and len(value) > 64:
                data[key] = _cut(value, len(value) // 2)
                size = self._entry_size(key, data[key])
                excess -= sizes[key] - size
                sizes[key] = size
            else:
                # An oversized object/list cannot be cut meaningfully, and replacing it with a string
                # would clash with its mapping in Elasticsearch (the whole line would be rejected).
                del data[key]
                excess -= sizes.pop(key) + len(", ")
            if excess <= 0:  # confirm the estimate on the real line
                line = self._serialize(data)
                excess = len(line) - MAX_LINE_BYTES
        if excess > 0:  # only protected keys left and still too big: last resort
            line = self._serialize({key: _cut(str(data.get(key, "")), 256) for key in
                                    ("@timestamp", "log.level", "service", "function", "event")}
                                   | {"message": "log line dropped: too large", "log.truncated": True})
        return line

    def _entry_size(self, key: str, value: Any) -> int:
        """Characters ``"key": value`` takes in the line (without the separator)."""
        return len(self._serialize({key: value})) - len("{}")


# --- configuration -------------------------------------------------------------------------------------

class JsonLineHandler(logging.StreamHandler):
    """A StreamHandler that builds the line before it takes the handler's lock and holds the lock only
    for the one write of the finished line. ``logging.Handler.handle`` formats under the lock: with many
    handler threads each request's line (its JSON built while holding the lock, and the GIL passing to
    another thread meanwhile) queued the others behind it."""

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):
            record = rv
        if not rv:
            return rv
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return rv
        with self.lock:
            try:
                self.stream.write(line)
                self.flush()
            except RecursionError:
                raise
            except Exception:
                self.handleError(record)
        return rv


_lock = threading.Lock()
# Replaced, never mutated: formatters in other threads iterate it without taking the lock.
_static_fields: dict[str, Any] = {"service": SERVICE}


def set_static_fields(**fields: Any) -> None:
    """Add fields to every later line (``model_name``, ``model_version`` once the model is loaded).
    A value of None removes the field. Works before or after ``configure``."""
    global _static_fields
    with _lock:
        updated = dict(_static_fields)
        for key, value in fields.items():
            if value is None:
                updated.pop(key, None)
            else:
                updated[key] = value
        _static_fields = updated


def static_fields() -> dict[str, Any]:
    """The fields every line currently starts with (``service``, ``function``, model fields)."""
    return _static_fields


def configure(function: str, level: str = "INFO", stream=None) -> logging.Handler:
    """Install the one JSON handler on the root logger (replacing the previous one: calling it again
    changes level/stream without duplicating lines) and return it.

    ``stream`` defaults to ``sys.stdout`` as it is at call time. Plain ``StreamHandler``s left by an
    earlier ``logging.basicConfig`` are removed: their non-JSON lines would be tagged as parse
    failures in Logstash. Other handlers (pytest's capture, for one) stay."""
    numeric_level = logging.getLevelName(str(level).upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    set_static_fields(service=SERVICE, function=function)

    handler = JsonLineHandler(sys.stdout if stream is None else stream)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(ContractJsonFormatter(static_fields))
    handler.addFilter(RedactingFilter())

    root = logging.getLogger()
    with _lock:
        for old in list(root.handlers):
            if getattr(old, _HANDLER_MARK, False) or type(old) is logging.StreamHandler:
                root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(numeric_level)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, numeric_level))
    # warnings.warn() output would otherwise reach stderr as plain text.
    logging.captureWarnings(True)
    return handler


def configure_if_unset(function: str, level: str = "INFO") -> logging.Handler | None:
    """:func:`configure` unless the process already has logging set up (any root handler): the handler
    module calls it at import, so a function logs contract JSON on stdout under any front end (the
    runtime server configures first; the official template's ``index.py`` + waitress configures
    nothing). Returns the new handler, or None when it left the existing set-up alone."""
    if logging.getLogger().handlers:
        return None
    return configure(function, level)
