"""SPACY_BLAS: which matrix library the model's layers run on (functions/runtime/blas.py). The real
libraries and model: tests/integration/test_blas_model.py."""

from __future__ import annotations

import pytest

from functions.runtime import blas


@pytest.mark.parametrize("kernels", ["haswell", "skx", "zen2", None])
def test_auto_keeps_spacys_blis_where_blis_has_kernels_for_the_cpu_or_cannot_say(kernels):
    assert blas.choose("auto", kernels) == "blis"


def test_auto_moves_to_numpys_blas_where_blis_fell_back_to_its_generic_kernels():
    assert blas.choose("auto", "generic") == "numpy"


@pytest.mark.parametrize("setting", ["blis", "numpy"])
@pytest.mark.parametrize("kernels", ["generic", "haswell", None])
def test_an_explicit_setting_wins_over_the_cpu(setting, kernels):
    assert blas.choose(setting, kernels) == setting


@pytest.mark.parametrize("setting", ["", "openblas", "BLIS", "mkl"])
def test_an_unknown_setting_is_refused_with_the_choices(setting):
    with pytest.raises(ValueError, match="auto, blis, numpy"):
        blas.choose(setting, "generic")


def _maxout_model(ops):
    """A small thinc model of the layers spaCy's tok2vec is made of (Maxout, as X @ W.T), on ``ops``."""
    from thinc.api import Maxout, chain, use_ops

    with use_ops(ops.name):
        model = chain(Maxout(12, 16, nP=3), Maxout(8, 12, nP=2))
    model.ops = ops
    for node in model.walk():
        node.ops = ops
    model.initialize()
    return model


def test_transposed_weights_give_the_products_of_the_stock_ops_and_are_made_once():
    import numpy
    from thinc.api import NumpyOps

    ops = blas.TransposedWeightsOps()
    model = _maxout_model(ops)
    assert ops.adopt([model]) == 4  # two layers, W and b each
    stock = _maxout_model(NumpyOps(use_blis=False))
    stock.from_bytes(model.to_bytes())
    X = numpy.random.default_rng(1).standard_normal((5, 16), dtype=numpy.float32)
    for rows in (1, 5):
        assert numpy.allclose(model.predict(X[:rows]), stock.predict(X[:rows]), rtol=1e-5, atol=1e-6)
    assert ops.transposed_copies == 2  # one per weight matrix, however many products used it


def test_an_array_that_is_not_a_registered_weight_is_multiplied_as_it_is_now():
    import numpy

    ops = blas.TransposedWeightsOps()
    ops.adopt([_maxout_model(ops)])
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((4, 6), dtype=numpy.float32)
    activation = rng.standard_normal((3, 6), dtype=numpy.float32)
    assert numpy.allclose(ops.gemm(x, activation, trans2=True), x @ activation.T)
    activation *= 2  # an activation buffer reused in place: a cached copy would now be stale
    assert numpy.allclose(ops.gemm(x, activation, trans2=True), x @ activation.T)
    assert ops.transposed_copies == 0
