"""The spaCy model in a process of its own, so that it never waits for the GIL of the HTTP edge.

One Python process holds one GIL: with the model, the HTTP server, the handler threads and the database
committer in one process, every request's edge work (parsing, JSON, psycopg) stops the model, and one
pod cannot use more than one core however many it is given (docs/performance.md has the measurement).
Here the model runs in a child process (its own GIL, its own core) and the function's process keeps the
HTTP edge and the writer.

:class:`ModelProcess` (in the function's process) starts ``python -m functions.runtime.model_process``
with a pair of pipes. The child loads the pipeline and runs :class:`functions.runtime.nlp.NerEngine`
exactly as an in-process engine would (micro-batching, memory zones, the tokenizer guard, malloc_trim),
on its main thread, which also reads the pipe (``NerEngine.serve``: no hand-off between threads per batch);
texts go there and entity tuples come back as the typed messages of
:mod:`functions.runtime.model_messages`, pickled on the pipes (``multiprocessing.connection``). Each job
carries its request id, so the child's log lines for a request join the request's trail in Kibana. The
child is a plain ``python -m`` process, not a ``multiprocessing`` spawn, so nothing re-imports the
parent's ``__main__`` (the python3-http template's ``index.py``).

The child ignores SIGTERM/SIGINT (the watchdog signals the function's process; the parent decides when
the model stops) and exits when its pipe closes, so it never outlives the parent. If it dies (e.g. the
kernel's OOM killer picks it for a huge batch), the requests it held get 503 ``model_unavailable`` with
``Retry-After``, readiness reports the model as not ready, and a new child is started.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path

from functions.runtime import errors, metrics
from functions.runtime.errors import FunctionError, Overloaded, Unavailable
from functions.runtime.model_messages import (
    VERSION,
    Answers,
    Cancel,
    Done,
    ErrorInfo,
    Job,
    LoadFailed,
    Ready,
    Stop,
)
from functions.runtime.recognizer import ModelInfo
from functions.runtime.settings import Settings, child_environment
from functions.runtime.shapes import Entity

log = logging.getLogger(__name__)

# functions/runtime/model_process.py -> the directory that holds the ``functions`` package
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# Between two restarts of a child that keeps dying (seconds, doubled up to the cap).
_RESTART_DELAY_S, _RESTART_DELAY_MAX_S = 1.0, 30.0


class ModelLoadError(RuntimeError):
    """The model process could not load the pipeline (the message is the child's own error)."""


class ModelProcess:
    """The parent's side, a :class:`functions.runtime.recognizer.Recognizer` like the in-process
    :class:`functions.runtime.nlp.NerEngine` it runs in the child. Thread-safe.

    ``max_pending`` documents may wait for or be in the model before :meth:`submit` refuses work with
    Overloaded (429), counted here so the refusal is immediate. ``start_timeout`` (s) bounds loading the
    model. ``command`` replaces the child's command line (tests start stand-in models with it).
    """

    def __init__(self, settings: Settings, *, start_timeout: float = 300.0,
                 command: Sequence[str] | None = None):
        self.settings = settings
        self.max_pending = settings.max_pending_docs
        self.start_timeout = start_timeout
        self.command = list(command) if command else [sys.executable, "-m", "functions.runtime.model_process"]
        self.info: ModelInfo | None = None
        self.load_ms = 0.0
        self.blas = ""  # the loaded model's matrix library (Ready.blas)
        self.pid: int | None = None
        self.restarts = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # jobs, pending, up
        self._send_lock = threading.Lock()
        self._jobs: dict[int, tuple[Future, int]] = {}
        self._pending = 0
        self._up = False
        self._closing = False
        self._proc: subprocess.Popen | None = None
        self._inbox: Connection | None = None
        self._outbox: Connection | None = None
        self._receiver: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> ModelProcess:
        """Start the child and block until its model is loaded. Raises ModelLoadError when the child
        reports a load error, exits, or takes longer than ``start_timeout``."""
        self._spawn()
        metrics.QUEUED_DOCUMENTS.set_function(lambda: self._pending)
        self._receiver = threading.Thread(target=self._receive, name="model-receiver", daemon=True)
        self._receiver.start()
        return self

    def ready(self) -> bool:
        """True while a child with a loaded model is running."""
        return self._up and not self._closing

    def close(self, timeout: float = 30.0) -> None:
        """Let the child finish what it was given (up to ``timeout`` s), then stop it (idempotent)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        proc = self._proc
        # A child that stopped reading must not hold shutdown: the "stop" is best effort, the wait
        # below is bounded and ends in a kill.
        if self._send_lock.acquire(timeout=1.0):
            try:
                with contextlib.suppress(Exception):  # closed, broken or replaced: the wait below decides
                    if self._outbox is not None:
                        self._outbox.send(Stop())
            finally:
                self._send_lock.release()
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("model process did not stop in time: killed", extra={
                    "event": "model.process_killed", "pid": proc.pid})
                proc.kill()
                proc.wait()
        if self._receiver is not None and self._receiver is not threading.current_thread():
            self._receiver.join(5.0)  # a restart in progress notices the close within ~0.5 s
        self._fail_all(Unavailable("the model worker stopped", code="shutting_down",
                                   retry_after=self.settings.retry_after_s))

    # -- requests ---------------------------------------------------------------------------------

    def submit(self, texts: Sequence[str], request_id: str | None = None) -> Future:
        """Queue ``texts``; the future resolves to one entity list per text (or the text's error, e.g.
        PayloadTooLarge 413 ``text_too_long`` from the tokenizer guard).

        Raises Overloaded (429) when more than ``max_pending`` documents are queued, Unavailable (503,
        ``model_unavailable``) while the child restarts and (``shutting_down``) after :meth:`close`.
        """
        n = len(texts)
        if n == 0:  # nothing for the model: the child would have nothing to answer
            done: Future = Future()
            done.set_result([])
            return done
        with self._lock:
            if self._closing:
                raise Unavailable("the model worker is shutting down", code="shutting_down",
                                  retry_after=self.settings.retry_after_s)
            if not self._up:
                raise Unavailable("the model process is restarting; retry shortly", code="model_unavailable",
                                  retry_after=self.settings.retry_after_s)
            if self._pending + n > self.max_pending and self._pending > 0:
                raise Overloaded(f"{self._pending} documents are already queued for the model; retry shortly")
            self._pending += n
            job_id = next(self._ids)
            future: Future = Future()
            future.job_id = job_id  # type: ignore[attr-defined]
            self._jobs[job_id] = (future, n)
            outbox = self._outbox
        try:
            with self._send_lock:
                outbox.send(Job(job_id, request_id, list(texts)))
        except Exception:  # the child is gone (or its pipe closed under us): the receiver restarts it
            self._finish(job_id)
            raise Unavailable("the model process stopped; retry shortly", code="model_unavailable",
                              retry_after=self.settings.retry_after_s) from None
        return future

    def recognize(self, texts: Sequence[str], *, request_id: str | None = None,
                  timeout: float | None = None) -> list[list[Entity]]:
        """Blocking :meth:`submit`. Raises TimeoutError after ``timeout`` seconds; the child then skips
        the job's texts it has not started (the caller has its 504 already)."""
        future = self.submit(texts, request_id)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            with contextlib.suppress(Exception), self._send_lock:  # best effort: a dead child answers nothing
                self._outbox.send(Cancel(future.job_id))  # type: ignore[attr-defined]
            raise

    # -- internals --------------------------------------------------------------------------------

    def _spawn(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = child_environment(_PACKAGE_ROOT)
        try:
            proc = subprocess.Popen([*self.command, str(to_child_r), str(from_child_w)],
                                    pass_fds=(to_child_r, from_child_w), env=env, stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(to_child_w)
            os.close(from_child_r)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        inbox, outbox = Connection(from_child_r, writable=False), Connection(to_child_w, readable=False)
        deadline = time.monotonic() + self.start_timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModelLoadError(f"the model process did not load the model in {self.start_timeout:.0f} s")
                if self._closing:  # close() while a replacement loads: do not wait for it
                    raise ModelLoadError("the function is shutting down")
                if not inbox.poll(min(remaining, 0.5)):
                    continue
                message = inbox.recv()
                if getattr(message, "v", None) != VERSION:
                    raise ModelLoadError(f"the model process speaks another message version: {message!r:.200}")
                if isinstance(message, Ready):
                    ready, self.load_ms = message, message.load_ms
                    break
                if isinstance(message, LoadFailed):
                    raise ModelLoadError(f"{message.error_type}: {message.message}")
        except EOFError:
            code = proc.wait()
            inbox.close()
            outbox.close()
            raise ModelLoadError(f"the model process exited with code {code} before the model loaded") from None
        except BaseException:
            proc.kill()
            proc.wait()
            inbox.close()
            outbox.close()
            raise
        self.info = ModelInfo(ready.name, ready.version, tuple(ready.pipeline))
        metrics.MODEL_INFO.labels(self.info.name, self.info.version).set(1)
        self.blas = ready.blas
        # One series: a replacement child may report other labels (e.g. after an image change).
        metrics.MODEL_BLAS_INFO.clear()
        metrics.MODEL_BLAS_INFO.labels(ready.blas, ready.blis_kernels).set(1)
        with self._lock:
            self._proc, self._inbox, self._outbox, self.pid = proc, inbox, outbox, proc.pid
            self._up = True

    def _finish(self, job_id: int) -> tuple[Future, int] | None:
        with self._lock:
            entry = self._jobs.pop(job_id, None)
            if entry is not None:
                self._pending -= entry[1]
        return entry

    def _fail_all(self, error: FunctionError) -> None:
        with self._lock:
            self._up = False
            jobs, self._jobs, self._pending = list(self._jobs.values()), {}, 0
        for future, _ in jobs:
            if not future.done():
                future.set_exception(error)

    def _resolve(self, message: Done) -> None:
        entry = self._finish(message.job_id)
        if entry is None or entry[0].done():
            return
        try:
            if message.error is not None:
                entry[0].set_exception(ErrorInfo(*message.error).rebuild())
            else:
                entry[0].set_result([[Entity(*entity) for entity in doc] for doc in message.entities])
        except Exception as exc:  # a malformed answer fails its request, not the reader thread
            log.error("unreadable answer from the model process", exc_info=True,
                      extra={"event": "model.bad_answer", "error.type": type(exc).__name__})
            if not entry[0].done():
                entry[0].set_exception(FunctionError("entity recognition failed"))

    def _receive(self) -> None:
        """Resolve futures from the child's messages; restart the child when it dies."""
        delay = _RESTART_DELAY_S
        while True:
            inbox = self._inbox
            started = time.monotonic()
            try:
                while True:
                    message = inbox.recv()
                    if isinstance(message, Answers) and message.v == VERSION:
                        for done in message.done:
                            self._resolve(done)
                        if message.batch is not None:
                            metrics.observe_model_batch(*message.batch)
                    else:
                        raise ValueError(f"unexpected message {type(message).__name__}")
            except (EOFError, OSError):
                pass
            except Exception:  # an unreadable message: this child can no longer be trusted
                log.error("unreadable message from the model process: stopping it", exc_info=True,
                          extra={"event": "model.bad_message", "pid": self.pid})
                self._proc.kill()
            code = self._proc.wait()
            inbox.close()
            with self._send_lock:  # no handler thread is inside send() when the pipe closes
                self._outbox.close()
            if self._closing:
                return
            self._fail_all(Unavailable(f"the model process stopped (exit code {code}); retry shortly",
                                       code="model_unavailable", retry_after=self.settings.retry_after_s))
            log.error("model process stopped; starting a new one", extra={
                "event": "model.process_stopped", "exit_code": code, "pid": self.pid})
            delay = _RESTART_DELAY_S if time.monotonic() - started > 60 else delay
            while not self._closing:
                try:
                    self._spawn()
                    if self._closing:  # close() ran just as this child finished loading: stop it too
                        with contextlib.suppress(Exception):
                            self._outbox.send(Stop())
                        try:
                            self._proc.wait(5.0)
                        except subprocess.TimeoutExpired:
                            self._proc.kill()
                            self._proc.wait()
                        return
                    self.restarts += 1
                    log.info("model process restarted", extra={
                        "event": "model.process_restarted", "pid": self.pid, "load_ms": round(self.load_ms, 1)})
                    break
                except Exception as exc:
                    log.error("model process failed to start", extra={
                        "event": "model.process_failed", "error.type": type(exc).__name__,
                        "error.message": str(exc)[:300]})
                    time.sleep(delay)
                    delay = min(delay * 2, _RESTART_DELAY_MAX_S)
            if self._closing:
                return


# -- the child ----------------------------------------------------------------------------------------

def _answer(job: Job, future: Future) -> Done:
    """The Done of a job in the child: its entities as plain tuples, or its error."""
    if future.cancelled():
        return Done(job.job_id, None, ErrorInfo.of(errors.Timeout("the request timed out before its texts ran")))
    error = future.exception()
    if error is not None:
        if not isinstance(error, FunctionError):
            log.error("entity recognition failed", exc_info=error, extra={
                "event": "ner.job_failed", "request_id": job.request_id, "error.type": type(error).__name__})
        return Done(job.job_id, None, ErrorInfo.of(error))
    return Done(job.job_id, [[tuple(entity) for entity in doc] for doc in future.result()], None)


def _exit_with_parent(fd: int) -> None:
    """Block (no CPU, no wake-ups) until no writer of the job pipe ``fd`` is left, then exit at once
    without running the queue. poll() reports POLLHUP even when no event is asked for, so this thread never
    takes the worker's messages."""
    poller = select.poll()
    poller.register(fd, 0)
    while True:
        for _, event in poller.poll():
            if event & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                os._exit(0)


def child_main(fd_in: int, fd_out: int, load=None) -> int:
    """The model process: load the pipeline (``load(model, pipeline)``, default
    :func:`functions.runtime.nlp.load_pipeline`), answer jobs until ``stop`` or the pipe closes."""
    from functions.runtime import blas, logs, settings
    from functions.runtime.nlp import NerEngine, load_pipeline

    load = load or load_pipeline
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the parent stops the model, after the drain window
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    s = settings.current()
    logs.configure(s.function_name, s.log_level)
    inbox, outbox = Connection(fd_in, writable=False), Connection(fd_out, readable=False)

    # Everything below runs on this one thread (NerEngine.serve): no locks.
    def send(message: tuple) -> None:
        with contextlib.suppress(OSError):  # the parent is gone; the read loop sees EOF and ends
            outbox.send(message)

    # Jobs answered since the last flush: sent as one Answers message after each model chunk (one pickle and
    # one write for all of them, one wake-up of the parent's reader), or at once after a cancellation. The
    # engine reports a batch (on_batch) just before its last flush, so the observation rides along.
    answered: list[Done] = []
    observed: list[tuple[int, float]] = []

    def flush() -> None:
        done = tuple(answered)
        answered.clear()
        batch = observed.pop() if observed else None
        if done or batch:
            send(Answers(done, batch))

    started = time.perf_counter()
    try:
        matmul = blas.use(s.spacy_blas)
        nlp = load(s.spacy_model, s.spacy_pipeline)
        blas.adopt(nlp)
        engine = NerEngine(nlp, max_batch=s.batch_max_size, max_wait_ms=s.batch_max_wait_ms,
                           max_pending=sys.maxsize, zone_docs=s.zone_docs, max_batch_chars=s.batch_max_chars,
                           on_batch=lambda documents, seconds: observed.append((documents, seconds)),
                           on_answered=flush, thread=False)
    except Exception as exc:
        send(LoadFailed(type(exc).__name__, str(exc)[:1000]))
        return 1
    send(Ready(engine.info.name, engine.info.version, tuple(engine.info.pipeline),
               (time.perf_counter() - started) * 1000.0, matmul.library, matmul.blis_kernels or ""))
    futures: dict[int, Future] = {}

    def forget(job: Job, future: Future) -> None:
        futures.pop(job.job_id, None)
        answered.append(_answer(job, future))

    def handle(message) -> None:
        if getattr(message, "v", None) != VERSION:
            log.error("message of another version from the parent: stopping", extra={
                "event": "model.bad_message", "message.type": type(message).__name__})
            engine.close()
        elif isinstance(message, Job):
            future = engine.submit(message.texts, message.request_id)
            futures[message.job_id] = future
            future.add_done_callback(functools.partial(forget, message))
        elif isinstance(message, Cancel):
            future = futures.get(message.job_id)
            if future is not None and not future.cancel():
                future.abandoned = True  # type: ignore[attr-defined]  # NerEngine skips its unstarted texts
            flush()  # a job cancelled before it started was answered by forget() just now
        elif isinstance(message, Stop):
            engine.close()  # the queued jobs run first, then serve() returns

    # One poll object for the life of the process: Connection.poll builds a selector on every call (~4 us
    # against ~0.4), and the engine polls up to three times per job.
    poller = select.poll()
    poller.register(fd_in, select.POLLIN)

    def readable(timeout: float | None) -> bool:
        """A message (or the pipe's end) within ``timeout`` s (None: wait); milliseconds rounded up, as
        Connection.poll does."""
        return bool(poller.poll(None if timeout is None else math.ceil(timeout * 1000.0)))

    def feed(timeout: float | None) -> None:
        """The engine's source (NerEngine.serve): every message that arrives within ``timeout``."""
        try:
            if readable(timeout):
                handle(inbox.recv())
                while readable(0):
                    handle(inbox.recv())
        except (EOFError, OSError):
            # The parent is gone: nobody will read the answers, and a replacement may be loading.
            # Exit now instead of running the queue.
            os._exit(0)

    # One thread reads the pipe and runs the model: no hand-off between threads per batch. A second one
    # only watches for the parent's death, which a batch in progress would not see until it ends.
    threading.Thread(target=_exit_with_parent, args=(fd_in,), name="parent-watch", daemon=True).start()
    engine.serve(feed)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1]), int(sys.argv[2])))
