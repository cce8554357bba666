"""Top-K lists with error bounds: the summaries the rollups keep per time bucket, and how two lists merge.

The idea is Elasticsearch's terms aggregation (each shard returns its top terms, the merge reports
``doc_count_error_upper_bound``) with time buckets for shards: a bucket keeps its K most mentioned keys,
the exact total, and ``unlisted_max``, the largest count of any key it did not keep. A merge of buckets
counts a key's listed mentions (a lower bound) and bounds what it may have had where it was not listed.

Shapes::

    top = summarize({"berlin": (12, "Berlin"), "paris": (3, "Paris")}, k=1)
    top.entries        -> [Entry(norm="berlin", text="Berlin", mentions=12, error=0)]
    top.unlisted_max   -> 3
    merged = merge([top, other], k=64)   # one list for a longer bucket (an hour from its minutes)

A key's true mentions in a list lie in ``[entry.mentions, entry.mentions + entry.error]``; a key not in
the list has at most ``unlisted_max``. Counts are ints; keys are the entity norms of one label.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One listed key: ``mentions`` a lower bound, ``mentions + error`` an upper bound; ``text`` the
    latest spelling seen."""

    norm: str
    text: str
    mentions: int
    error: int = 0


@dataclass
class TopList:
    """The summary of one bucket (or of a merge of buckets) for one label and source."""

    entries: list[Entry] = field(default_factory=list)
    mentions: int = 0  # exact total mentions
    unlisted_max: int = 0  # no key outside ``entries`` has more mentions than this
    distinct: int = 0  # distinct keys: exact for a summarized bucket, a lower bound after a merge


def summarize(counts: Mapping[str, Sequence], k: int) -> TopList:
    """The top ``k`` of exact ``counts`` (norm -> (mentions, latest text, ...)), ties broken by norm so the
    list is deterministic. Raises ValueError for k < 1."""
    if k < 1:
        raise ValueError("k must be at least 1")
    ranked = heapq.nsmallest(k + 1, counts.items(), key=lambda item: (-item[1][0], item[0]))
    kept, rest = ranked[:k], ranked[k:]
    return TopList(
        entries=[Entry(norm, value[1], value[0]) for norm, value in kept],
        mentions=sum(value[0] for value in counts.values()),
        unlisted_max=rest[0][1][0] if rest else 0,
        distinct=len(counts),
    )


def merge(lists: Sequence[TopList], k: int, *, newest_last: bool = True) -> TopList:
    """One list for the union of the buckets behind ``lists`` (given oldest first when ``newest_last``,
    so the latest spelling wins), keeping the top ``k`` by lower bound.

    For a key: lower bound = its listed mentions summed; error = its listed errors plus the
    ``unlisted_max`` of every list it is missing from. The merged ``unlisted_max`` bounds any key not
    kept: one missing from every list (the sum of all ``unlisted_max``) or one dropped here (its upper
    bound). Raises ValueError for k < 1."""
    if k < 1:
        raise ValueError("k must be at least 1")
    total_unlisted = sum(top.unlisted_max for top in lists)
    lower: dict[str, int] = {}
    listed_error: dict[str, int] = {}
    covered_unlisted: dict[str, int] = {}  # sum of unlisted_max of the lists the key IS in
    text: dict[str, str] = {}
    for top in lists:
        for entry in top.entries:
            lower[entry.norm] = lower.get(entry.norm, 0) + entry.mentions
            listed_error[entry.norm] = listed_error.get(entry.norm, 0) + entry.error
            covered_unlisted[entry.norm] = covered_unlisted.get(entry.norm, 0) + top.unlisted_max
            text[entry.norm] = entry.text if newest_last or entry.norm not in text else text[entry.norm]
    entries = [Entry(norm, text[norm], mentions,
                     listed_error[norm] + total_unlisted - covered_unlisted[norm])
               for norm, mentions in lower.items()]
    entries.sort(key=lambda entry: (-entry.mentions, entry.norm))
    kept, dropped = entries[:k], entries[k:]
    unlisted_max = max([total_unlisted, *(entry.mentions + entry.error for entry in dropped)])
    return TopList(entries=kept, mentions=sum(top.mentions for top in lists), unlisted_max=unlisted_max,
                   distinct=max([len(lower), *(top.distinct for top in lists)], default=0))


def add_counts(counts: dict[str, list], rows: Iterable[tuple[str, int, str, int]]) -> None:
    """Add ``rows`` of ``(norm, mentions, text, newest change id)`` to exact ``counts`` (norm -> [mentions,
    text, newest change id]); the text of the newest change id wins."""
    for norm, mentions, row_text, change_id in rows:
        current = counts.get(norm)
        if current is None:
            counts[norm] = [mentions, row_text, change_id]
        else:
            current[0] += mentions
            if change_id >= current[2]:
                current[1], current[2] = row_text, change_id
