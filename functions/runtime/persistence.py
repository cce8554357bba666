"""Persistence of documents and entities on the PostgreSQL primary: the write policy over a
:class:`functions.runtime.stores.documents.DocumentStore`, run by group commit.

Requests hand their documents to :class:`EntityWriter`; its committer (:mod:`functions.runtime.
group_commit`) writes everything waiting in one transaction and resolves each request's future only after
``COMMIT``. Writes are idempotent on the document id: a document already stored with the same fingerprint
(text hash and model) is reported as a duplicate and adds no rows; the same id with other content is a
conflict (409) and nothing of that request is written.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future

from functions.runtime import db, metrics
from functions.runtime.db import Failure, ServerDown
from functions.runtime.errors import Conflict, FunctionError, Unavailable
from functions.runtime.group_commit import GroupCommitter, Pending
from functions.runtime.shapes import DocumentRecord, Fingerprint, WriteResult
from functions.runtime.stores.documents import DocumentStore, KeyTaken

log = logging.getLogger(__name__)

MAX_GROUP_DOCS = 2048
# Attempts of one group when another writer (another pod) inserts one of its ids between the check and
# the insert: the next attempt sees the id in the check.
RACE_ATTEMPTS = 3

Group = list[Pending[Sequence[DocumentRecord]]]
Outcome = dict[int, WriteResult | BaseException]


class Raced(Exception):
    """Another writer committed one of the group's ids first: the group rolls back and is tried again."""


def plan(group: Group, existing: dict[str, Fingerprint]) -> tuple[Outcome, dict[str, DocumentRecord]]:
    """Which requests of ``group`` conflict (409; nothing of theirs is written), and which records to
    insert: the first record of each id that is not stored yet. ``existing``: stored fingerprints."""
    outcome: Outcome = {}
    to_insert: dict[str, DocumentRecord] = {}
    for pending in group:
        conflict = None
        for record in pending.work:
            first = to_insert.get(record.document_id)
            stored = existing.get(record.document_id) or (first.fingerprint if first is not None else None)
            if stored is not None and tuple(stored) != record.fingerprint:
                conflict = record.document_id
                break
        if conflict is not None:
            outcome[id(pending)] = Conflict(f"request id {conflict!r} was already used for a different text "
                                            "or model; use a new request id")
            continue
        for record in pending.work:
            if record.document_id not in existing:
                to_insert.setdefault(record.document_id, record)
    return outcome, to_insert


@contextlib.contextmanager
def _raced_on_taken_key() -> Iterator[None]:
    """KeyTaken from the store as Raced: the transaction rolled back, the next attempt checks first."""
    try:
        yield
    except KeyTaken:
        raise Raced() from None


class EntityWriter:
    """Group-committing writer for the primary.

    :meth:`write` blocks until the records are committed and returns a WriteResult (commit LSN, the ids
    that were duplicates). It raises Unavailable (503, ``database_unavailable`` / ``database_timeout`` /
    ``database_busy`` / ``shutting_down``) when the primary cannot be reached within the pool timeout, a
    statement times out, concurrent writers keep racing or the writer is closed, and Conflict (409) when a
    document id was stored with other content. Call :meth:`open` once before use, :meth:`close` at
    shutdown. ``commit_delay_s``: the committer's wait for the rest of a group (``DB_COMMIT_DELAY_US``,
    :class:`functions.runtime.group_commit.GroupCommitter`).
    """

    def __init__(self, store: DocumentStore, *, retry_after: int = 2, write_timeout: float = 10.0,
                 commit_delay_s: float = 0.0):
        self.store = store
        self.retry_after = retry_after
        self.write_timeout = write_timeout
        self._committer: GroupCommitter[Sequence[DocumentRecord]] = GroupCommitter(
            self._commit_group, name="db-committer", max_items=MAX_GROUP_DOCS, again=self._again,
            delay_s=commit_delay_s)

    def open(self) -> None:
        """Open the store without waiting for the database (readiness tells when it answers)."""
        self.store.open()
        self._committer.start()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, stop the committer, close the store (idempotent)."""
        self._committer.close(timeout)
        self.store.close(timeout=timeout)

    def ready(self) -> bool:
        """True when the primary answers."""
        return self.store.ready()

    def submit(self, records: Sequence[DocumentRecord]) -> Future[WriteResult]:
        """Queue ``records`` for the next group; raises Unavailable (503 ``shutting_down``) after close."""
        try:
            return self._committer.submit(records, size=len(records))
        except RuntimeError:
            raise Unavailable("the database writer is shutting down", code="shutting_down",
                              retry_after=self.retry_after) from None

    def write(self, records: Sequence[DocumentRecord]) -> WriteResult:
        """Blocking :meth:`submit`: the result once committed (errors as in the class doc)."""
        future = self.submit(records)
        try:
            return future.result(timeout=self.write_timeout)
        except TimeoutError:
            raise Unavailable("the database did not confirm the write in time",
                              code="database_timeout", retry_after=self.retry_after) from None

    # -- the committer's side ---------------------------------------------------------------------------

    def _again(self, error: BaseException) -> BaseException:
        if isinstance(error, Unavailable):
            return Unavailable(error.message, code=error.code, retry_after=self.retry_after)
        return error

    def _commit_group(self, group: Group) -> Unavailable | None:
        """Write a group and resolve its futures; returns the Unavailable error when the database could
        not be reached (the committer then answers what queued meanwhile with it)."""
        try:
            outcome = self._write_with_retry(group)
        except Unavailable as exc:
            for pending in group:
                pending.future.set_exception(exc)
            return exc
        except Exception as exc:
            if db.classify(exc) is not Failure.QUERY:
                error = self._unavailable(exc)
                for pending in group:
                    pending.future.set_exception(error)
                return error
            # A value PostgreSQL or the driver refuses is about one request's data: write each request
            # on its own so only the guilty one fails.
            if len(group) > 1:
                unavailable = None
                for pending in group:
                    unavailable = self._commit_group([pending]) or unavailable
                return unavailable
            log.error("database write failed", extra={
                "event": "db.write_failed", "error.type": type(exc).__name__, "error.message": db.safe_message(exc)})
            outcome = {id(group[0]): FunctionError("the database write failed")}
        for pending in group:
            result = outcome[id(pending)]
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
        return None

    def _unavailable(self, exc: BaseException) -> Unavailable:
        """503 for a server that is down or a statement/lock timeout; the primary counts as down."""
        failure = db.classify(exc)
        self.store.mark_failed(exc)
        cause = exc.cause if isinstance(exc, ServerDown) and exc.cause is not None else exc
        log.warning("database write failed", extra={
            "event": "db.write_failed", "error.type": type(cause).__name__, "error.message": db.safe_message(cause)})
        code = "database_timeout" if failure is Failure.TIMEOUT else "database_unavailable"
        return Unavailable("the database is unavailable, retry later", code=code, retry_after=self.retry_after)

    def _write_with_retry(self, group: Group) -> Outcome:
        connection_retried = False
        degraded = self.store.is_down()  # as it was before this group: a failure below marks it down
        # The first attempt assumes every id is new (the common case: one statement, no check first).
        # When one is not (a client's retry, or another writer's), the group rolls back and later attempts
        # check first, as the duplicates and conflicts need.
        check_first = False
        for attempt in range(RACE_ATTEMPTS):
            try:
                return self._write_once(group, check_first)
            except Raced:
                if check_first:
                    log.info("request id raced with another writer, retrying group",
                             extra={"event": "db.write_raced", "attempt": attempt + 1})
                check_first = True
            except Exception as exc:
                if db.classify(exc) is not Failure.SERVER_DOWN or (isinstance(exc, ServerDown) and not exc.acquired):
                    # A data problem, no connection at all, or a statement/lock timeout: a retry would
                    # meet the same lock and double the caller's wait past DB_STATEMENT_TIMEOUT_MS.
                    raise
                # The connection died under the transaction (server restart, pg_terminate_backend).
                # Retrying once on a fresh, checked connection is safe: the write is idempotent, so even
                # a COMMIT whose outcome was lost is recognised as already stored.
                if connection_retried or degraded:
                    raise
                connection_retried = True
                log.info("connection lost during a group commit, retrying once", extra={"event": "db.write_retried"})
        raise Unavailable("concurrent writes kept racing on the same request ids", code="database_busy",
                          retry_after=self.retry_after)

    def _write_once(self, group: Group, check_first: bool) -> Outcome:
        """One transaction for ``group``. Without ``check_first`` every id is taken to be new; raises
        Raced (the transaction rolled back) when one was stored already."""
        started = time.perf_counter()
        existing: dict[str, Fingerprint] = {}
        with _raced_on_taken_key(), self.store.transaction() as tx:
            if check_first:
                existing = tx.existing_documents(list(dict.fromkeys(
                    r.document_id for pending in group for r in pending.work)))
            outcome, to_insert = plan(group, existing)
            if to_insert:
                tx.insert_new(list(to_insert.values()))
        db_ms = (time.perf_counter() - started) * 1000.0
        metrics.DB_WRITE_SECONDS.observe(db_ms / 1000.0)
        for pending in group:
            if id(pending) in outcome:
                continue
            duplicates = {r.document_id for r in pending.work if r.document_id in existing}
            # A document id that two queued requests share is written once; the later one is a duplicate.
            duplicates |= {r.document_id for r in pending.work
                           if r.document_id in to_insert and to_insert[r.document_id] is not r}
            outcome[id(pending)] = WriteResult(commit_lsn=tx.commit_lsn, duplicates=duplicates, db_ms=db_ms)
        return outcome
