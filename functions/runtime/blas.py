"""Which matrix-multiplication library the model's layers run on: BLIS (spaCy's default) or numpy's BLAS.

spaCy's models run on thinc's ``NumpyOps``, which multiply matrices with the BLIS library bundled in the
``blis`` package. That BLIS (0.7.0) picks its kernels from the CPU's family and model at start-up. A CPU it
does not know gets its ``generic`` reference kernels, plain C loops several times slower than the
vectorised ones. AMD's family 0x19 (Zen 3 and Zen 4: EPYC Milan and Genoa, common cloud nodes) is such a
CPU. On those nodes, ``NumpyOps(use_blis=False)`` moves the layers' matrix products (tok2vec, the NER's
input layer) to numpy's own BLAS (OpenBLAS in numpy's wheels, which recognises them): a third less CPU per
comment or more with spaCy 3.8.7, identical entities. The parser's per-step scoring stays on BLIS (thinc's
``CBlas`` is BLIS's whatever the ops; a few per cent of the CPU). ``docs/performance.md``, "The BLAS under
the model".

:func:`choose` makes the choice (setting ``SPACY_BLAS``: ``auto``, ``blis`` or ``numpy``) and :func:`use`
applies it to the models built afterwards in this thread, so call it before ``spacy.load``; then
:func:`adopt` the loaded pipeline (:class:`TransposedWeightsOps`).
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass

from thinc.api import NumpyOps

log = logging.getLogger(__name__)

CHOICES = ("auto", "blis", "numpy")
# BLIS's name for the portable C kernels it falls back to on a CPU it does not recognise.
GENERIC = "generic"


def blis_sub_configuration() -> str | None:
    """The kernel set BLIS selected for this CPU (``haswell``, ``zen2``, ``skx``, ``generic``...), read
    from the library itself (``bli_arch_query_id``/``bli_arch_string``); None when the ``blis`` build at
    hand does not export them."""
    try:
        import blis.cy

        lib = ctypes.CDLL(blis.cy.__file__)
        lib.bli_arch_string.restype = ctypes.c_char_p
        name = lib.bli_arch_string(lib.bli_arch_query_id())
    except (ImportError, OSError, AttributeError):
        return None
    return name.decode("ascii", "replace") if name else None


def choose(setting: str, sub_configuration: str | None) -> str:
    """``"blis"`` or ``"numpy"`` for the setting ``SPACY_BLAS``. ``auto`` keeps spaCy's BLIS unless BLIS
    fell back to its ``generic`` kernels. Raises ValueError for any other setting."""
    if setting not in CHOICES:
        raise ValueError(f"SPACY_BLAS must be one of {', '.join(CHOICES)}, not {setting!r}")
    if setting != "auto":
        return setting
    return "numpy" if sub_configuration == GENERIC else "blis"


@dataclass(frozen=True)
class BlasChoice:
    """What :func:`use` applied: ``library`` is ``"blis"`` or ``"numpy"``; ``blis_kernels`` the kernel
    set BLIS selected (None when unknown); ``numpy_blas`` numpy's BLAS and the kernels it selected,
    e.g. ``"openblas SkylakeX"`` (None when unknown)."""

    library: str
    blis_kernels: str | None
    numpy_blas: str | None


class TransposedWeightsOps(NumpyOps):
    """thinc's ``NumpyOps(use_blis=False)``, except that ``gemm(X, W, trans2=True)`` on a weight matrix of
    the adopted models multiplies by a C-contiguous copy of ``W.T`` made on first use.

    Why: every layer computes ``X @ W.T`` with ``W`` stored (outputs, inputs). numpy hands OpenBLAS a
    transposed operand, which OpenBLAS repacks with strided reads on every call (``sgemm_incopy`` was 13 %
    of the model process's CPU at 16 clients, against 17 % in the multiplication kernel itself). With the
    copy the same product reads contiguous memory: 2-7 % less CPU per short comment at batches of 1 to
    30 (raw ``nlp.pipe``, both pipelines in one process, 6 alternating rounds), identical entities.

    Only arrays inside a parameter registered by :meth:`adopt` are copied (a few MB for a small model),
    so an activation passed as ``y`` never is. The copies assume the weights do not change afterwards:
    this process never trains."""

    def __init__(self, **kwargs):
        super().__init__(use_blis=False, **kwargs)
        self._weights: list[tuple[int, int]] = []  # (first byte, end) of every registered parameter
        self._transposed: dict[tuple, tuple] = {}  # (address, shape, strides) -> (the view, its copy)

    def adopt(self, models) -> int:
        """Register the parameters of ``models`` (thinc models, walked) whose products may use
        transposed copies; returns how many parameters were registered."""
        count = 0
        for model in models:
            for node in model.walk():
                for name in node.param_names:
                    if node.has_param(name):
                        param = node.get_param(name)
                        start = param.__array_interface__["data"][0]
                        self._weights.append((start, start + param.nbytes))
                        count += 1
        return count

    @property
    def transposed_copies(self) -> int:
        """How many weight matrices have a transposed copy."""
        return len(self._transposed)

    def gemm(self, x, y, out=None, trans1=False, trans2=False):
        if trans2 and not trans1 and getattr(y, "ndim", 0) == 2:
            transposed = self._transposed_weight(y)
            if transposed is not None:
                return super().gemm(x, transposed, out=out)
        return super().gemm(x, y, out=out, trans1=trans1, trans2=trans2)

    def _transposed_weight(self, y):
        key = (y.__array_interface__["data"][0], y.shape, y.strides)
        known = self._transposed.get(key)
        if known is not None:
            return known[1]
        if not any(start <= key[0] and key[0] + y.nbytes <= end for start, end in self._weights):
            return None
        # The view is kept with its copy, so its memory (a parameter's) cannot be reused under this key.
        copy = y.T.copy(order="C")
        self._transposed[key] = (y, copy)
        return copy


def adopt(nlp) -> int:
    """Let the current thread's ops (:func:`use`) make transposed copies of ``nlp``'s weights; returns how
    many parameters were registered (0 when the ops are not :class:`TransposedWeightsOps`)."""
    from thinc.api import get_current_ops

    ops = get_current_ops()
    if not isinstance(ops, TransposedWeightsOps):
        return 0
    # getattr: the unit tests' stand-in pipelines have no components.
    components = getattr(nlp, "pipeline", ())
    return ops.adopt(component.model for _, component in components if hasattr(component, "model"))


def use(setting: str) -> BlasChoice:
    """Apply ``SPACY_BLAS`` to this thread's thinc ops (every model built afterwards in this thread uses
    them) and keep numpy's BLAS on one thread: a pod scales by its count, and a BLAS thread pool on a
    pod's CPU quota only spins. Call it on the process's main thread: numpy's OpenBLAS ignored a limit
    set from another thread here. Raises ValueError for an unknown setting."""
    import threadpoolctl
    from thinc.api import set_current_ops

    kernels = blis_sub_configuration()
    library = choose(setting, kernels)
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    set_current_ops(NumpyOps(use_blis=True) if library == "blis" else TransposedWeightsOps())
    numpy_blas = next((f"{info.get('internal_api')} {info.get('architecture')}"
                       for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"), None)
    choice = BlasChoice(library, kernels, numpy_blas)
    log.info("model matrix library chosen", extra={
        "event": "model.blas", "blas.library": library, "blas.setting": setting,
        "blas.blis_kernels": kernels, "blas.numpy_blas": numpy_blas})
    return choice
