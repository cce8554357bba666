"""bench.limits on a tiny sample with the real model (the model-free bench pieces:
tests/unit/test_bench_smoke.py)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_raw_limits_measure_on_a_tiny_sample(tmp_path):
    from bench import limits

    texts = tmp_path / "s.json"
    texts.write_text(json.dumps(["Apple opened a store in Paris on Monday.", "I love Berlin!"] * 5))
    out = limits.measure(
        {"texts_path": str(texts), "rounds": 1, "full_docs": 3, "entities_out": str(tmp_path / "e.json")}
    )
    assert out["ner_pipes"] == ["ner"] and out["ner_pipe128"]["docs"] == 10 and out["full_loop"]["docs"] == 3
    assert out["ner_loop"]["doc_ms_p50"] > 0
    assert len(json.loads((tmp_path / "e.json").read_text())) == 10
