"""Fixtures of the fault suite (``make faults`` = ``pytest -m faults tests/faults``).

Every test here runs against the session's private PostgreSQL primary + replica (tests/fixtures/pg.py)
and real function processes over HTTP; the tests that stop, kill or lock the database restore it.
"""

from __future__ import annotations

import contextlib

import psycopg
import pytest

from tests.faults import support


@pytest.fixture
def healthy(pg_running):
    """The session cluster with both servers up and replay running, before AND after the test (a
    failing fault test must not leave the primary down for the next one)."""
    yield pg_running
    status = pg_running.status()
    if not all(status[s]["running"] for s in ("primary", "replica")):
        pg_running.start()
    with contextlib.suppress(psycopg.Error):
        pg_running.resume_replay()


def pytest_terminal_summary(terminalreporter):
    if not support.COLLECTED:
        return
    terminalreporter.section("fault suite figures")
    for entry in support.COLLECTED:
        figures = {k: v for k, v in entry.items() if k != "test"}
        terminalreporter.write_line(f"{entry['test']}: " + " ".join(f"{k}={v}" for k, v in figures.items()))
    terminalreporter.write_line(f"(JSON lines with \"run\": \"{support.RUN_ID}\" in {support.report_path()})")
