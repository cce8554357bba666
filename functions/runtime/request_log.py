"""Per-request log fields, collected while a request runs and written as ONE line when it ends.

Services add numbers (``ner_ms``, ``entity_count``...) with ``fields().update(...)``; the handler edge
(:func:`functions.runtime.http.handles_errors`) emits ``request.completed`` / ``request.failed``.
"""

from __future__ import annotations

import contextvars

_fields: contextvars.ContextVar[dict | None] = contextvars.ContextVar("request_log_fields", default=None)


def start() -> contextvars.Token:
    return _fields.set({})


def fields() -> dict:
    """The current request's field dict (a throwaway dict outside a request)."""
    current = _fields.get()
    return current if current is not None else {}


def finish(token: contextvars.Token) -> dict:
    current = _fields.get() or {}
    _fields.reset(token)
    return current
