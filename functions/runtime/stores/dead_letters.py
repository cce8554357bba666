"""The dead-letter store: asynchronous invocations that ended without a 2xx (``nlp.dead_letters``,
``sql/queries/dead_letters.sql``).

Shapes::

    store = PgDeadLetterStore(database)              # nlp_writer records, nlp_owner lists and redrives
    store.record_rejected(letter)                    # the function refused it: first record wins
    store.record_final(letter) -> redrives           # the queue-worker's final outcome: new or reopened
    store.resolve("ner-processor", call_id) -> bool  # a redriven invocation ended in a 2xx
    store.letters(state="open") -> [DeadLetter]      # oldest first
    store.mark_redriven(letter) -> redrives | None   # before sending it again; None: not open any more
    store.unmark_redriven(letter, redrives)          # the gateway did not queue it: open again
    store.count_by_state() -> {"open": 3, ...}
    store.purge_older(days=30) -> rows deleted

A :class:`DeadLetter` holds the original request (``body`` bytes, ``content_type``, ``headers``, ``path``,
``query``); :meth:`DeadLetter.as_line` is the JSON line ``make dead-letters`` prints.

Errors: :class:`functions.runtime.db.ServerDown` when no working connection can be had, psycopg's errors
for anything the server refuses (e.g. the writer role asking for a body).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from functions.runtime import queries
from functions.runtime.db import Database

REJECTED = "rejected"
RETRIES_EXHAUSTED = "retries_exhausted"


@dataclass(frozen=True)
class DeadLetter:
    """One invocation that ended without a 2xx (times are timezone-aware, set by the database)."""

    function: str
    call_id: str
    reason: str  # REJECTED | RETRIES_EXHAUSTED
    status: int  # the final HTTP status; 0 when the function never answered
    body: bytes
    error_code: str | None = None
    error_message: str | None = None
    attempts: int | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/"
    query: str = ""
    recorded_by: str = "queue-worker"
    state: str = "open"
    redrives: int = 0
    first_failed_at: datetime | None = None
    last_failed_at: datetime | None = None
    redriven_at: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {"function": self.function, "call_id": self.call_id, "reason": self.reason, "status": self.status,
                "error_code": self.error_code, "error_message": self.error_message, "attempts": self.attempts,
                "body": self.body, "content_type": self.content_type,
                "headers": json.dumps(self.headers, ensure_ascii=False), "path": self.path, "query": self.query}

    def as_line(self) -> dict[str, Any]:
        """The JSON object ``make dead-letters`` prints: ``call_id``, ``function``, ``status``, ``error``
        (the function's code, else the reason), ``attempts``, ``body`` (text when it is UTF-8, else
        ``body_base64``) and the rest of the record."""
        line: dict[str, Any] = {"call_id": self.call_id, "function": self.function, "status": self.status,
                                "error": self.error_code or self.reason, "attempts": self.attempts}
        try:
            line["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            line["body"] = None
            line["body_base64"] = base64.b64encode(self.body).decode("ascii")
        line.update(reason=self.reason, message=self.error_message, state=self.state, redrives=self.redrives,
                    content_type=self.content_type, path=self.path, query=self.query, recorded_by=self.recorded_by,
                    first_failed_at=_iso(self.first_failed_at), last_failed_at=_iso(self.last_failed_at))
        return line


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class DeadLetterStore(Protocol):
    """Where dead letters are kept (one server: the primary)."""

    def record_rejected(self, letter: DeadLetter) -> None: ...

    def record_final(self, letter: DeadLetter) -> int: ...

    def resolve(self, function: str, call_id: str) -> bool: ...

    def letters(self, *, state: str | None = "open", function: str | None = None, call_id: str | None = None,
                limit: int = 10_000) -> list[DeadLetter]: ...

    def mark_redriven(self, letter: DeadLetter) -> int | None: ...

    def unmark_redriven(self, letter: DeadLetter, redrives: int) -> None: ...

    def count_by_state(self) -> dict[str, int]: ...

    def purge_older(self, days: float) -> int: ...

    def close(self, timeout: float = 5.0) -> None: ...


_COLUMNS = ("function", "call_id", "state", "reason", "status", "error_code", "error_message", "attempts", "body",
            "content_type", "headers", "path", "query", "recorded_by", "redrives", "first_failed_at",
            "last_failed_at", "redriven_at")


class PgDeadLetterStore:
    """:class:`DeadLetterStore` on PostgreSQL through ``database`` (its pool opened by the caller)."""

    def __init__(self, database: Database):
        self.database = database
        self._sql = queries.load("dead_letters")

    @contextlib.contextmanager
    def _tx(self) -> Iterator:
        with self.database.connection() as conn, self.database.transaction(conn):
            yield conn

    def record_rejected(self, letter: DeadLetter) -> None:
        with self._tx() as conn:
            conn.execute(self._sql["record_rejected"], letter.params())

    def record_final(self, letter: DeadLetter) -> int:
        with self._tx() as conn:
            return conn.execute(self._sql["record_final"], letter.params()).fetchone()[0]

    def resolve(self, function: str, call_id: str) -> bool:
        with self._tx() as conn:
            return conn.execute(self._sql["resolve"], {"function": function, "call_id": call_id}).rowcount > 0

    def letters(self, *, state: str | None = "open", function: str | None = None, call_id: str | None = None,
                limit: int = 10_000) -> list[DeadLetter]:
        with self._tx() as conn:
            rows = conn.execute(self._sql["list_letters"], {"state": state, "function": function,
                                                             "call_id": call_id, "limit": limit}).fetchall()
        return [_letter(dict(zip(_COLUMNS, row, strict=True))) for row in rows]

    def mark_redriven(self, letter: DeadLetter) -> int | None:
        with self._tx() as conn:
            row = conn.execute(self._sql["mark_redriven"], {"function": letter.function,
                                                             "call_id": letter.call_id}).fetchone()
        return None if row is None else row[0]

    def unmark_redriven(self, letter: DeadLetter, redrives: int) -> None:
        with self._tx() as conn:
            conn.execute(self._sql["unmark_redriven"], {"function": letter.function, "call_id": letter.call_id,
                                                         "redrives": redrives})

    def count_by_state(self) -> dict[str, int]:
        with self._tx() as conn:
            return {state: count for state, count in conn.execute(self._sql["count_by_state"])}

    def purge_older(self, days: float) -> int:
        with self._tx() as conn:
            return conn.execute(self._sql["purge_older"], {"seconds": days * 86400.0}).rowcount

    def close(self, timeout: float = 5.0) -> None:
        self.database.close(timeout)


def _letter(row: dict[str, Any]) -> DeadLetter:
    headers = row["headers"]
    if isinstance(headers, str):
        headers = json.loads(headers)
    return DeadLetter(**{**row, "body": bytes(row["body"]), "headers": dict(headers or {})})
