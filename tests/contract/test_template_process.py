"""The ner-processor handler as the official python3-http template runs it: its own process started as
``python index.py`` (flask + waitress; tests/contract/template_index.py) with ``function/handler.py``
and, beside them, the project's ``functions/`` and ``sql/`` (docs/contract.md). Nothing but the
handler module configures logging there, and its stdout must still be contract JSON lines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from devtools.processes import REPO, call, free_port

pytest.importorskip("flask")
pytest.importorskip("waitress")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def template_process(pg_cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("template-home")  # /home/app of the template image
    shutil.copy(Path(__file__).with_name("template_index.py"), home / "index.py")
    (home / "function").mkdir()
    (home / "function" / "__init__.py").write_text("")
    shutil.copy(REPO / "functions" / "ner-processor" / "handler.py", home / "function" / "handler.py")
    shutil.copytree(REPO / "functions", home / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "sql", home / "sql")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DSN") and k not in {"SQL_DIR", "FUNCTIONS_DIR"}}
    env.update(TEMPLATE_PORT=str(port), SECRETS_DIR=str(pg_cluster.secrets_dir), PYTHONUNBUFFERED="1",
               FUNCTION_NAME="ner-processor")
    stdout, stderr = home / "stdout.log", home / "stderr.log"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen([sys.executable, "index.py"], cwd=home, env=env, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, stderr.read_text()[-3000:]
        try:
            status = call(url, body="Tim Cook visited Berlin", content_type="text/plain", timeout=10)[0]
            if status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the template process never answered 200"
        time.sleep(0.5)
    yield url, home, stdout, stderr
    process.terminate()
    process.wait(20)


def test_the_handler_under_the_template_process_logs_contract_json_on_stdout(template_process):
    url, home, stdout, _ = template_process
    call_id = f"template-proc-{uuid.uuid4()}"
    status, headers, body = call(url, body="Tim Cook visited Berlin", content_type="text/plain",
                                 headers={"X-Call-Id": call_id})
    assert status == 200 and body["request_id"] == call_id and headers["x-request-id"] == call_id
    status, _, body = call(url, body=b"{oops", content_type="application/json")
    assert status == 400 and body["error"] == "invalid_json"
    time.sleep(0.3)
    lines = [json.loads(line) for line in stdout.read_text().splitlines()]  # raises on a non-JSON line
    assert lines, "nothing on stdout"
    completed = [line for line in lines if line.get("request_id") == call_id]
    assert [line["event"] for line in completed] == ["request.completed"]
    assert completed[0]["function"] == "ner-processor" and completed[0]["status_code"] == 200
    assert completed[0]["model_name"] and completed[0]["service"] == "nlp-enrichment"
    assert any(line.get("event") == "model.loaded" for line in lines)
    assert any(line.get("event") == "request.failed" and line.get("error.code") == "invalid_json" for line in lines)


def test_the_handler_finds_sql_relative_to_its_package(template_process):
    # The handler's process runs from the template's home with functions/ and sql/ beside index.py and
    # no SQL_DIR set: a persisted answer shows the named queries were found there.
    url, home, _, _ = template_process
    status, _, body = call(url, body="Angela Merkel met Emmanuel Macron in Paris.", content_type="text/plain")
    assert status == 200 and body["persisted"] is True and body["commit_lsn"]
