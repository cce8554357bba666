"""The spaCy model, loaded once per process, and the one worker thread that runs it.

Every request's texts go through :class:`NerEngine`: concurrent requests that arrive within a few
milliseconds are run through a single ``nlp.pipe`` call (dynamic micro-batching) and each request gets
its own entities back. Only the worker thread touches the pipeline, so memory zones are never shared
between threads.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass

from functions.runtime import metrics, tokenizer_guard
from functions.runtime.errors import FunctionError, Overloaded, Timeout, Unavailable
from functions.runtime.recognizer import ModelInfo
from functions.runtime.settings import Settings
from functions.runtime.shapes import Entity

log = logging.getLogger(__name__)

# A text this long takes the model tens of milliseconds: it gets a pipe call of its own.
_LONG_TEXT_CHARS = 1000

_DEFAULTS = Settings()  # the one place of defaults (functions/runtime/settings.py)

# Short texts run outside any memory zone at start-up: tokens they put in the tokenizer cache and
# the string store stay there for the life of the process, so the hot path inside zones hits the cache.
_WARMUP_TEXTS = (
    "Tim Cook visited Berlin on Monday and met Angela Merkel at the Brandenburg Gate.",
    "I ordered a new iPhone from Apple on 3 March 2024 for $999 and it arrived two days late!",
    "The support team at Amazon in Seattle refunded 50% of my order after I called at 9am.",
    "Great service from Delta Airlines, flight from New York to London was on time :)",
    "Microsoft, Google and Tesla stocks fell 3% on Wednesday, according to Reuters.",
    "we stayed at the Hilton in Paris last weekend. the staff were lovely, thanks Marie!",
)


def load_pipeline(model: str, pipeline: str = "ner"):
    """Load the spaCy pipeline ``model`` (a package name or a path).

    With ``pipeline="ner"`` only the ``ner`` component (and any component it listens to) is loaded,
    which is what entity recognition needs; ``"full"`` loads everything. Raises OSError if the model
    package is not installed and ValueError if it has no ``ner`` component.
    """
    import spacy

    if pipeline == "full":
        nlp = spacy.load(model)
    else:
        # Read the component list without building the pipeline, then exclude everything NER does not
        # need. A model whose ner listens to a shared tok2vec keeps that tok2vec.
        config = spacy.util.load_config(_config_path(model))
        names = list(config["nlp"]["pipeline"])
        if "ner" not in names:
            raise ValueError(f"model {model!r} has no 'ner' component (components: {names})")
        keep = {"ner"}
        ner_cfg = config["components"].get("ner", {})
        tok2vec_cfg = ner_cfg.get("model", {}).get("tok2vec", {})
        if "Listener" in str(tok2vec_cfg.get("@architectures", "")):
            keep.add(tok2vec_cfg.get("upstream", "tok2vec") if tok2vec_cfg.get("upstream") != "*"
                     else "tok2vec")
        nlp = spacy.load(model, exclude=[name for name in names if name not in keep])
    if "ner" not in nlp.pipe_names:
        raise ValueError(f"model {model!r} has no 'ner' component")
    return nlp


def _config_path(model: str) -> str:
    """Path of the model's config.cfg, for a model directory or an installed model package."""
    import glob

    import spacy

    root = model if os.path.isdir(model) else str(spacy.util.get_package_path(model))
    if os.path.isfile(os.path.join(root, "config.cfg")):
        return os.path.join(root, "config.cfg")
    # Packaged models keep their data in a versioned sub-directory.
    found = sorted(glob.glob(os.path.join(root, "*", "config.cfg")))
    if not found:
        raise OSError(f"no config.cfg found for model {model!r} under {root}")
    return found[-1]


def model_info(nlp) -> ModelInfo:
    meta = nlp.meta
    return ModelInfo(name=f"{meta.get('lang', 'xx')}_{meta.get('name', 'unknown')}",
                     version=str(meta.get("version", "0.0.0")), pipeline=tuple(nlp.pipe_names))


def _load_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_libc_malloc_trim = _load_malloc_trim()


def _malloc_trim() -> None:
    if _libc_malloc_trim is not None:
        _libc_malloc_trim(0)


def extract(doc) -> list[Entity]:
    return [Entity(ent.text, ent.label_, ent.start_char, ent.end_char) for ent in doc.ents]


# Adaptive batching: after a batch, the worker waits for the documents it expects back (those of the
# batch it just ran plus those that queued meanwhile: closed-loop callers come back within a few
# milliseconds), at most this share of the last batch's run time and never longer than the window, which
# starts at the cap, doubles after a wait that brought at least half the missing documents and halves
# after one that did not. Per-document model time falls with the batch (on short comments ~1.36 ms at 7,
# ~0.93 ms at 16), so a batch of all the callers instead of half of them is worth a short idle gap. Below
# the floor the window closes: where callers come back later than the window (the HTTP process answering
# a batch's requests one after another, a CPU-starved machine) every wait only idles the model, and a
# 1 ms wait per batch cost 6-7 % of the throughput at 16 and 64 clients. A closed window is probed at the
# floor once every _PROBE_EVERY batches, so it reopens when callers come back quickly again.
_WAIT_SHARE = 0.25
_WAIT_CAP_S = 0.010
_WAIT_FLOOR_S = 0.001
_PROBE_EVERY = 64


class _Job:
    __slots__ = ("texts", "chars", "future", "request_id", "queued_at")

    def __init__(self, texts: Sequence[str], request_id: str | None):
        self.texts = texts
        self.request_id = request_id
        self.chars = sum(map(len, texts))
        self.future: Future[list[list[Entity]]] = Future()
        self.queued_at = time.perf_counter()


@dataclass
class BatchStats:
    batches: int = 0
    documents: int = 0
    zones: int = 0


class NerEngine:
    """Runs the pipeline on one worker thread with dynamic micro-batching.

    ``max_batch`` bounds the documents and ``max_batch_chars`` the characters in one ``nlp.pipe``
    call (peak memory grows with the characters of a batch, not its count), ``max_wait_ms`` how long the worker
    waits for more requests once it has seen concurrency (0: only for the callers it expects back right
    after a batch, see :meth:`_target`), ``max_pending`` the documents that may be
    queued before :meth:`submit` refuses work (429). ``zone_docs`` is how many documents share one
    ``nlp.memory_zone()``: zones keep the string store from growing, and spanning several batches
    keeps their set-up cost off the hot path. 0 disables zones.

    The first ``warm_docs`` documents run outside any zone: spaCy's tokenizer adds nothing to its
    cache inside a zone, so a process that zones from the start never builds the cache and runs ~8%
    slower; a bounded warm phase fills it once. Every ``trim_every_docs`` documents the worker hands freed
    heap back to the OS (glibc ``malloc_trim``): large batches otherwise leave RSS at its high-water mark.
    ``thread=False`` starts no worker thread: :meth:`serve` runs the worker on the caller's thread.
    """

    def __init__(self, nlp, *, max_batch: int = _DEFAULTS.batch_max_size,
                 max_wait_ms: float = _DEFAULTS.batch_max_wait_ms, max_pending: int = _DEFAULTS.max_pending_docs,
                 zone_docs: int = _DEFAULTS.zone_docs, max_batch_chars: int = _DEFAULTS.batch_max_chars,
                 warmup: bool = True,
                 warm_docs: int = 2000, trim_every_docs: int = 5000,
                 on_batch: Callable[[int, float], None] | None = None,
                 on_answered: Callable[[], None] | None = None, thread: bool = True):
        self.nlp = nlp
        self.info = model_info(nlp)
        self.max_batch = max_batch
        self.max_batch_chars = max_batch_chars
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_pending = max_pending
        self.zone_docs = zone_docs
        self.warm_docs = warm_docs
        self.trim_every_docs = trim_every_docs
        self.stats = BatchStats()
        # (documents, seconds) of every model batch: the Prometheus histograms by default; the model
        # process (functions/runtime/model_process.py) sends them to the process that serves /metrics.
        self._on_batch = on_batch or metrics.observe_model_batch
        # Called on the worker thread after each round of resolved futures (the model process sends their
        # answers together from there); a batch's last round comes right after its on_batch.
        self._on_answered = on_answered or (lambda: None)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending_docs = 0
        self._pending_lock = threading.Lock()
        self._window_s = _WAIT_CAP_S  # the adaptive wait's current bound, 0 when closed (see _collect)
        self._since_probe = 0  # batches since the closed window was last probed
        self._closed = False
        if warmup:
            for doc in nlp.pipe(_WARMUP_TEXTS):
                extract(doc)
        metrics.QUEUED_DOCUMENTS.set_function(lambda: self._pending_docs)
        metrics.MODEL_INFO.labels(self.info.name, self.info.version).set(1)
        # Set by serve(): the worker then runs on the caller's thread and reads its own work.
        self._feed: Callable[[float | None], None] | None = None
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(target=self._run, name="ner-worker", daemon=True)
            self._thread.start()

    # -- public API -------------------------------------------------------------------------------

    def submit(self, texts: Sequence[str], request_id: str | None = None) -> Future[list[list[Entity]]]:
        """Queue ``texts``; the future resolves to one entity list per text (the :class:`~functions.
        runtime.recognizer.Recognizer` seam). ``request_id`` goes into this engine's log lines for them.

        Raises Overloaded (429) when more than ``max_pending`` documents are queued and Unavailable
        (503) after :meth:`close`.
        """
        if self._closed:
            raise Unavailable("the model worker is shutting down", code="shutting_down")
        with self._pending_lock:
            if self._pending_docs + len(texts) > self.max_pending and self._pending_docs > 0:
                raise Overloaded(f"{self._pending_docs} documents are already queued for the model; "
                                 "retry shortly")
            self._pending_docs += len(texts)
        job = _Job(texts, request_id)
        self._queue.put(job)
        return job.future

    def recognize(self, texts: Sequence[str], *, request_id: str | None = None,
                  timeout: float | None = None) -> list[list[Entity]]:
        """Blocking :meth:`submit`. Raises TimeoutError after ``timeout`` seconds (the job is
        cancelled if it has not started)."""
        future = self.submit(texts, request_id)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            if not future.cancel():  # already running: the worker skips those of its texts not yet started
                future.abandoned = True  # type: ignore[attr-defined]
            raise

    @property
    def wait_window_s(self) -> float:
        """The adaptive wait's current bound in seconds; 0.0 while it is closed because waits stopped
        paying (see :data:`_PROBE_EVERY`)."""
        return self._window_s

    def ready(self) -> bool:
        """True while the worker runs (its thread, or :meth:`serve`) and accepts work."""
        running = self._feed is not None or (self._thread is not None and self._thread.is_alive())
        return not self._closed and running

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued work, then stop the worker (from :meth:`serve`'s feed too: it returns after the
        queued work)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def serve(self, feed: Callable[[float | None], None]) -> None:
        """Run the worker on the calling thread (an engine made with ``thread=False``) until :meth:`close`.

        Whenever the worker has nothing queued it calls ``feed(timeout)``, which reads work from its source
        and hands it over with :meth:`submit` (or :meth:`close`), waiting at most ``timeout`` seconds for
        some (None: until some comes; 0: only what is there). Between the chunks of a batch it calls
        ``feed(0)`` too, so a cancellation reaches the texts not yet run. The model process reads its pipe
        this way: no second thread to wake per batch (docs/performance.md has the measurement).
        """
        if self._thread is not None:
            raise RuntimeError("serve() needs an engine made with thread=False")
        self._feed = feed
        self._run()

    def _next(self, timeout: float | None) -> _Job | None:
        """The next queued job; ``timeout`` as for :meth:`queue.SimpleQueue.get` (0: do not wait).
        Raises queue.Empty when nothing came in time."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            if self._feed is None:
                if timeout == 0:
                    raise
                return self._queue.get(timeout=timeout)
        while True:
            self._feed(timeout)
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                if timeout is not None:
                    raise

    # -- worker -----------------------------------------------------------------------------------

    def _collect(self, first: _Job, target: int, wait_s: float) -> tuple[list[_Job], bool]:
        """The jobs of the next batch: ``first``, whatever queued, and what arrives within ``wait_s``
        while the batch has fewer than ``target`` documents."""
        jobs = [first]
        docs = len(first.texts)
        chars = first.chars
        stop = False
        deadline = time.perf_counter() + wait_s
        queued = None  # documents at hand when the queue first ran dry (the wait began)
        while docs < self.max_batch and chars < self.max_batch_chars:
            try:
                remaining = deadline - time.perf_counter() if docs < target else 0.0
                if remaining > 0:
                    try:
                        job = self._next(0)
                    except queue.Empty:
                        queued = docs if queued is None else queued
                        job = self._next(remaining)
                else:
                    job = self._next(0)
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
            docs += len(job.texts)
            chars += job.chars
        if queued is not None and not self.max_wait_s:
            # The wait paid if at least half the missing documents came: keep (or widen) the window; else
            # halve it, and below the floor close it: where callers come back late, waiting only idles the
            # model, and a closed window costs a probe every _PROBE_EVERY batches.
            paid = 2 * (docs - queued) >= target - queued
            if paid:
                self._window_s = min(_WAIT_CAP_S, max(_WAIT_FLOOR_S, self._window_s * 2))
            else:
                self._window_s = self._window_s / 2 if self._window_s / 2 >= _WAIT_FLOOR_S else 0.0
        return jobs, stop

    def _chunks(self, texts: list[str], split_long: bool = True):
        """Split texts into pipe calls of at most max_batch documents and about max_batch_chars
        characters. A long text (>= _LONG_TEXT_CHARS) runs in a call of its own, so the short texts
        before it (the batch is sorted by request size) are answered without waiting for it."""
        chunk: list[str] = []
        chars = 0
        for text in texts:
            long_text = split_long and len(text) >= _LONG_TEXT_CHARS
            if chunk and (long_text or len(chunk) >= self.max_batch or chars + len(text) > self.max_batch_chars):
                yield chunk
                chunk, chars = [], 0
            chunk.append(text)
            chars += len(text)
            if long_text:
                yield chunk
                chunk, chars = [], 0
        if chunk:
            yield chunk

    @staticmethod
    def _deliver(jobs: list[_Job], delivered: int, results: list[list[Entity]]) -> int:
        """Resolve every job whose documents all have results; returns how many jobs are resolved."""
        offset = sum(len(job.texts) for job in jobs[:delivered])
        while delivered < len(jobs) and offset + len(jobs[delivered].texts) <= len(results):
            job = jobs[delivered]
            own = results[offset:offset + len(job.texts)]
            # A text the tokenizer guard refused fails its own request only (413), not the batch.
            refused = next((result for result in own if isinstance(result, Exception)), None)
            if refused is None:
                job.future.set_result(own)
            else:
                if isinstance(refused, FunctionError) and refused.status == 413:
                    log.warning("text refused by the tokenizer guard", extra={
                        "event": "ner.text_refused", "request_id": job.request_id, "error.code": refused.code})
                job.future.set_exception(refused)
            offset += len(job.texts)
            delivered += 1
        return delivered

    def _target(self, first: _Job, concurrent_recently: bool, last: tuple[int, float, float]) -> tuple[int, float]:
        """(documents to wait for, longest wait in seconds) for the batch that ``first`` starts.
        ``last``: the documents expected back after the previous batch (its own and those queued when it
        ended), its run time and its end (perf_counter seconds).

        ``BATCH_MAX_WAIT_MS`` > 0 waits that long for a full batch once concurrency was seen. Otherwise the
        worker waits only for the callers it expects back: the previous batch's documents and those that
        queued while it ran, for at most :data:`_WAIT_SHARE` of its run time and the current window (none
        while the window is closed, but for a probe every :data:`_PROBE_EVERY` batches), and
        only when ``first`` came back within that bound (callers that come back later are not looping:
        no wait). One caller, or a model that was idle, waits for nothing."""
        if self.max_wait_s:
            return (self.max_batch, self.max_wait_s) if concurrent_recently else (0, 0.0)
        expected, seconds, ended = last
        window = self._window_s
        if not window:  # closed (see _PROBE_EVERY): no wait, except a probe at the floor now and then
            self._since_probe += 1
            if self._since_probe < _PROBE_EVERY:
                return 0, 0.0
            self._since_probe, window = 0, _WAIT_FLOOR_S
        wait_s = min(window, seconds * _WAIT_SHARE)
        if first.queued_at - ended > wait_s:
            return 0, 0.0
        return min(self.max_batch, expected), wait_s

    def _run(self) -> None:
        zone_stack = ExitStack()
        zone_open, docs_in_zone = False, 0
        concurrent_recently = False
        last = (0, 0.0, 0.0)
        stop = False
        try:
            while not stop:
                first = self._next(None)
                if first is None:
                    break
                jobs, stop = self._collect(first, *self._target(first, concurrent_recently, last))
                concurrent_recently = len(jobs) > 1
                running = [job for job in jobs if job.future.set_running_or_notify_cancel()]
                cancelled_docs = sum(len(job.texts) for job in jobs) - sum(len(job.texts) for job in running)
                if cancelled_docs:  # timed out before they ran: give their capacity back
                    with self._pending_lock:
                        self._pending_docs -= cancelled_docs
                jobs = running
                if not jobs:
                    continue
                if self.zone_docs and not zone_open and self.stats.documents >= self.warm_docs:
                    zone_stack.enter_context(self.nlp.memory_zone())
                    zone_open = True
                    self.stats.zones += 1
                # Shortest requests first, and each answered as soon as its own documents are done:
                # a short comment that shares a batch with a long text does not wait for it.
                jobs.sort(key=lambda job: job.chars)
                texts = [text for job in jobs for text in job.texts]
                batch_started = time.perf_counter()
                delivered = 0
                try:
                    results: list[list[Entity]] = []
                    owners = [job for job in jobs for _ in job.texts]
                    # Splitting long texts out only helps other requests; one request runs as one pipe.
                    chunks = list(self._chunks(texts, split_long=len(jobs) > 1))
                    for index, chunk in enumerate(chunks):
                        if self._feed is not None and results:
                            self._feed(0)  # cancellations that came while the last chunk ran
                        if all(getattr(job.future, "abandoned", False)
                               for job in owners[len(results):len(results) + len(chunk)]):
                            # Their callers got a 504 already: a timed-out batch of long texts must not hold
                            # the worker for the rest of its texts.
                            results.extend([Timeout("the request timed out before its texts ran")] * len(chunk))
                        else:
                            results.extend(doc if isinstance(doc, Exception) else extract(doc)
                                           for doc in tokenizer_guard.pipe(self.nlp, chunk, batch_size=len(chunk)))
                        # Skipped chunks are answered too: every future resolves (the model process
                        # counts capacity by answers).
                        delivered = self._deliver(jobs, delivered, results)
                        if index + 1 < len(chunks):  # the last chunk's answers go after on_batch, below
                            self._on_answered()
                except Exception as exc:  # one poisoned batch must not kill the worker
                    log.error("model batch failed", exc_info=True,
                              extra={"event": "ner.batch_failed", "batch_size": len(texts)})
                    for job in jobs[delivered:]:
                        job.future.set_exception(exc)
                finally:
                    with self._pending_lock:
                        self._pending_docs -= sum(len(job.texts) for job in jobs)
                    if zone_open:
                        docs_in_zone += len(texts)
                        if docs_in_zone >= self.zone_docs:
                            zone_stack.close()
                            zone_open, docs_in_zone = False, 0
                batch_ended = time.perf_counter()
                last = (len(texts) + self._pending_docs, batch_ended - batch_started, batch_ended)
                # Reported before the batch's last answers are handed on: the model process sends both in
                # one message.
                self._on_batch(len(texts), batch_ended - batch_started)
                self._on_answered()
                before = self.stats.documents
                self.stats.batches += 1
                self.stats.documents += len(texts)
                if self.trim_every_docs and before // self.trim_every_docs != \
                        self.stats.documents // self.trim_every_docs:
                    _malloc_trim()
        finally:
            zone_stack.close()
            # Anything still queued after close() gets a clear error instead of hanging.
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None and job.future.set_running_or_notify_cancel():
                    job.future.set_exception(Unavailable("the model worker stopped", code="shutting_down"))
            self._on_answered()
