"""The rollup worker's store: positions, deltas and rollup tables on the primary (``sql/queries/rollups.sql``).

One connection (role nlp_rollup) for the worker's life: it holds the session advisory lock that makes
the worker the active one. Shapes::

    store = PgRollupStore(conn)
    store.try_lock(key) -> bool
    lsn, at = store.wal_position(); upto = store.sequence_position(); snap = store.snapshot()
    store.still_running(snap) -> int
    with store.transaction():               # everything a cycle writes, with the state update
        store.state() -> RollupState
        store.entity_delta(after, upto) -> [MentionRow]; store.document_delta(after, upto) -> [DocumentRow]
        store.write_lists("minute", {(bucket, source, label): TopList}, written)  # only what changed
        store.rebuild_minutes([bucket, ...], upto, k); store.merge_hour(hour, 2 * k)  # in the database
        store.add_document_minutes(rows)
        store.advance(...) -> bool           # False: another worker moved the state first

Errors are psycopg's (``OperationalError`` when the server goes away); the worker reconnects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import psycopg

from functions.runtime import queries
from functions.runtime.topk import Entry, TopList

GroupKey = tuple[datetime, str, str]  # (bucket, source, label); source '' = all sources


class MentionRow(NamedTuple):
    bucket: datetime
    source: str
    label: str
    norm: str
    mentions: int
    text: str
    newest: int  # newest change id among the mentions (0: rows written before change ids)


class DocumentRow(NamedTuple):
    bucket: datetime
    source: str
    model_name: str
    model_version: str
    length_class: int
    bin: int
    documents: int
    entities: int
    text_chars: int
    ner_ms_sum: float


@dataclass(frozen=True)
class RollupState:
    last_change_id: int
    watermark: datetime
    watermark_lsn: str
    history_before: datetime | None
    history_floor: datetime | None
    hours_merged_before: datetime


class PgRollupStore:
    """The named queries of ``rollups.sql`` on one autocommit connection."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self._sql = queries.load("rollups")

    def _one(self, name: str, params: Mapping | None = None):
        return self.conn.execute(self._sql[name], params).fetchone()

    # -- positions --------------------------------------------------------------------------------------

    def try_lock(self, key: int) -> bool:
        return bool(self._one("try_lock", {"key": key})[0])

    def unlock(self, key: int) -> None:
        self._one("unlock", {"key": key})

    def wal_position(self) -> tuple[str, datetime]:
        """(current WAL LSN, clock time) — read before the sequence."""
        lsn, at = self._one("wal_position")
        return lsn, at

    def sequence_position(self) -> int:
        return int(self._one("sequence_position")[0])

    def snapshot(self) -> str:
        return self._one("snapshot")[0]

    def still_running(self, snapshot: str) -> int:
        return int(self._one("still_running", {"snapshot": snapshot})[0])

    def partition_horizon(self) -> datetime | None:
        return self._one("partition_horizon")[0]

    # -- one cycle's transaction --------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def state(self) -> RollupState:
        return RollupState(*self._one("state"))

    def advance(self, *, after: int, upto: int, watermark: datetime, watermark_lsn: str,
                history_before: datetime | None, hours_merged_before: datetime) -> bool:
        cur = self.conn.execute(self._sql["advance"], {
            "after": after, "upto": upto, "watermark": watermark, "watermark_lsn": watermark_lsn,
            "history_before": history_before, "hours_merged_before": hours_merged_before})
        return cur.rowcount == 1

    def sealed_minutes(self, after: int, upto: int, open_from: datetime) -> set[datetime]:
        """The minutes before ``open_from`` that rows with change ids in (after, upto] fall into."""
        params = {"after": after, "upto": upto, "open_from": open_from}
        return {row[0] for row in self.conn.execute(self._sql["sealed_minutes"], params)}

    def entity_delta(self, after: int, upto: int, open_from: datetime) -> list[MentionRow]:
        """Mentions with change ids in (after, upto] and processed_at from ``open_from`` on, per minute,
        source and entity."""
        params = {"start": None, "after": after, "upto": upto, "open_from": open_from}
        return [MentionRow(*row) for row in self.conn.execute(self._sql["entity_rows"], params)]

    def entity_bucket(self, start: datetime, upto: int) -> list[MentionRow]:
        """Every mention of the minute ``start`` up to change id ``upto`` (and those without one)."""
        params = {"start": start, "after": 0, "upto": upto, "open_from": start}
        return [MentionRow(*row) for row in self.conn.execute(self._sql["entity_rows"], params)]

    def document_delta(self, after: int, upto: int, open_from: datetime) -> list[DocumentRow]:
        params = {"start": None, "after": after, "upto": upto, "open_from": open_from}
        return [DocumentRow(*row) for row in self.conn.execute(self._sql["document_rows"], params)]

    def document_bucket(self, start: datetime, upto: int) -> list[DocumentRow]:
        params = {"start": start, "after": 0, "upto": upto, "open_from": start}
        return [DocumentRow(*row) for row in self.conn.execute(self._sql["document_rows"], params)]

    def rebuild_minutes(self, buckets: Sequence[datetime], upto: int, k: int) -> None:
        """Replace the lists and entity totals of these whole minutes with those of the raw rows up to
        change id ``upto`` (and those without one), computed in the database: the same lists
        :func:`functions.runtime.topk.summarize` makes of ``entity_bucket``. Raises psycopg errors."""
        if not buckets:
            return
        params = {"buckets": list(buckets), "first": min(buckets), "last": max(buckets), "upto": upto, "k": k}
        for name in ("forget_minute_lists", "forget_minute_buckets", "rebuild_minute_lists"):
            self.conn.execute(self._sql[name], params)

    def minutes_with_history(self, start: datetime, end: datetime) -> list[datetime]:
        return [row[0] for row in self.conn.execute(self._sql["minutes_with_data"], {"start": start, "end": end})]

    def write_lists(self, resolution: str, lists: Mapping[GroupKey, TopList],
                    written: Mapping[GroupKey, TopList] | None = None) -> None:
        """Make the tables hold ``lists`` for these (bucket, source, label) groups. ``written``: what the
        tables are known to hold for some of them (the lists this worker wrote last); only their rows that
        changed are upserted or deleted. Other groups are replaced whole. Raises psycopg errors."""
        if not lists:
            return
        written = written or {}
        fresh = [key for key in lists if key not in written]
        if fresh:
            self.conn.execute(self._sql["delete_lists"], {"resolution": resolution, **_key_arrays(fresh)})
        upserts: list[tuple[GroupKey, Entry]] = []
        removed: list[tuple[GroupKey, str]] = []
        for key, top in lists.items():
            before = {entry.norm: entry for entry in written[key].entries} if key in written else {}
            upserts += [(key, entry) for entry in top.entries if before.get(entry.norm) != entry]
            kept = {entry.norm for entry in top.entries}
            removed += [(key, norm) for norm in before if norm not in kept]
        if removed:
            self.conn.execute(self._sql["delete_list_rows"], {
                "resolution": resolution, **_key_arrays([key for key, _ in removed]),
                "norms": [norm for _, norm in removed]})
        if upserts:
            self.conn.execute(self._sql["upsert_lists"], {
                "resolution": resolution, **_key_arrays([key for key, _ in upserts]),
                "norms": [e.norm for _, e in upserts], "texts": [e.text for _, e in upserts],
                "mentions": [e.mentions for _, e in upserts], "errors": [e.error for _, e in upserts]})
        totals = [key for key in lists if key not in written or _totals(written[key]) != _totals(lists[key])]
        if totals:
            self.conn.execute(self._sql["upsert_buckets"], {
                "resolution": resolution, **_key_arrays(totals), "mentions": [lists[k].mentions for k in totals],
                "unlisted": [lists[k].unlisted_max for k in totals], "distincts": [lists[k].distinct for k in totals]})

    def replace_document_minutes(self, buckets: Sequence[datetime]) -> None:
        """Forget these minutes' document totals (they are about to be rebuilt from the base tables)."""
        if buckets:
            self.conn.execute(self._sql["delete_document_minutes"], {"buckets": list(buckets)})

    def add_document_minutes(self, rows: Sequence[DocumentRow]) -> None:
        """Add documents to their minute totals (one histogram per bucket, source, model and class)."""
        grouped: dict[tuple, dict] = {}
        for row in rows:
            key = (row.bucket, row.source, row.model_name, row.model_version, row.length_class)
            item = grouped.setdefault(key, {
                "bucket": row.bucket, "source": row.source, "model_name": row.model_name,
                "model_version": row.model_version, "length_class": row.length_class, "documents": 0,
                "entities": 0, "text_chars": 0, "ner_ms_sum": 0.0, "hist": [0] * 64})
            item["documents"] += row.documents
            item["entities"] += int(row.entities or 0)
            item["text_chars"] += int(row.text_chars or 0)
            item["ner_ms_sum"] += float(row.ner_ms_sum or 0.0)
            item["hist"][row.bin] += row.documents
        if grouped:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql["add_document_minute"], list(grouped.values()))

    def minute_lists(self, start: datetime, end: datetime) -> dict[tuple[str, str], list[TopList]]:
        """{(source, label): [TopList per minute bucket, oldest first]} for [start, end): what an hour's
        lists merge (:meth:`merge_hour` merges them in the database; this reads them back)."""
        out: dict[tuple[str, str], list[TopList]] = {}
        current: tuple | None = None
        for (source, label, bucket, mentions, unlisted, distinct,
             norm, text, listed, error) in self.conn.execute(self._sql["minute_lists"], {"start": start, "end": end}):
            if current != (source, label, bucket):
                current = (source, label, bucket)
                out.setdefault((source, label), []).append(TopList([], mentions, unlisted, distinct))
            if norm is not None:
                out[(source, label)][-1].entries.append(Entry(norm, text, listed, error))
        return out

    def merge_hour(self, hour: datetime, k: int) -> None:
        """Replace the hour's lists and entity totals with the merge of its minutes' (the k best by lower
        bound, as :func:`functions.runtime.topk.merge` makes of :meth:`minute_lists`, computed in the
        database), and its document totals with the sum of its minutes'. Raises psycopg errors."""
        params = {"hour": hour, "k": k}
        for name in ("delete_hour", "delete_hour_buckets", "delete_document_hour", "merge_hour_lists",
                     "merge_document_hour"):
            self.conn.execute(self._sql[name], params)

    def expire(self, resolution: str, before: datetime, batch: int) -> int:
        """Delete up to ``batch`` rows of each rollup table older than ``before``; rows deleted."""
        params = {"resolution": resolution, "before": before, "batch": batch}
        return sum(self.conn.execute(self._sql[name], params).rowcount
                   for name in ("expire_lists", "expire_buckets", "expire_document_buckets"))


def _key_arrays(keys: Sequence[GroupKey]) -> dict[str, list]:
    return {"buckets": [k[0] for k in keys], "sources": [k[1] for k in keys], "labels": [k[2] for k in keys]}


def _totals(top: TopList) -> tuple[int, int, int]:
    return top.mentions, top.unlisted_max, top.distinct
