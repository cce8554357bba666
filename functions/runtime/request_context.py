"""The one request context: created once at the edge, it owns the request id and the fields of the
request's one log line.

The request id, by one rule for every function:

1. the body's ``request_id`` when the service finds one (:meth:`RequestContext.adopt`), validated;
2. else the gateway's ``X-Call-Id`` when it passes the rule (OpenFaaS keeps it across async retries,
   so a retried comment keeps its id and stays idempotent); one that fails the rule is ignored (the
   caller may not control the header; the real gateway always sends a UUID);
3. else a new UUID4.

It is decided once and never recomputed: every answer (a 500 included), every log line of the request
(in the model process too) and the writer see the same id. Shapes::

    ctx = RequestContext.from_headers(event.headers)   # the edge (server or handles_errors)
    with request_context.active(ctx): ...             # current() returns ctx on this thread
    ctx.adopt(payload.get("request_id"))              # the service, once it has parsed the body
    ctx.request_id                                    # the id, decided at first use
    ctx.log.update(ner_ms=3.2)                        # fields of the request's one log line

The request id is not a document id: a single comment's document id is its request id, batch documents
have their own (``"<request_id>:<index>"`` unless they name one); docs/data-model.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator
from typing import Any

from functions.runtime.errors import InvalidField

MAX_REQUEST_ID_CHARS = 128

# 1-128 visible ASCII characters (RFC 9110 VCHAR), spaces allowed inside. Every id is echoed in the
# X-Request-Id response header, and a header value outside Latin-1 cannot be written at all; visible ASCII
# is the part of Latin-1 every HTTP stack, proxy and log pipeline passes unchanged.
_REQUEST_ID = re.compile(rf"[\x21-\x7e](?:[\x20-\x7e]{{0,{MAX_REQUEST_ID_CHARS - 2}}}[\x21-\x7e])?")
REQUEST_ID_RULE = (f"1-{MAX_REQUEST_ID_CHARS} visible ASCII characters (spaces allowed inside, "
                   "no control characters)")


def is_request_id(value: Any) -> bool:
    """True when ``value`` passes the request-id rule (:data:`REQUEST_ID_RULE`), so it can be stored and
    echoed in ``X-Request-Id`` as is. Document ids follow the same rule."""
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def validate_id(value: Any, field: str) -> str:
    """``value`` if it passes the request-id rule; raises InvalidField(``field``) (422) otherwise."""
    if not isinstance(value, str):
        raise InvalidField(field, f"'{field}' must be a string")
    if not is_request_id(value):
        raise InvalidField(field, f"'{field}' must be {REQUEST_ID_RULE}")
    return value


class RequestContext:
    """One request's id and log fields. Not shared between threads: the edge creates one per request
    on the thread that runs ``handle``."""

    __slots__ = ("call_id", "log", "_request_id")

    def __init__(self, call_id: str | None = None):
        self.call_id = call_id if is_request_id(call_id) else None
        self.log: dict[str, Any] = {}
        self._request_id: str | None = None

    @classmethod
    def from_headers(cls, headers) -> RequestContext:
        """The context of a request with these headers (anything with a case-insensitive ``.get``, or None)."""
        return cls(headers.get("X-Call-Id") if headers is not None else None)

    @property
    def request_id(self) -> str:
        """The request id, decided at first use: the adopted body id, else the call id, else a new UUID."""
        if self._request_id is None:
            self._request_id = self.call_id or str(uuid.uuid4())
        return self._request_id

    def adopt(self, body_id: Any, field: str = "request_id") -> str:
        """Make the body's ``request_id`` the request id (None keeps rules 2 and 3) and return the id.

        Raises InvalidField(``field``) (422) when it fails the rule — before anything is stored — and
        RuntimeError when the id was already decided otherwise (a service must adopt before using it).
        """
        if body_id is None:
            return self.request_id
        value = validate_id(body_id, field)
        if self._request_id is not None and self._request_id != value:
            raise RuntimeError("the request id was used before the body's request_id was adopted")
        self._request_id = value
        return value


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("request_context", default=None)


def current() -> RequestContext | None:
    """The context of the request running on this thread, or None outside a request."""
    return _current.get()


@contextlib.contextmanager
def active(ctx: RequestContext) -> Iterator[RequestContext]:
    """Make ``ctx`` the current context for the duration of the block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def for_headers(headers) -> RequestContext:
    """The current context, or (outside an edge, e.g. a service called directly) a new one from ``headers``."""
    ctx = _current.get()
    return ctx if ctx is not None else RequestContext.from_headers(headers)


def log_fields() -> dict[str, Any]:
    """The current request's log fields (a throwaway dict outside a request)."""
    ctx = _current.get()
    return ctx.log if ctx is not None else {}
