"""Named types for what crosses module boundaries: an entity, a stored document, a write's outcome and
the entity-stats answer (JSON-ready TypedDicts: the handler returns them as the response body)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypedDict

# What makes a repeated document id a duplicate (equal) or a conflict (different):
# (text_sha256 hex, model name, model version).
Fingerprint = tuple[str, str, str]


class Entity(NamedTuple):
    """One entity exactly as spaCy gives it (character offsets into the text)."""

    text: str
    label: str
    start_char: int
    end_char: int


@dataclass(frozen=True)
class DocumentRecord:
    """A document as it is stored on the primary (``nlp.documents`` + its ``nlp.entities``).

    ``document_id`` is the idempotency key (column ``nlp.documents.request_id``, docs/data-model.md): a
    single comment's document id is its request id; batch documents have their own."""

    document_id: str
    source: str | None
    model_name: str
    model_version: str
    text: str
    text_sha256: str  # hex
    entities: Sequence[Entity]
    metadata: dict | None = None
    ner_ms: float | None = None

    @property
    def fingerprint(self) -> Fingerprint:
        """What makes a repeated document id a duplicate (equal) or a conflict (different)."""
        return (self.text_sha256, self.model_name, self.model_version)


@dataclass
class WriteResult:
    """The outcome of one request's write: the commit position, the document ids that were already stored."""

    commit_lsn: str | None
    duplicates: set[str] = field(default_factory=set)
    db_ms: float = 0.0


class TopEntity(TypedDict):
    text: str
    label: str
    count: int  # mentions counted (a lower bound)
    count_error: int  # it may have had up to this many more (0: exact)


class LabelCount(TypedDict):
    label: str
    count: int


class Freshness(TypedDict):
    lag_seconds: float | None
    lag_bytes: int
    replay_lsn: str | None
    primary_lsn: str | None
    checked_at: str  # ISO 8601, UTC, milliseconds, Z
    watermark: str  # every comment committed before it is counted (ISO 8601)
    watermark_lsn: str  # every commit at or before this WAL position is counted
    rollup_lag_seconds: float  # checked_at - watermark


class StatsAnswer(TypedDict, total=False):
    """entity-stats' answer (docs/api.md)."""

    top_entities: list[TopEntity]
    label_mix: list[LabelCount]
    served_by: str  # "replica" | "primary"
    freshness: Freshness
    window: str
    window_seconds: int
    window_start: str  # the buckets the answer covers (ISO 8601): at least the window asked for
    window_end: str
    approximate: bool  # some count has a count_error > 0
    label: str | None
    source: str | None
    limit: int
    consistency: str
    min_lsn: str | None
