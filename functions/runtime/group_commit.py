"""Group commit: requests queue their work, one committer thread hands everything waiting to a single
commit, and each request's future resolves when its part is done.

Why: one transaction (and one WAL flush) for the documents of many concurrent requests costs about what
one request's transaction costs, so throughput grows with concurrency while each request still gets its
own answer (PostgreSQL's own ``commit_delay`` does the same for WAL flushes).

Shapes::

    committer = GroupCommitter(commit, name="db-committer", max_items=2048)
    committer.start()
    future = committer.submit(work, size=3)     # Future resolved by commit()
    committer.close()                           # commits what is queued, then stops

``commit(group)`` gets a list of :class:`Pending` (``work`` and its ``future``) and must resolve every
future. ``delay_s`` (PostgreSQL's ``commit_delay`` with ``commit_siblings`` = 1, at the level of the
group): when the last group held more than one piece of work, the committer sleeps that long after the
first submission before taking the group, so the submitters that were woken together (the requests of
one model batch) commit together instead of in two or three groups. A lone submitter never waits.

When ``commit`` returns an exception (the group failed for want of a server), everything queued meanwhile
fails at once with :meth:`Failure.again` of that exception instead of waiting as long again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

W = TypeVar("W")


class Pending(Generic[W]):
    """One submitted piece of work and the future its submitter waits on."""

    __slots__ = ("work", "size", "future")

    def __init__(self, work: W, size: int):
        self.work = work
        self.size = size
        self.future: Future = Future()


class GroupCommitter(Generic[W]):
    """The queue and the committer thread. ``commit(group)`` returns None, or the exception to give the
    work that queued while the group waited (``again(exc)`` makes a fresh one per piece of work)."""

    def __init__(self, commit: Callable[[list[Pending[W]]], BaseException | None], *, name: str,
                 max_items: int, again: Callable[[BaseException], BaseException] = lambda exc: exc,
                 delay_s: float = 0.0):
        self._commit = commit
        self._again = again
        self.max_items = max_items
        self.delay_s = delay_s
        self._siblings = False  # the last group held more than one piece of work
        self._queue: queue.SimpleQueue[Pending[W] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.closed = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, work: W, size: int = 1) -> Future:
        """Queue ``work`` (``size`` items of the group's ``max_items``); raises RuntimeError after close."""
        if self.closed:
            raise RuntimeError("the committer is closed")
        pending = Pending(work, size)
        self._queue.put(pending)
        return pending.future

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _take_group(self, first: Pending[W]) -> tuple[list[Pending[W]], bool]:
        group, items = [first], first.size
        while items < self.max_items:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return group, True
            group.append(more)
            items += more.size
        return group, False

    def _fail_queued(self, error: BaseException) -> bool:
        """Fail everything queued now with ``error``; True when the close marker was among it."""
        while True:
            try:
                queued = self._queue.get_nowait()
            except queue.Empty:
                return False
            if queued is None:
                return True
            queued.future.set_exception(self._again(error))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if self._siblings and self.delay_s:
                time.sleep(self.delay_s)
            group, stop = self._take_group(first)
            self._siblings = len(group) > 1
            error = self._commit(group)
            if error is not None and not stop:
                stop = self._fail_queued(error)
            if stop:
                return
