"""Top-K lists with error bounds (functions/runtime/topk.py): what a bucket keeps, how buckets merge, and
that the bounds always contain the true counts."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.runtime import topk


def counts(**mentions: int) -> dict[str, list]:
    return {norm: [n, norm.title(), 1] for norm, n in mentions.items()}


def test_a_bucket_keeps_its_k_most_mentioned_keys_exactly_and_bounds_the_rest():
    top = topk.summarize(counts(berlin=9, paris=7, rome=7, oslo=2), k=2)
    assert [(e.norm, e.mentions, e.error) for e in top.entries] == [("berlin", 9, 0), ("paris", 7, 0)]
    assert (top.mentions, top.unlisted_max, top.distinct) == (25, 7, 4)  # rome (7) is the largest left out


def test_a_bucket_with_at_most_k_keys_lists_them_all_with_no_unlisted_bound():
    top = topk.summarize(counts(berlin=3), k=5)
    assert [e.norm for e in top.entries] == ["berlin"] and top.unlisted_max == 0


def test_merging_adds_listed_mentions_and_charges_the_unlisted_bound_where_a_key_is_missing():
    first = topk.summarize(counts(berlin=9, paris=1, rome=1), k=1)  # paris/rome unlisted, max 1
    second = topk.summarize(counts(paris=5, berlin=2, oslo=1), k=2)  # oslo unlisted, max 1
    merged = topk.merge([first, second], k=2)
    assert [(e.norm, e.mentions, e.error) for e in merged.entries] == [("berlin", 11, 0), ("paris", 5, 1)]
    assert merged.mentions == 19 and merged.unlisted_max >= 2  # rome/oslo: at most 1 in each bucket


def test_the_newest_bucket_gives_the_spelling():
    old = topk.TopList([topk.Entry("acme", "ACME", 3)], 3)
    new = topk.TopList([topk.Entry("acme", "Acme", 1)], 1)
    assert topk.merge([old, new], k=1).entries[0].text == "Acme"


def test_counts_keep_the_spelling_of_the_newest_change_id():
    exact: dict[str, list] = {}
    topk.add_counts(exact, [("acme", 2, "Acme", 10), ("acme", 1, "ACME", 4)])
    assert exact["acme"] == [3, "Acme", 10]


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        topk.summarize({}, k=0)
    with pytest.raises(ValueError):
        topk.merge([], k=0)


buckets_strategy = st.lists(st.dictionaries(st.sampled_from("abcdefghij"), st.integers(1, 50), min_size=1),
                            min_size=1, max_size=8)


@given(buckets_strategy, st.integers(1, 4), st.integers(1, 6))
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_merged_bounds_always_contain_the_true_counts(buckets, k_bucket, k_merged):
    truth = Counter()
    lists = []
    for bucket in buckets:
        truth.update(bucket)
        lists.append(topk.summarize({norm: [n, norm, 1] for norm, n in bucket.items()}, k_bucket))
    merged = topk.merge(lists, k_merged)
    listed = {e.norm for e in merged.entries}
    for entry in merged.entries:
        assert entry.mentions <= truth[entry.norm] <= entry.mentions + entry.error
    for norm, true in truth.items():
        if norm not in listed:
            assert true <= merged.unlisted_max
    assert merged.mentions == sum(truth.values())
