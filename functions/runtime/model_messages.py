"""The messages between a function's process and its model process (``functions.runtime.model_process``).

Each message is a named tuple whose last field ``v`` is the protocol version; both sides refuse a
version they do not speak (an image always ships both sides, so a mismatch means a broken install).
They travel pickled over ``multiprocessing.connection`` pipes. Entities travel as plain tuples
(``(text, label, start_char, end_char)``): the cheapest shape to pickle.

Parent -> child: :class:`Job`, :class:`Cancel`, :class:`Stop`.
Child -> parent: :class:`Ready` or :class:`LoadFailed` once, then :class:`Answers` (the :class:`Done` of
every job answered at once: one message per model chunk, not one per job; the last one of a model batch
also carries the batch's documents and time, for the ``/metrics`` the parent serves).
"""

from __future__ import annotations

from typing import NamedTuple

from functions.runtime import errors
from functions.runtime.errors import FunctionError, Unavailable

VERSION = 4


class Job(NamedTuple):
    """Recognise ``texts`` for request ``request_id`` (None outside a request); answered by one Done."""

    job_id: int
    request_id: str | None
    texts: list[str]
    v: int = VERSION


class Cancel(NamedTuple):
    """The caller of ``job_id`` timed out: skip its texts not yet started."""

    job_id: int
    v: int = VERSION


class Stop(NamedTuple):
    """Finish the queued jobs, then exit."""

    v: int = VERSION


class Ready(NamedTuple):
    """The model is loaded (``load_ms`` milliseconds); its layers multiply matrices with ``blas``
    (``"blis"`` or ``"numpy"``, functions/runtime/blas.py) and BLIS selected ``blis_kernels``."""

    name: str
    version: str
    pipeline: tuple[str, ...]
    load_ms: float
    blas: str = "blis"
    blis_kernels: str = ""
    v: int = VERSION


class LoadFailed(NamedTuple):
    """The model could not be loaded: the exception's type name and message."""

    error_type: str
    message: str
    v: int = VERSION


class ErrorInfo(NamedTuple):
    """A FunctionError as data: class name, message, code, HTTP status, headers."""

    name: str
    message: str
    code: str
    status: int
    headers: dict[str, str]

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        """``exc`` as data; anything that is not a FunctionError becomes a plain 500 (its text stays in
        the child's log line)."""
        if isinstance(exc, FunctionError):
            return cls(type(exc).__name__, exc.message, exc.code, exc.status, exc.headers)
        return cls("FunctionError", "entity recognition failed", "internal_error", 500, {})

    def rebuild(self) -> FunctionError:
        """The FunctionError again (same class, status, code, message, headers)."""
        cls = getattr(errors, self.name, None)
        if not (isinstance(cls, type) and issubclass(cls, FunctionError)):
            cls = FunctionError
        exc = cls.__new__(cls)
        FunctionError.__init__(exc, self.message, code=self.code, status=self.status, headers=self.headers)
        if isinstance(exc, Unavailable):
            exc.retry_after = int(self.headers.get("Retry-After", 2))
        return exc


class Done(NamedTuple):
    """The answer to ``job_id``: one list of entity tuples per text, or the error of the whole job."""

    job_id: int
    entities: list[list[tuple]] | None
    error: ErrorInfo | None
    v: int = VERSION


class Answers(NamedTuple):
    """The jobs answered together (after one model chunk, or a cancellation): one Done each. ``batch``:
    (documents, wall seconds) of the model batch this message ends, None when it ends none. One message
    per batch instead of two: each write wakes the parent's reader."""

    done: tuple[Done, ...]
    batch: tuple[int, float] | None = None
    v: int = VERSION
