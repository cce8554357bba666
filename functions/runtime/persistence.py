"""Persistence of documents and entities on the PostgreSQL primary, with group commit.

Requests hand their documents to :class:`EntityWriter`; one committer thread writes everything that
is waiting in a single transaction (an array-``INSERT ... ON CONFLICT`` for documents, ``COPY`` for their
entities) and resolves each request's future only after ``COMMIT``. Writes are idempotent on
``request_id``: a document already stored with the same text hash and model is reported as a duplicate
and adds no rows; the same id with other content is a conflict (409) and nothing of that request is
written.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import Future

import psycopg

from functions.runtime import db, metrics, queries
from functions.runtime.db import Database, Failure, ServerDown, make_pool
from functions.runtime.errors import Conflict, FunctionError, Unavailable
from functions.runtime.shapes import DocumentRecord, WriteResult

__all__ = ["DocumentRecord", "EntityWriter", "WriteResult", "make_pool", "normalize"]

log = logging.getLogger(__name__)

_MAX_GROUP_DOCS = 2048


def normalize(text: str) -> str:
    """Grouping key of an entity: NFKC, case-folded, inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class _WriteJob:
    __slots__ = ("records", "future")

    def __init__(self, records: Sequence[DocumentRecord]):
        self.records = records
        self.future: Future[WriteResult] = Future()


class EntityWriter:
    """Group-committing writer for the primary.

    :meth:`write` blocks until the records are committed and returns the commit LSN. It raises
    Unavailable (503, ``database_unavailable`` / ``database_timeout`` / ``database_busy``) when the
    primary cannot be reached within the pool timeout, a statement times out or concurrent writers keep
    racing, and Conflict (409) when a request id was stored with other content. Call :meth:`open` once
    before use and :meth:`close` at shutdown. ``pool`` is a :func:`functions.runtime.db.make_pool` pool
    (or anything with its ``connection(timeout=)`` / ``open`` / ``close`` / ``timeout``).
    """

    def __init__(self, pool, *, store_text: bool = True, retry_after: int = 2, write_timeout: float = 10.0,
                 statement_timeout_ms: int = 3000):
        self.pool = pool
        self.db = Database(pool, name="primary", statement_timeout_ms=statement_timeout_ms, cooldown_s=None)
        self.store_text = store_text
        self.retry_after = retry_after
        self.write_timeout = write_timeout
        self._sql = queries.load("writer")
        self._queue: queue.SimpleQueue[_WriteJob | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="db-committer", daemon=True)
        self._closed = False

    def open(self) -> None:
        """Open the pool without waiting for the database (readiness tells when it answers)."""
        self.db.open()
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, stop the committer, close the pool (idempotent)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            if self._thread.is_alive():
                self._thread.join(timeout)
        self.db.close(timeout=timeout)

    def ready(self) -> bool:
        """True when the primary answers (see :meth:`functions.runtime.db.Database.ready`)."""
        return self.db.ready()

    def submit(self, records: Sequence[DocumentRecord]) -> Future[WriteResult]:
        if self._closed:
            raise Unavailable("the database writer is shutting down", code="shutting_down",
                              retry_after=self.retry_after)
        job = _WriteJob(records)
        self._queue.put(job)
        return job.future

    def write(self, records: Sequence[DocumentRecord]) -> WriteResult:
        future = self.submit(records)
        try:
            return future.result(timeout=self.write_timeout)
        except TimeoutError:
            raise Unavailable("the database did not confirm the write in time",
                              code="database_timeout", retry_after=self.retry_after) from None

    # -- committer --------------------------------------------------------------------------------

    def _take_group(self, first: _WriteJob) -> tuple[list[_WriteJob], bool]:
        jobs = [first]
        docs = len(first.records)
        while docs < _MAX_GROUP_DOCS:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return jobs, True
            jobs.append(more)
            docs += len(more.records)
        return jobs, False

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, stop = self._take_group(job)
            unavailable = self._commit_group(jobs)
            if unavailable is not None and not stop:
                # Everything that queued while this group waited for the database would wait as long
                # again: answer it now with the same 503 so no request waits for two pool timeouts.
                while True:
                    try:
                        queued = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if queued is None:
                        stop = True
                        break
                    queued.future.set_exception(Unavailable(unavailable.message, code=unavailable.code,
                                                            retry_after=self.retry_after))
            if stop:
                return

    def _commit_group(self, jobs: list[_WriteJob]) -> Unavailable | None:
        """Write a group; returns the Unavailable error when the database could not be reached."""
        try:
            outcome = self._write_with_retry(jobs)
        except Unavailable as exc:
            for job in jobs:
                job.future.set_exception(exc)
            return exc
        except Exception as exc:
            if db.classify(exc) is not Failure.QUERY:
                error = self._unavailable(exc)
                for job in jobs:
                    job.future.set_exception(error)
                return error
            # Anything else is about the data of one request (a value PostgreSQL or the driver
            # refuses): write each request on its own so only the guilty one fails.
            if len(jobs) > 1:
                unavailable = None
                for job in jobs:
                    unavailable = self._commit_group([job]) or unavailable
                return unavailable
            log.error("database write failed", extra={
                "event": "db.write_failed", "error.type": type(exc).__name__,
                "error.message": db.safe_message(exc)})
            outcome = {id(jobs[0]): FunctionError("the database write failed")}
        for job in jobs:
            result = outcome[id(job)]
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        return None

    def _unavailable(self, exc: BaseException) -> Unavailable:
        """503 for a server that is down or a statement/lock timeout; the primary counts as down."""
        failure = db.classify(exc)
        self.db.failed(exc)
        cause = exc.cause if isinstance(exc, ServerDown) and exc.cause is not None else exc
        log.warning("database write failed", extra={
            "event": "db.write_failed", "error.type": type(cause).__name__,
            "error.message": db.safe_message(cause)})
        code = "database_timeout" if failure is Failure.TIMEOUT else "database_unavailable"
        return Unavailable("the database is unavailable, retry later", code=code, retry_after=self.retry_after)

    def _write_with_retry(self, jobs: list[_WriteJob]) -> dict[int, WriteResult | BaseException]:
        # A concurrent writer (another pod) may insert one of our ids between the check and the
        # insert; the second attempt then sees it in the check.
        connection_retried = False
        degraded = self.db.is_down()  # as it was before this group: a failure below marks it down
        for attempt in range(3):
            try:
                return self._write_once(jobs)
            except _Raced:
                pass
            except Exception as exc:
                failure = db.classify(exc)
                if failure is not Failure.SERVER_DOWN or (isinstance(exc, ServerDown) and not exc.acquired):
                    # A data problem, no connection at all, or a statement/lock timeout: a retry would
                    # meet the same lock and double the caller's wait past DB_STATEMENT_TIMEOUT_MS.
                    raise
                # The connection died under the transaction (server restart, pg_terminate_backend).
                # Retrying once on a fresh, checked connection is safe: the write is idempotent, so even
                # a COMMIT whose outcome was lost is recognised as already stored.
                if connection_retried or degraded:
                    raise
                connection_retried = True
                log.info("connection lost during a group commit, retrying once",
                         extra={"event": "db.write_retried"})
                continue
            log.info("request id raced with another writer, retrying group",
                     extra={"event": "db.write_raced", "attempt": attempt + 1})
        raise Unavailable("concurrent writes kept racing on the same request ids", code="database_busy",
                          retry_after=self.retry_after)

    def _write_once(self, jobs: list[_WriteJob]) -> dict[int, WriteResult | BaseException]:
        started = time.perf_counter()
        all_ids = list(dict.fromkeys(r.request_id for job in jobs for r in job.records))
        # While the database is known to be down, Database probes with a short wait instead of the
        # full pool timeout, so a burst of requests during an outage gets its 503s quickly.
        with self.db.connection() as conn:
            with self.db.transaction(conn):
                existing = {row[0]: tuple(row[1:]) for row in
                            conn.execute(self._sql["existing_documents"], {"request_ids": all_ids})}
                outcome, to_insert = self._plan(jobs, existing)
                inserted: set[str] = set()
                if to_insert:
                    inserted = {row[0] for row in conn.execute(
                        self._sql["insert_documents"], self._document_params(to_insert.values()))}
                    if inserted != set(to_insert):
                        raise _Raced()  # leaving the transaction rolls the whole group back
                    with conn.cursor() as cur, cur.copy(self._sql["copy_entities"]) as copy:
                        for row in self._entity_rows(to_insert.values()):
                            copy.write_row(row)
            try:
                lsn = conn.execute(self._sql["current_lsn"]).fetchone()[0]
            except psycopg.OperationalError:
                # COMMIT went through; only the position is unknown. The write is acknowledged
                # (read-your-writes callers fall back to consistency=strong).
                lsn = None
        db_ms = (time.perf_counter() - started) * 1000.0
        metrics.DB_WRITE_SECONDS.observe(db_ms / 1000.0)
        for job in jobs:
            if id(job) in outcome:
                continue
            duplicates = {r.request_id for r in job.records if r.request_id in existing}
            # A request id that two queued requests share is written once; the later one is a duplicate.
            duplicates |= {r.request_id for r in job.records
                           if r.request_id in inserted and to_insert[r.request_id] is not r}
            outcome[id(job)] = WriteResult(commit_lsn=lsn, duplicates=duplicates, db_ms=db_ms)
        return outcome

    @staticmethod
    def _plan(jobs: list[_WriteJob], existing: dict[str, tuple]
              ) -> tuple[dict[int, WriteResult | BaseException], dict[str, DocumentRecord]]:
        """Which jobs conflict (409, nothing of theirs written) and which records to insert (first
        record of each new id)."""
        outcome: dict[int, WriteResult | BaseException] = {}
        to_insert: dict[str, DocumentRecord] = {}
        for job in jobs:
            conflict = None
            for record in job.records:
                stored = existing.get(record.request_id) or (
                    to_insert[record.request_id].fingerprint if record.request_id in to_insert else None)
                if stored is not None and tuple(stored) != record.fingerprint:
                    conflict = record.request_id
                    break
            if conflict is not None:
                outcome[id(job)] = Conflict(
                    f"request id {conflict!r} was already used for a different text or model; "
                    "use a new request id")
                continue
            for record in job.records:
                if record.request_id not in existing:
                    to_insert.setdefault(record.request_id, record)
        return outcome, to_insert

    def _document_params(self, records) -> dict[str, list]:
        records = list(records)
        return {
            "request_ids": [r.request_id for r in records],
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
        }

    @staticmethod
    def _entity_rows(records):
        for record in records:
            request_id = record.request_id
            for ordinal, (text, label, start, end) in enumerate(record.entities):
                yield (request_id, ordinal, label, text, normalize(text), start, end)


class _Raced(Exception):
    pass
