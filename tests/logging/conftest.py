"""Fixtures for the logging tests: a JSON-configured root logger writing to a buffer, restored after."""

from __future__ import annotations

import io
import json
import logging

import pytest

from functions.runtime import logs
from tests.logging.fieldrefs import _restore_logging_state, _save_logging_state


class Captured:
    """The buffer a configured handler writes to, read back as raw lines or parsed objects."""

    def __init__(self):
        self.buffer = io.StringIO()

    def raw_lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.raw_lines()]

    def last(self) -> dict:
        return self.lines()[-1]


@pytest.fixture
def restore_logging():
    """Put back the root logger's handlers/level, quiet loggers and static fields after the test."""
    saved = _save_logging_state()
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    yield
    _restore_logging_state(saved)
    for name, quiet_level in quiet.items():
        logging.getLogger(name).setLevel(quiet_level)


@pytest.fixture
def captured(restore_logging) -> Captured:
    capture = Captured()
    logs.configure("ner-processor", "INFO", stream=capture.buffer)
    return capture
