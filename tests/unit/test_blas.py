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
