"""In-memory stores for unit tests: the store protocols implemented on Python dicts, with transactions
(a snapshot at BEGIN, restored on ROLLBACK) and hooks to inject what a real server does to a writer.

Modelled on procrastinate's in-memory connector, one level up: the fake sits at the store seam, so the
code under test (the group-commit loop, the write policy) is exactly what runs against PostgreSQL, and the
fake never parses SQL. tests/integration runs the PostgreSQL stores against real servers.

Hooks of :class:`InMemoryDocumentStore`:

* ``fail_on[step]``: exceptions to raise, one per call, before the step runs (``existing_documents``,
  ``insert_documents``, ``insert_entities``, ``commit``, ``commit_lsn``); ``insert_new`` is one statement
  on the server that inserts the keys (their unique constraint is the idempotency check: a stored id
  raises KeyTaken), then documents, then entities, so it passes through the ``existing_documents``,
  ``insert_documents`` and ``insert_entities`` steps in that order;
* ``unreachable``: the next N transactions find no connection (ServerDown, not acquired);
* ``before_insert(ids)``: runs before an insert (another writer committing first: :meth:`commit_elsewhere`);
* ``check_insert(records)``: may raise for a value the server would refuse.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.runtime.db import ServerDown
from functions.runtime.shapes import DocumentRecord, Fingerprint
from functions.runtime.stores.dead_letters import DeadLetter
from functions.runtime.stores.documents import KeyTaken, normalize


class _Transaction:
    def __init__(self, store: InMemoryDocumentStore):
        self.store = store
        self.commit_lsn: str | None = None

    def existing_documents(self, document_ids: Sequence[str]) -> dict[str, Fingerprint]:
        self.store.hook("existing_documents")
        docs = self.store.documents
        return {i: (docs[i]["text_sha256"], docs[i]["model_name"], docs[i]["model_version"])
                for i in document_ids if i in docs}

    def insert_new(self, records: Sequence[DocumentRecord]) -> None:
        store = self.store
        # One statement on the server (keys, documents, entities): each step's hook may fail it.
        store.hook("existing_documents")
        store.hook("insert_documents")
        if store.before_insert is not None:
            store.before_insert([r.document_id for r in records])
        if store.check_insert is not None:
            store.check_insert(records)
        taken = [r.document_id for r in records if r.document_id in store.documents]
        if taken:  # the key's unique constraint fails the statement, and the transaction with it
            raise KeyTaken(f"document ids stored already: {taken}")
        for r in records:
            store.documents[r.document_id] = {
                "request_id": r.document_id, "source": r.source, "model_name": r.model_name,
                "model_version": r.model_version, "text_length": len(r.text), "text_sha256": r.text_sha256,
                "body": r.text if store.store_text else None, "metadata": copy.deepcopy(r.metadata),
                "entity_count": len(r.entities), "ner_ms": r.ner_ms}
        store.hook("insert_entities")
        for r in records:
            for ordinal, (text, label, start, end) in enumerate(r.entities):
                store.entities.append((r.document_id, ordinal, label, text, normalize(text), start, end))


class InMemoryDocumentStore:
    """:class:`functions.runtime.stores.documents.DocumentStore` on dicts. ``documents`` maps a document id
    to its row (column names as in ``nlp.documents``), ``entities`` lists entity rows
    ``(document_id, ordinal, label, text, norm, start_char, end_char)``."""

    def __init__(self, *, store_text: bool = True):
        self.store_text = store_text
        self.documents: dict[str, dict[str, Any]] = {}
        self.entities: list[tuple] = []
        self.commits = 0
        self.rollbacks = 0
        self.transactions = 0  # attempts, including those that found no connection
        self.opened = self.closed = False
        self.down = False
        self.fail_on: dict[str, list[BaseException]] = {}
        self.unreachable = 0
        self.before_insert: Callable[[list[str]], None] | None = None
        self.check_insert: Callable[[Sequence[DocumentRecord]], None] | None = None
        self._lsn = itertools.count(1)
        self._snapshots: list[tuple[dict, list]] = []

    # -- the DocumentStore protocol -------------------------------------------------------------------

    def open(self) -> None:
        self.opened = True

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True

    def ready(self) -> bool:
        return self.opened and not self.closed and not self.down and not self.unreachable

    def is_down(self) -> bool:
        return self.down

    def mark_failed(self, exc: BaseException) -> None:
        self.down = True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        self.transactions += 1
        if self.unreachable:
            self.unreachable -= 1
            self.down = True
            raise ServerDown("primary", TimeoutError("no connection"), acquired=False)
        self._snapshots.append((copy.deepcopy(self.documents), list(self.entities)))
        tx = _Transaction(self)
        try:
            yield tx
            self.hook("commit")
        except BaseException:
            self.documents, self.entities = self._snapshots.pop()
            self.rollbacks += 1
            raise
        self._snapshots.pop()
        self.commits += 1
        self.down = False
        with contextlib.suppress(Exception):
            self.hook("commit_lsn")
            tx.commit_lsn = f"0/{next(self._lsn):X}"

    # -- for tests ------------------------------------------------------------------------------------

    def hook(self, name: str) -> None:
        """Raise the next exception queued for ``name`` (``fail_on``), if any."""
        queued = self.fail_on.get(name)
        if queued:
            raise queued.pop(0)

    def commit_elsewhere(self, document_id: str, fingerprint: Fingerprint) -> None:
        """Another writer commits ``document_id`` now: it stays even when our transaction rolls back."""
        row = {"request_id": document_id, "text_sha256": fingerprint[0], "model_name": fingerprint[1],
               "model_version": fingerprint[2], "committed_at": time.time()}
        self.documents.setdefault(document_id, row)
        for saved_documents, _ in self._snapshots:
            saved_documents.setdefault(document_id, dict(row))

    def stored(self, document_id: str) -> tuple[dict[str, Any], list[tuple]]:
        """The document row and its entity rows."""
        return self.documents[document_id], [e for e in self.entities if e[0] == document_id]


class InMemoryDeadLetterStore:
    """:class:`functions.runtime.stores.dead_letters.DeadLetterStore` on a dict keyed by (function, call
    id), with the same rules as the named queries: the function's record never replaces one, the
    queue-worker's reopens a letter, a redrive is marked before it is sent and unmarked if it was not queued.
    ``unreachable``: the next N calls raise ServerDown (the primary is away)."""

    def __init__(self):
        self.rows: dict[tuple[str, str], DeadLetter] = {}
        self.unreachable = 0
        self.closed = False

    def _check(self) -> None:
        if self.unreachable:
            self.unreachable -= 1
            raise ServerDown("primary", TimeoutError("no connection"), acquired=False)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    def record_rejected(self, letter: DeadLetter) -> None:
        self._check()
        now = self._now()
        self.rows.setdefault((letter.function, letter.call_id), replace(
            letter, reason="rejected", attempts=None, recorded_by="function", state="open", redrives=0,
            first_failed_at=now, last_failed_at=now))

    def record_final(self, letter: DeadLetter) -> int:
        self._check()
        key, now = (letter.function, letter.call_id), self._now()
        old = self.rows.get(key)
        if old is None:
            self.rows[key] = replace(letter, recorded_by="queue-worker", state="open", redrives=0,
                                     first_failed_at=now, last_failed_at=now)
            return 0
        self.rows[key] = replace(old, state="open", reason=letter.reason, status=letter.status,
                                 error_code=letter.error_code or old.error_code,
                                 error_message=letter.error_message or old.error_message,
                                 attempts=letter.attempts, recorded_by="queue-worker",
                                 last_failed_at=max(now, old.last_failed_at + timedelta(microseconds=1)))
        return old.redrives

    def resolve(self, function: str, call_id: str) -> bool:
        self._check()
        old = self.rows.get((function, call_id))
        if old is None or old.state != "redriven":
            return False
        self.rows[(function, call_id)] = replace(old, state="resolved")
        return True

    def letters(self, *, state: str | None = "open", function: str | None = None, call_id: str | None = None,
                limit: int = 10_000) -> list[DeadLetter]:
        self._check()
        rows = [r for r in self.rows.values() if (state is None or r.state == state)
                and (function is None or r.function == function) and (call_id is None or r.call_id == call_id)]
        return sorted(rows, key=lambda r: (r.last_failed_at, r.function, r.call_id))[:limit]

    def mark_redriven(self, letter: DeadLetter) -> int | None:
        self._check()
        old = self.rows.get((letter.function, letter.call_id))
        if old is None or old.state != "open":
            return None
        self.rows[(letter.function, letter.call_id)] = replace(old, state="redriven", redrives=old.redrives + 1,
                                                               redriven_at=self._now())
        return old.redrives + 1

    def unmark_redriven(self, letter: DeadLetter, redrives: int) -> None:
        self._check()
        old = self.rows.get((letter.function, letter.call_id))
        if old is not None and old.state == "redriven" and old.redrives == redrives:
            self.rows[(letter.function, letter.call_id)] = replace(old, state="open", redrives=redrives - 1)

    def count_by_state(self) -> dict[str, int]:
        self._check()
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def purge_older(self, days: float) -> int:
        self._check()
        cutoff = self._now() - timedelta(days=days)
        old = [k for k, r in self.rows.items() if r.last_failed_at < cutoff]
        for key in old:
            del self.rows[key]
        return len(old)

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True
