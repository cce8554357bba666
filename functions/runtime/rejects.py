"""The inputs a function refuses for good, kept as dead letters (``nlp.dead_letters``).

In the cluster OpenFaaS's own queue-worker delivers asynchronous invocations and keeps nothing of those
that fail: a 422 is logged by it and the body is gone. The function itself therefore records every
request it refuses for good (:data:`REJECT_STATUSES`) that came through a gateway (it carries a usable
``X-Call-Id``), with the original body, content type, path, query and the headers that matter, so the
input can be listed and sent again (``python -m functions.runtime.dead_letters``). A synchronous caller
got the same error in its answer; its letter is kept all the same (the function cannot tell the two
apart: OpenFaaS's queue-worker sends the original request's headers).

Shapes::

    recorder = RejectRecorder.for_settings("ner-processor", settings)   # lazy pool on ner-writer-dsn
    @handles_errors
    @records_rejects(recorder)
    def handle(event, context): ...

Only the error path pays: nothing is connected until the first refusal, a 2xx never touches it. A
letter that cannot be written (the primary is away) is logged as ``dead_letter.write_failed`` and the
refusal answered as it is.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from urllib.parse import urlencode

import psycopg

from functions.runtime import credentials, lifecycle, metrics
from functions.runtime.db import Database, ServerDown, make_pool
from functions.runtime.errors import FunctionError
from functions.runtime.request_context import is_request_id
from functions.runtime.settings import Settings
from functions.runtime.stores.dead_letters import REJECTED, DeadLetter, DeadLetterStore, PgDeadLetterStore

log = logging.getLogger(__name__)

# Refused for good: the same request fails the same way on every try. (429 and 5xx are retried; 405 and
# 404 never reach a queue: the gateway refuses them.)
REJECT_STATUSES = frozenset({400, 409, 413, 415, 422})
# The request headers a redrive needs again.
KEPT_HEADERS = ("content-type", "x-callback-url", "x-call-id", "content-encoding")
WRITER_SECRET = credentials.SECRETS["ner-writer-dsn"].name


class RejectRecorder:
    """Writes the dead letter of a refused request; ``store_factory`` runs once, at the first refusal
    (None: nothing is recorded). Thread-safe."""

    def __init__(self, function: str, store_factory: Callable[[], DeadLetterStore | None], *,
                 max_body_bytes: int = 1024 * 1024, enabled: bool = True):
        self.function = function
        self.enabled = enabled
        self.max_body_bytes = max_body_bytes
        self._factory = store_factory
        self._store: DeadLetterStore | None = None
        self._made = False
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, function: str, settings: Settings) -> RejectRecorder:
        """A recorder on the writer's DSN (a pool of its own: one connection at most, none until used),
        closed at shutdown; disabled by ``RECORD_REJECTED=false``."""
        def factory() -> DeadLetterStore | None:
            dsn = settings.secret(WRITER_SECRET)
            if not dsn:
                return None
            pool = make_pool(dsn, name=f"{function}-rejects", min_size=0, max_size=1,
                             timeout=settings.db_pool_timeout_s, connect_timeout=settings.db_connect_timeout_s,
                             prepare_threshold=settings.db_prepare_threshold)
            database = Database(pool, name="primary", statement_timeout_ms=settings.db_statement_timeout_ms)
            database.open()
            return PgDeadLetterStore(database)

        recorder = cls(function, factory, max_body_bytes=settings.max_body_bytes, enabled=settings.record_rejected)
        lifecycle.on_shutdown(recorder.close)
        return recorder

    def store(self) -> DeadLetterStore | None:
        with self._lock:
            if not self._made:
                self._made = True
                self._store = self._factory()
            return self._store

    def record(self, event, exc: FunctionError) -> bool:
        """Keep ``event`` as a dead letter when ``exc`` refuses it for good; True when written."""
        if not self.enabled or exc.status not in REJECT_STATUSES or event.headers is None:
            return False
        call_id = event.headers.get("X-Call-Id")
        if not is_request_id(call_id):
            return False
        store = self.store()
        if store is None:
            return False
        letter = letter_of(self.function, call_id, event, exc, self.max_body_bytes)
        try:
            store.record_rejected(letter)
        except (ServerDown, psycopg.Error) as err:
            log.warning("dead letter not written", extra={
                "event": "dead_letter.write_failed", "request_id": call_id, "dead_letter.status": exc.status,
                "error.code": exc.code, "error.type": type(err).__name__})
            return False
        metrics.DEAD_LETTERS.labels(self.function, str(exc.status)).inc()
        log.warning("dead letter", extra={
            "event": "dead_letter.recorded", "request_id": call_id, "dead_letter.status": exc.status,
            "reason": REJECTED, "error.code": exc.code, "recorded_by": "function"})
        return True

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()


def letter_of(function: str, call_id: str, event, exc: FunctionError, max_body_bytes: int) -> DeadLetter:
    """The dead letter of a refused request (its body cut at ``max_body_bytes``)."""
    body = event.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {name: event.headers.get(name) for name in KEPT_HEADERS if event.headers.get(name)}
    query = urlencode([(k, v) for k in (event.query or {}) for v in _values(event.query, k)])
    return DeadLetter(function=function, call_id=call_id, reason=REJECTED, status=exc.status,
                      body=bytes(body[:max_body_bytes]), error_code=exc.code, error_message=exc.message[:500],
                      content_type=headers.get("content-type"), headers=headers, path=event.path or "/",
                      query=query, recorded_by="function")


def _values(query, key) -> list:
    getlist = getattr(query, "getlist", None)
    return list(getlist(key)) if getlist is not None else [query.get(key)]


def records_rejects(recorder: RejectRecorder) -> Callable:
    """Decorator for ``handle(event, context)`` (inside ``handles_errors``): a refused request is
    recorded, then the error goes on to be answered as before."""
    def decorate(handle: Callable) -> Callable:
        @functools.wraps(handle)
        def wrapper(event, context):
            try:
                return handle(event, context)
            except FunctionError as exc:
                recorder.record(event, exc)
                raise
        return wrapper
    return decorate
