"""ModelProcess with a stand-in model process (tests/unit/stand_in_model.py, no spaCy): answers per
request, 429 before the child is asked, 413 from the child kept per request, a crashed child answered
with 503 and replaced, timeouts, start-up failures and shutdown. With the real model:
tests/integration/test_model_process_model.py."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest

from functions.runtime.errors import Overloaded, PayloadTooLarge, Unavailable
from functions.runtime.model_process import ModelLoadError, ModelProcess
from functions.runtime.settings import Settings
from functions.runtime.shapes import Entity

STAND_IN = [sys.executable, "-m", "tests.unit.stand_in_model"]


def _start(**settings) -> ModelProcess:
    return ModelProcess(Settings(**settings), command=STAND_IN, start_timeout=30).start()


@pytest.fixture
def model():
    process = _start(max_pending_docs=8, retry_after_s=3)
    yield process
    process.close(timeout=10)


def _wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_childs_model_info_and_entities_come_back_per_request():
    model = _start()  # the default MAX_PENDING_DOCS: room for every thread's request
    assert (model.info.name, model.info.version, model.info.pipeline) == ("xx_stand_in", "1.2.3", ("ner",))
    assert model.ready() and model.pid != os.getpid()
    results: dict[int, list] = {}

    def ask(i: int) -> None:
        results[i] = model.recognize([f"Acme {i} sued Globex", "no names here"], timeout=10)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(16):
        first = Entity("Acme", "ORG", 0, 4)
        assert results[i] == [[first, Entity("Globex", "ORG", 11 + len(str(i)), 17 + len(str(i)))], []]
        assert isinstance(results[i][0][0], Entity)
    model.close()


def test_every_model_batch_reaches_the_parents_metrics_with_the_answers_that_end_it(model):
    from functions.runtime import metrics

    def observed() -> tuple[float, float]:
        values = {sample.name: sample.value for family in metrics.REGISTRY.collect()
                  if family.name == "nlp_model_batch_documents" for sample in family.samples}
        return values["nlp_model_batch_documents_count"], values["nlp_model_batch_documents_sum"]

    batches, documents = observed()
    for i in range(5):
        model.recognize([f"Acme {i}", "no names", "Globex"], timeout=10)
        # The observation travels in the message that answers the batch, so it is never held back until the
        # next batch (the reader observes right after resolving: allow it that moment).
        assert _wait_for(lambda n=i: observed() == (batches + n + 1, documents + 3 * (n + 1)), timeout=2.0)


def test_work_beyond_max_pending_is_refused_with_429_before_the_child_sees_it(model):
    busy = model.submit(["sleep:0.5"])
    queued = model.submit(["a"] * 7)
    with pytest.raises(Overloaded) as info:
        model.submit(["b", "c"])
    assert info.value.status == 429 and "Retry-After" in info.value.headers
    assert busy.result(10) == [[]] and queued.result(10) == [[]] * 7
    assert model.recognize(["b", "c"], timeout=10) == [[], []]  # capacity is back once answered


def test_a_text_the_child_refuses_fails_its_own_request_with_its_status_and_code(model):
    other = model.submit(["Fine text"])
    with pytest.raises(PayloadTooLarge) as info:
        model.recognize(["refuse"], timeout=10)
    assert info.value.status == 413 and info.value.code == "text_too_long"
    assert other.result(10) == [[Entity("Fine", "ORG", 0, 4)]]


def test_the_model_process_logs_a_refused_text_under_the_request_id_it_was_sent_with(capfd):
    model = _start()  # started inside the test: the child writes to the captured stdout
    try:
        with pytest.raises(PayloadTooLarge):
            model.recognize(["refuse"], request_id="req-joined-42", timeout=10)
        lines: list[dict] = []

        def refused_line_seen() -> bool:
            out = capfd.readouterr().out
            lines.extend(json.loads(line) for line in out.splitlines() if line.startswith("{"))
            return any(line.get("event") == "ner.text_refused" for line in lines)

        assert _wait_for(refused_line_seen, timeout=5)
    finally:
        model.close(timeout=10)
    [refused] = [line for line in lines if line.get("event") == "ner.text_refused"]
    assert refused["request_id"] == "req-joined-42" and refused["error.code"] == "text_too_long"


_OTHER_VERSION_CHILD = (
    "import sys, time\n"
    "from multiprocessing.connection import Connection\n"
    "from functions.runtime.model_messages import Ready\n"
    "Connection(int(sys.argv[2]), readable=False).send(Ready('xx_other', '9', ('ner',), 1.0, v=99))\n"
    "time.sleep(30)\n")


def test_a_model_process_that_speaks_another_message_version_fails_start():
    model = ModelProcess(Settings(), command=[sys.executable, "-c", _OTHER_VERSION_CHILD], start_timeout=30)
    with pytest.raises(ModelLoadError, match="another message version"):
        model.start()


def test_a_crashed_child_answers_its_requests_with_503_and_is_replaced(model):
    first_pid = model.pid
    blocker = model.submit(["sleep:0.6"])  # holds the model while the next two queue up as one batch
    time.sleep(0.2)  # the worker has taken the blocker alone
    crash, queued = model.submit(["crash"]), model.submit(["Queued"])
    assert blocker.result(10) == [[]]
    for future in (crash, queued):  # the one that killed it and the one queued behind it: never left hanging
        with pytest.raises(Unavailable) as info:
            future.result(10)
        assert info.value.status == 503 and info.value.code == "model_unavailable"
        assert info.value.headers["Retry-After"] == "3"
    assert _wait_for(lambda: model.ready() and model.pid != first_pid), "no new model process"
    assert model.restarts == 1
    assert model.recognize(["Back again"], timeout=10) == [[Entity("Back", "ORG", 0, 4)]]


def test_submit_while_the_child_restarts_gets_503_model_unavailable(model):
    with pytest.raises(Unavailable):
        model.recognize(["crash"], timeout=10)
    # Until the new child has loaded, nothing is queued: 503 at once (or the new child answers).
    try:
        assert model.recognize(["X"], timeout=10) == [[Entity("X", "ORG", 0, 1)]]
    except Unavailable as exc:
        assert exc.code == "model_unavailable"


def test_a_timed_out_request_raises_timeout_and_its_capacity_comes_back(model):
    model.submit(["sleep:0.6"])
    with pytest.raises(TimeoutError):
        model.recognize(["late"] * 7, timeout=0.1)
    # The child skips the cancelled job's texts; once it says so, all 8 places are free again.
    assert _wait_for(lambda: model._pending == 0)
    assert model.recognize(["z"] * 8, timeout=10) == [[]] * 8


def test_the_child_ignores_sigterm_the_parent_decides_when_the_model_stops(model):
    os.kill(model.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert model.ready() and model.recognize(["Still here"], timeout=10) == [[Entity("Still", "ORG", 0, 5)]]


def test_close_finishes_queued_work_then_refuses_with_503_shutting_down():
    process = _start()
    pending = process.submit(["sleep:0.3", "Last one"])
    child = process._proc
    process.close(timeout=10)
    assert pending.result(0) == [[], [Entity("Last", "ORG", 0, 4)]]
    assert child.returncode == 0 and not process.ready()
    with pytest.raises(Unavailable) as info:
        process.submit(["x"])
    assert info.value.code == "shutting_down"


def test_a_model_that_cannot_load_fails_start_with_the_childs_error(monkeypatch):
    monkeypatch.setenv("STAND_IN_LOAD_ERROR", "[E050] Can't find model 'en_missing'")
    with pytest.raises(ModelLoadError, match=r"OSError: \[E050\] Can't find model 'en_missing'"):
        _start()


def test_a_child_that_exits_before_loading_fails_start_with_its_exit_code():
    process = ModelProcess(Settings(), command=[sys.executable, "-c", "import sys; sys.exit(7)"], start_timeout=30)
    with pytest.raises(ModelLoadError, match="exit.* code 7"):
        process.start()


def test_an_empty_request_is_answered_without_asking_the_child(model):
    assert model.recognize([], timeout=1) == [] and model._pending == 0


def _stand_in_children() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if b"tests.unit.stand_in_model" in fh.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_close_during_a_restart_returns_promptly_and_leaves_no_model_process(tmp_path, monkeypatch):
    flag = tmp_path / "slow"
    monkeypatch.setenv("STAND_IN_SLOW_LOAD_FLAG", str(flag))
    process = _start()
    flag.touch()  # the replacement will take 20 s to load
    with pytest.raises(Unavailable):
        process.recognize(["crash"], timeout=10)
    assert _wait_for(lambda: process.pid is not None and not process.ready())
    time.sleep(0.5)  # the replacement is loading
    started = time.monotonic()
    process.close(timeout=5)
    assert time.monotonic() - started < 4.0
    assert _wait_for(lambda: not [pid for pid in _stand_in_children() if _running(pid)], timeout=5)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_model_process_whose_parent_died_exits_at_once_without_running_its_queue(tmp_path):
    pid_file = tmp_path / "model.pid"
    script = (
        "import os, sys\n"
        "from functions.runtime.model_process import ModelProcess\n"
        "from functions.runtime.settings import Settings\n"
        f"m = ModelProcess(Settings(), command={STAND_IN!r}, start_timeout=30).start()\n"
        "for _ in range(3):\n"
        "    m.submit(['sleep:3'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(m.pid))\n"
        "os._exit(0)\n")
    import subprocess

    # stdout/stderr not captured: the model process inherits them, and a captured pipe would make run()
    # wait for it too.
    subprocess.run([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60, cwd=os.getcwd(), check=True)
    child = int(pid_file.read_text())
    assert _wait_for(lambda: not _running(child), timeout=2.0), "the orphaned model process kept running its queue"
