"""The writer's store: document keys, documents and their entities on the PostgreSQL primary
(``sql/queries/writer.sql``).

Shapes::

    store = PgDocumentStore(database, store_text=True)
    with store.transaction() as tx:                     # BEGIN + timeouts, sent with what follows
        stored = tx.existing_documents(["id1", "id2"])  # {document_id: (text_sha256, model, version)}
        tx.insert_new(records)                          # keys, documents, entities: ids not stored yet
    tx.commit_lsn                                       # after COMMIT: its WAL position, or None

A write of new documents is one round trip: BEGIN, the timeouts, ``insert_new``, COMMIT and the commit's
WAL position travel together (psycopg's pipeline mode). When one of the ids is stored already the block
raises :class:`KeyTaken` (at the latest when it ends) and nothing of it is written.

Other errors: :class:`functions.runtime.db.ServerDown` when no working connection can be had or it broke in use
(``acquired`` says which), psycopg's ``QueryCanceled``/``LockNotAvailable`` for a statement or lock
timeout, other ``psycopg.Error`` for a value the server refuses. Leaving the ``with`` block by an
exception rolls the transaction back.
"""

from __future__ import annotations

import contextlib
import json
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Protocol

import psycopg
import psycopg.errors

from functions.runtime import queries
from functions.runtime.db import Database
from functions.runtime.shapes import DocumentRecord, Fingerprint


def normalize(text: str) -> str:
    """Grouping key of an entity (``nlp.entities.norm``): NFKC, case-folded, inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class KeyTaken(Exception):
    """A document id of ``insert_new`` is stored already: the transaction failed and rolled back."""


class DocumentTransaction(Protocol):
    """One open write transaction; ``commit_lsn`` is set once it committed (None if unknown)."""

    commit_lsn: str | None

    def existing_documents(self, document_ids: Sequence[str]) -> dict[str, Fingerprint]:
        """The stored fingerprint of those ids that are already persisted (the idempotency check)."""
        ...

    def insert_new(self, records: Sequence[DocumentRecord]) -> None:
        """Insert each record's key, document and entities, the ids all new (``existing_documents`` said
        so, or the caller assumes it). May return before the server answered: an id that is stored
        already (another writer's, or a client's retry) makes the transaction block raise KeyTaken."""
        ...


class DocumentStore(Protocol):
    """Where the writer's transactions run; health is tracked per store (one server)."""

    def open(self) -> None:
        """Start connecting in the background; never blocks on the database."""
        ...

    def close(self, timeout: float = 5.0) -> None: ...

    def ready(self) -> bool:
        """True when the server answers (cached briefly after a success)."""
        ...

    def is_down(self) -> bool:
        """True while the last attempt failed for want of a server (short probes until it answers)."""
        ...

    def mark_failed(self, exc: BaseException) -> None:
        """Record that the server failed ``exc`` (counts as down until the next success)."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[DocumentTransaction]: ...


class _PgTransaction:
    __slots__ = ("conn", "sql", "store_text", "commit_lsn")

    def __init__(self, conn: psycopg.Connection, sql: dict[str, str], store_text: bool):
        self.conn = conn
        self.sql = sql
        self.store_text = store_text
        self.commit_lsn: str | None = None

    def existing_documents(self, document_ids: Sequence[str]) -> dict[str, Fingerprint]:
        rows = self.conn.execute(self.sql["existing_documents"], {"document_ids": list(document_ids)})
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def insert_new(self, records: Sequence[DocumentRecord]) -> None:
        # Not fetched: its answer comes with COMMIT's (a unique_violation skips the COMMIT).
        self.conn.execute(self.sql["insert_new"], self._params(records))

    def _params(self, records: Sequence[DocumentRecord]) -> dict[str, list]:
        return {
            "document_ids": [r.document_id for r in records],
            "sources": [r.source for r in records],
            "model_names": [r.model_name for r in records],
            "model_versions": [r.model_version for r in records],
            "text_lengths": [len(r.text) for r in records],
            "text_sha256s": [r.text_sha256 for r in records],
            "bodies": [r.text if self.store_text else None for r in records],
            "metadata": [None if r.metadata is None else json.dumps(r.metadata, ensure_ascii=False)
                         for r in records],
            "entity_counts": [len(r.entities) for r in records],
            "ner_ms": [r.ner_ms for r in records],
        } | _entity_params(records)


def _entity_params(records: Sequence[DocumentRecord]) -> dict[str, list]:
    """The entities of ``records`` as the column arrays of ``insert_new``, ordinals per document."""
    columns: tuple[list, ...] = ([], [], [], [], [], [], [], [])
    ids, ordinals, labels, texts, norms, starts, ends, sources = columns
    for record in records:
        for ordinal, (text, label, start, end) in enumerate(record.entities):
            ids.append(record.document_id)
            ordinals.append(ordinal)
            labels.append(label)
            texts.append(text)
            norms.append(normalize(text))
            starts.append(start)
            ends.append(end)
            sources.append(record.source)
    return {"entity_document_ids": ids, "ordinals": ordinals, "labels": labels, "texts": texts, "norms": norms,
            "start_chars": starts, "end_chars": ends, "entity_sources": sources}


class PgDocumentStore:
    """:class:`DocumentStore` on PostgreSQL through ``database`` (role nlp_writer on the primary).
    ``store_text=False`` keeps only each text's length and SHA-256 (setting ``STORE_TEXT``)."""

    def __init__(self, database: Database, *, store_text: bool = True):
        self.database = database
        self.store_text = store_text
        self._sql = queries.load("writer")

    @classmethod
    def over_pool(cls, pool, *, statement_timeout_ms: int = 3000, store_text: bool = True) -> PgDocumentStore:
        """A store over a :func:`functions.runtime.db.make_pool` pool; the primary counts as down from a
        failure until its next success (writes probe it briefly meanwhile)."""
        return cls(Database(pool, name="primary", statement_timeout_ms=statement_timeout_ms, cooldown_s=None),
                   store_text=store_text)

    def open(self) -> None:
        self.database.open()

    def close(self, timeout: float = 5.0) -> None:
        self.database.close(timeout=timeout)

    def ready(self) -> bool:
        return self.database.ready()

    def is_down(self) -> bool:
        return self.database.is_down()

    def mark_failed(self, exc: BaseException) -> None:
        self.database.failed(exc)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_PgTransaction]:
        with self.database.connection() as conn:
            tx = _PgTransaction(conn, self._sql, self.store_text)
            # When only the position is lost after COMMIT, the write is still acknowledged (callers that
            # need to read their writes fall back to consistency=strong).
            try:
                with self.database.pipelined_transaction(conn, after_commit=self._sql["current_lsn"]) as done:
                    yield tx
            except psycopg.errors.UniqueViolation as exc:
                # Only insert_new inserts here, and every unique key it can meet holds the document id
                # (document_keys; the primary keys of the documents' and entities' history partitions):
                # whichever of the three the server checked first, the id is stored already.
                raise KeyTaken(exc.diag.message_detail or "a document id is stored already") from None
            tx.commit_lsn = done.after_commit[0] if done.after_commit else None
