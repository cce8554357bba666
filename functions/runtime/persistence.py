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
from dataclasses import dataclass, field

import psycopg
import psycopg.errors
import psycopg_pool.base
from psycopg_pool import ConnectionPool, PoolTimeout

from functions.runtime import metrics, queries
from functions.runtime.errors import Conflict, FunctionError, Unavailable
from functions.runtime.nlp import Entity

log = logging.getLogger(__name__)

# psycopg_pool re-checks a second broken connection in a row, and retries a failed reconnect, only after
# an exponential backoff that starts at 1 s. With a 1 s pool timeout that turns the connections a server
# restart or pg_terminate_backend left in the pool into a PoolTimeout (503) although the server is up.
# Starting the backoff at 50 ms lets the next request get a fresh connection at once.
psycopg_pool.base.AttemptWithBackoff.INITIAL_DELAY = 0.05

_MAX_GROUP_DOCS = 2048
_DEGRADED_TIMEOUT_S = 0.25


def normalize(text: str) -> str:
    """Grouping key of an entity: NFKC, case-folded, inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class DocumentRecord:
    request_id: str
    source: str | None
    model_name: str
    model_version: str
    text: str
    text_sha256: str
    entities: Sequence[Entity]
    metadata: dict | None = None
    ner_ms: float | None = None


@dataclass
class WriteResult:
    commit_lsn: str | None
    duplicates: set[str] = field(default_factory=set)
    db_ms: float = 0.0


class _WriteJob:
    __slots__ = ("records", "future")

    def __init__(self, records: Sequence[DocumentRecord]):
        self.records = records
        self.future: Future[WriteResult] = Future()


class _BoundedConnection(psycopg.Connection):
    """A connection whose pool wants every write transaction bounded by ``statement_timeout_ms``
    (statement and lock timeout, applied per transaction by EntityWriter; None = server default)."""

    statement_timeout_ms: int | None = None


def _configure_connection(conn: psycopg.Connection) -> None:
    # Explicit transaction() blocks only: a connection never goes back to the pool mid-transaction.
    # No session settings here: behind a transaction-pooling PgBouncer a session SET lands on whichever
    # server connection ran it and leaks to other clients (timeouts are per transaction instead).
    conn.autocommit = True


def make_pool(dsn: str, *, name: str, min_size: int, max_size: int, timeout: float,
              statement_timeout_ms: int, connect_timeout: float,
              prepare_threshold: int | None = None) -> ConnectionPool:
    """A checked pool, not yet opened. Connection errors never include the DSN (psycopg's messages
    name host/port only). ``statement_timeout_ms`` bounds each write transaction (set LOCAL by
    EntityWriter); ``prepare_threshold`` None (default) = psycopg never prepares statements, which every
    pooler allows (PgBouncer < 1.21, or without max_prepared_statements, loses prepared statements
    between transactions); an int = psycopg's prepare_threshold, for a direct or capable path."""
    connection_class = type("BoundedConnection", (_BoundedConnection,),
                            {"statement_timeout_ms": statement_timeout_ms})
    return ConnectionPool(
        dsn,
        connection_class=connection_class,
        name=name,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        check=ConnectionPool.check_connection,
        configure=_configure_connection,
        kwargs={"connect_timeout": max(1, int(round(connect_timeout))), "application_name": name,
                "prepare_threshold": prepare_threshold},
        # psycopg_pool backs off exponentially while reconnecting; giving up early frees the slot so the
        # next request tries at once, so recovery after an outage of any length takes one attempt.
        reconnect_timeout=max(5.0, 2 * timeout),
        max_lifetime=1800,
    )


class EntityWriter:
    """Group-committing writer for the primary.

    :meth:`write` blocks until the records are committed and returns the commit LSN. It raises
    Unavailable (503, ``database_unavailable``) when the primary cannot be reached within the pool
    timeout or a statement times out, and Conflict (409) when a request id was stored with other
    content. Call :meth:`open` once before use and :meth:`close` at shutdown.
    """

    def __init__(self, pool: ConnectionPool, *, store_text: bool = True, retry_after: int = 2,
                 write_timeout: float = 10.0):
        self.pool = pool
        self.store_text = store_text
        self.retry_after = retry_after
        self.write_timeout = write_timeout
        self._sql = queries.load("writer")
        self._queue: queue.SimpleQueue[_WriteJob | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="db-committer", daemon=True)
        self._closed = False
        self._last_ok = 0.0
        self._degraded = False

    def open(self) -> None:
        """Open the pool without waiting for the database (readiness tells when it answers)."""
        self.pool.open(wait=False)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self.pool.close(timeout=timeout)

    def ready(self) -> bool:
        """True when the primary answers a trivial query within the pool timeout (cached for 1 s
        after a successful write or check, so probes cost nothing under load)."""
        if time.monotonic() - self._last_ok < 1.0:
            return True
        try:
            with self.pool.connection(timeout=min(1.0, self.pool.timeout)) as conn:
                conn.execute(self._sql["ping"]).fetchone()
        except (PoolTimeout, psycopg.Error):
            return False
        self._last_ok = time.monotonic()
        return True

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
        except (PoolTimeout, psycopg.OperationalError, Unavailable) as exc:
            self._degraded = True
            error = self._translate(exc)
            for job in jobs:
                job.future.set_exception(error)
            return error if isinstance(error, Unavailable) else None
        except Exception as exc:
            # Anything else is about the data of one request (a value PostgreSQL or the driver
            # refuses): write each request on its own so only the guilty one fails.
            if len(jobs) > 1:
                unavailable = None
                for job in jobs:
                    unavailable = self._commit_group([job]) or unavailable
                return unavailable
            outcome = {id(jobs[0]): self._translate(exc)}
        for job in jobs:
            result = outcome[id(job)]
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        return None

    def _translate(self, exc: BaseException) -> FunctionError:
        if isinstance(exc, FunctionError):
            return exc
        if isinstance(exc, PoolTimeout | psycopg.OperationalError):
            kind = "database_timeout" if isinstance(exc, psycopg.errors.QueryCanceled |
                                                    psycopg.errors.LockNotAvailable) \
                else "database_unavailable"
            log.warning("database write failed", extra={
                "event": "db.write_failed", "error.type": type(exc).__name__,
                "error.message": _safe_message(exc)})
            return Unavailable("the database is unavailable, retry later", code=kind,
                               retry_after=self.retry_after)
        log.error("database write failed", extra={
            "event": "db.write_failed", "error.type": type(exc).__name__,
            "error.message": _safe_message(exc)})
        return _internal("the database write failed")

    def _write_with_retry(self, jobs: list[_WriteJob]) -> dict[int, WriteResult | BaseException]:
        # A concurrent writer (another pod) may insert one of our ids between the check and the
        # insert; the second attempt then sees it in the check.
        connection_retried = False
        for attempt in range(3):
            try:
                return self._write_once(jobs)
            except _Raced:
                pass
            except PoolTimeout:  # (an OperationalError too) no connection at all: no point retrying
                raise
            except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
                # The statement/lock timeout fired: a second try would wait as long again (a locked
                # table stays locked), doubling the time to the 503.
                raise
            except psycopg.OperationalError:
                # The connection died under the transaction (server restart, pg_terminate_backend).
                # Retrying once on a fresh, checked connection is safe: the write is idempotent, so
                # even a COMMIT whose outcome was lost is recognised as already stored.
                if connection_retried or self._degraded:
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
        # While the database is known to be down, probe with a short wait instead of the full pool
        # timeout, so a burst of requests during an outage gets its 503s quickly.
        timeout = _DEGRADED_TIMEOUT_S if self._degraded else None
        with self.pool.connection(timeout=timeout) as conn:
            with conn.transaction():
                bound = getattr(conn, "statement_timeout_ms", None)
                if bound is not None:
                    # LOCAL (is_local=true): ends with this transaction, so nothing outlives it on a
                    # server connection that a pooler hands to another client next.
                    conn.execute("SELECT set_config('statement_timeout', %s, true),"
                                 " set_config('lock_timeout', %s, true)", (str(bound), str(bound)))
                existing = {row[0]: row[1:] for row in
                            conn.execute(self._sql["existing_documents"], {"request_ids": all_ids})}
                outcome: dict[int, WriteResult | BaseException] = {}
                to_insert: dict[str, DocumentRecord] = {}
                for job in jobs:
                    conflict = None
                    for record in job.records:
                        fingerprint = (record.text_sha256, record.model_name, record.model_version)
                        stored = existing.get(record.request_id) or (
                            _fingerprint(to_insert[record.request_id])
                            if record.request_id in to_insert else None)
                        if stored is not None and tuple(stored) != fingerprint:
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
                inserted: set[str] = set()
                if to_insert:
                    inserted = {row[0] for row in conn.execute(
                        self._sql["insert_documents"], self._document_params(to_insert.values()))}
                    if inserted != set(to_insert):
                        raise _Raced()  # leaving transaction() rolls the whole group back
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
        self._last_ok = time.monotonic()
        self._degraded = False
        for job in jobs:
            if id(job) in outcome:
                continue
            duplicates = {r.request_id for r in job.records if r.request_id in existing}
            # A request id that two queued requests share is written once; the later one is a duplicate.
            duplicates |= {r.request_id for r in job.records
                           if r.request_id in inserted and to_insert[r.request_id] is not r}
            outcome[id(job)] = WriteResult(commit_lsn=lsn, duplicates=duplicates, db_ms=db_ms)
        return outcome

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


def _fingerprint(record: DocumentRecord) -> tuple[str, str, str]:
    return (record.text_sha256, record.model_name, record.model_version)


def _internal(message: str) -> FunctionError:
    return FunctionError(message)


def _safe_message(exc: BaseException) -> str:
    # psycopg messages name host and port at most, never the password; keep them short anyway.
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
