"""The seam between a service and the model: what any entity recogniser offers.

Two implementations: :class:`functions.runtime.nlp.NerEngine` runs the spaCy pipeline on a worker thread
of the calling process (the model process itself, tests, benchmarks); :class:`functions.runtime.
model_process.ModelProcess` runs that engine in a child process and forwards the same calls over pipes
(what the functions use). Services depend on :class:`Recognizer` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from functions.runtime.shapes import Entity


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model: ``name`` is spaCy's ``<lang>_<name>`` (e.g. ``en_core_web_sm``), ``version`` its
    package version, ``pipeline`` the components that run. Stored with every document and logged."""

    name: str
    version: str
    pipeline: tuple[str, ...]

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


@runtime_checkable
class Recognizer(Protocol):
    """Named-entity recognition for texts, safe to call from many threads.

    ``submit`` and ``recognize`` raise Overloaded (429) when more documents wait than the recogniser
    accepts and Unavailable (503: ``shutting_down`` after ``close``, ``model_unavailable`` while a model
    process restarts). A text the tokenizer guard refuses fails its own request with PayloadTooLarge (413
    ``text_too_long``). ``request_id`` is carried into the recogniser's log lines for that request.
    """

    info: ModelInfo

    def submit(self, texts: Sequence[str], request_id: str | None = None) -> Future[list[list[Entity]]]:
        """Queue ``texts``; the future resolves to one entity list per text, in order."""
        ...

    def recognize(self, texts: Sequence[str], *, request_id: str | None = None,
                  timeout: float | None = None) -> list[list[Entity]]:
        """Blocking :meth:`submit`; raises TimeoutError after ``timeout`` seconds (the texts not yet
        started are then skipped)."""
        ...

    def ready(self) -> bool:
        """True while the model is loaded and accepting work."""
        ...

    def close(self, timeout: float = 30.0) -> None:
        """Finish what was queued (up to ``timeout`` s), then stop; idempotent."""
        ...
