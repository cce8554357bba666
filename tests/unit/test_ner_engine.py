"""NerEngine scheduling with stand-in pipelines (no model): bounded queueing, shutdown, short requests
first. Results against the real model: tests/integration/test_ner_engine_model.py."""

from __future__ import annotations

import threading

import pytest

from functions.runtime.errors import Overloaded, Timeout, Unavailable
from functions.runtime.nlp import NerEngine


class _BlockingPipeline:
    """Stands in for spaCy to hold the worker busy (queueing behaviour only)."""

    meta = {"lang": "en", "name": "fake", "version": "0"}
    pipe_names = ["ner"]

    def __init__(self):
        self.release = threading.Event()

    def pipe(self, texts, batch_size=128):
        self.release.wait(10)
        return iter([])

    def memory_zone(self):
        import contextlib
        return contextlib.nullcontext()


def test_submit_refuses_work_beyond_max_pending_with_429():
    fake = _BlockingPipeline()
    engine = NerEngine(fake, max_batch=1, max_wait_ms=0, max_pending=3, warmup=False, zone_docs=0)
    try:
        engine.submit(["a"])  # taken by the worker, which blocks
        engine.submit(["b", "c"])
        with pytest.raises(Overloaded) as info:
            engine.submit(["d", "e"])
        assert info.value.status == 429 and "Retry-After" in info.value.headers
    finally:
        fake.release.set()
        engine.close()


def test_closed_engine_answers_503():
    fake = _BlockingPipeline()
    fake.release.set()
    engine = NerEngine(fake, warmup=False, zone_docs=0)
    engine.close()
    with pytest.raises(Unavailable):
        engine.submit(["x"])


class _RecordingPipeline:
    """Stands in for spaCy to observe the order of model calls (scheduling only)."""

    meta = {"lang": "en", "name": "fake", "version": "0"}
    pipe_names = ["ner"]

    def __init__(self):
        self.gate = threading.Event()
        self.calls: list[list[str]] = []
        self.short_done_before_long: bool | None = None
        self.short_future = None

    def pipe(self, texts, batch_size=128):
        self.gate.wait(10)
        self.calls.append(list(texts))
        if any(len(t) > 100 for t in texts) and self.short_future is not None:
            self.short_done_before_long = self.short_future.done()

        class _Doc:
            ents = ()

        return iter([_Doc() for _ in texts])

    def memory_zone(self):
        import contextlib
        return contextlib.nullcontext()


def test_short_request_is_answered_before_a_long_one_in_the_same_batch_runs():
    fake = _RecordingPipeline()
    engine = NerEngine(fake, max_batch=128, max_wait_ms=50, warmup=False, zone_docs=0)
    try:
        blocker = engine.submit(["warm"])  # the worker takes this and waits on the gate
        long_job = engine.submit(["x" * 1500])
        fake.short_future = engine.submit(["short text"])
        fake.gate.set()
        assert blocker.result(5) == [[]] and long_job.result(5) == [[]] and fake.short_future.result(5) == [[]]
    finally:
        engine.close()
    assert fake.short_done_before_long is True


class _AbandoningPipeline(_RecordingPipeline):
    """Marks ``victim`` abandoned (its caller timed out) while the chunk before it runs."""

    victim = None

    def pipe(self, texts, batch_size=128):
        docs = super().pipe(texts, batch_size)
        if self.victim is not None and "short" in texts:
            self.victim.abandoned = True
        return docs


def test_a_skipped_chunk_of_a_timed_out_request_still_answers_it_with_504():
    fake = _AbandoningPipeline()
    engine = NerEngine(fake, max_batch=128, max_wait_ms=50, warmup=False, zone_docs=0)
    try:
        blocker = engine.submit(["warm"])  # holds the worker until the gate opens
        short = engine.submit(["short"])
        long_job = engine.submit(["x" * 1500])  # a chunk of its own, after the short one
        fake.victim = long_job
        fake.gate.set()
        assert blocker.result(5) == [[]] and short.result(5) == [[]]
        with pytest.raises(Timeout):
            long_job.result(5)  # answered, never left pending (the model process counts capacity by answers)
    finally:
        engine.close()
    assert ["x" * 1500] not in fake.calls, "the abandoned text must not reach the model"


class _TimedPipeline(_RecordingPipeline):
    """Records each model call's texts; every call takes ``seconds``."""

    seconds = 0.05

    def pipe(self, texts, batch_size=128):
        import time

        self.gate.set()
        time.sleep(self.seconds)
        return super().pipe(texts, batch_size)


def test_callers_that_come_back_right_after_a_batch_share_the_next_one_and_an_idle_caller_waits_for_none(
        monkeypatch):
    import time

    from functions.runtime import nlp

    # A generous window, so a slow thread start on a loaded machine still comes back within it.
    monkeypatch.setattr(nlp, "_WAIT_CAP_S", 1.0)
    monkeypatch.setattr(nlp, "_WAIT_SHARE", 10.0)
    fake = _TimedPipeline()
    engine = NerEngine(fake, max_batch=128, max_wait_ms=0, warmup=False, zone_docs=0)
    try:
        blocker = engine.submit(["blocker"])
        fake.gate.wait(5)  # the worker runs the blocker: the next four queue behind it and run as one batch
        first = [engine.submit([f"first {i}"]) for i in range(4)]
        for future in [blocker, *first]:
            future.result(5)
        assert fake.calls[-1] == [f"first {i}" for i in range(4)]
        # The four callers come back one after another, a few milliseconds apart (closed-loop clients).
        again = []
        for i in range(4):
            time.sleep(0.005)
            again.append(engine.submit([f"again {i}"]))
        for future in again:
            future.result(5)
        assert [c for c in fake.calls if c[0].startswith("again")] == [[f"again {i}" for i in range(4)]]
        # Long after the last batch, a lone caller is not held back waiting for others.
        time.sleep(0.6)
        started = time.perf_counter()
        engine.submit(["alone"]).result(5)
        assert time.perf_counter() - started < 0.3 + fake.seconds
    finally:
        engine.close()


def test_the_wait_closes_when_callers_come_back_after_it_and_a_probe_reopens_it_when_they_come_back_quickly(
        monkeypatch):
    import time

    from functions.runtime import nlp

    # Windows of 60, 30 and 15 ms against callers that come back 120 ms after their answer: three waits
    # that bring nothing close the window. Margins are wide so a loaded machine cannot blur the two cases.
    monkeypatch.setattr(nlp, "_WAIT_CAP_S", 0.06)
    monkeypatch.setattr(nlp, "_WAIT_FLOOR_S", 0.015)
    monkeypatch.setattr(nlp, "_WAIT_SHARE", 10.0)
    monkeypatch.setattr(nlp, "_PROBE_EVERY", 2)
    fake = _TimedPipeline()
    fake.seconds = 0.2
    engine = NerEngine(fake, max_batch=128, max_wait_ms=0, warmup=False, zone_docs=0)

    def rounds(count: int, come_back_after_s: float) -> None:
        # One caller's request always queues behind the running batch, so every batch has one document
        # and expects another back: the caller that was answered last.
        running = engine.submit(["x"])
        fake.gate.wait(5)
        queued = engine.submit(["x"])
        for _ in range(count):
            running.result(5)
            time.sleep(come_back_after_s)
            running, queued = queued, engine.submit(["x"])
        running.result(5)
        queued.result(5)

    try:
        rounds(4, come_back_after_s=0.12)
        assert engine.wait_window_s == 0.0
        rounds(4, come_back_after_s=0.0)
        assert engine.wait_window_s >= 0.015
    finally:
        engine.close()
