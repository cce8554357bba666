"""GroupCommitter's commit delay (functions/runtime/group_commit.py) with a recording commit function:
requests woken together commit together once groups have formed, and a lone request never waits."""

from __future__ import annotations

import contextlib
import threading
import time

from functions.runtime.group_commit import GroupCommitter


class _Recorder:
    """The commit function: records each group's work, optionally held at a gate, resolves every future."""

    def __init__(self):
        self.groups: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, group):
        self.entered.set()
        self.gate.wait(5)
        self.groups.append([pending.work for pending in group])
        for pending in group:
            pending.future.set_result(None)
        return None


@contextlib.contextmanager
def _running(recorder: _Recorder, delay_s: float):
    committer = GroupCommitter(recorder, name="test-committer", max_items=100, delay_s=delay_s)
    committer.start()
    try:
        yield committer
    finally:
        committer.close()


def _group_behind_a_commit(recorder: _Recorder, committer: GroupCommitter, first: str, queued: tuple) -> None:
    """``first`` commits alone while ``queued`` arrive behind it, then commit as one group."""
    recorder.gate.clear()
    futures = [committer.submit(first)]
    recorder.entered.wait(5)
    futures += [committer.submit(work) for work in queued]
    recorder.gate.set()
    for future in futures:
        future.result(5)


def test_after_a_shared_group_requests_that_arrive_within_the_delay_commit_together():
    recorder = _Recorder()
    with _running(recorder, delay_s=0.3) as committer:
        # A group of three forms behind a commit in progress: concurrency was seen.
        _group_behind_a_commit(recorder, committer, "a", ("b", "c", "d"))
        # The next requests trickle in 50 ms apart, as handler threads woken by one model batch do.
        later = []
        for work in ("e", "f", "g"):
            later.append(committer.submit(work))
            time.sleep(0.05)
        for future in later:
            future.result(5)
        assert recorder.groups == [["a"], ["b", "c", "d"], ["e", "f", "g"]]


def test_without_a_delay_the_committer_takes_only_what_has_arrived():
    recorder = _Recorder()
    with _running(recorder, delay_s=0.0) as committer:
        _group_behind_a_commit(recorder, committer, "a", ("b", "c"))
        later = []
        for work in ("e", "f"):
            later.append(committer.submit(work))
            later[-1].result(5)
        assert recorder.groups == [["a"], ["b", "c"], ["e"], ["f"]]


def test_a_lone_request_is_committed_without_waiting_for_siblings():
    recorder = _Recorder()
    with _running(recorder, delay_s=2.0) as committer:
        for work in ("a", "b"):
            started = time.perf_counter()
            committer.submit(work).result(5)
            assert time.perf_counter() - started < 1.0
        assert recorder.groups == [["a"], ["b"]]
