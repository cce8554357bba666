"""A third function made from the README's "Add a function" skeleton, verbatim, in a temporary copy of the
repository: the deploy consistency checks and the faas-cli generate stand-in accept it, and it answers
under the runtime server and under the local gateway (no database, no model: it needs neither)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import yaml

from devtools.gateway import Gateway, read_stack
from devtools.processes import free_port
from tests.deploy import faas_cli_standin
from tests.deploy.test_consistency import consistency_problems, repo_copy  # noqa: F401 - a fixture
from tests.fixtures.servers import call, start_function

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NAME = "hello"


def readme_skeleton() -> tuple[str, str]:
    """(handler.py, stack.yml entry) exactly as the README's "Add a function" section shows them."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Add a function\n", 1)[1].split("\n## ", 1)[0]
    [handler] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    [entry] = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    return handler, entry


@pytest.fixture
def repo_with_hello(repo_copy):  # noqa: F811 - repo_copy is the deploy tests' fixture, imported above
    """The deploy tests' copy of what the consistency checks read, plus the skeleton function."""
    handler, entry = readme_skeleton()
    (repo_copy / "functions" / NAME).mkdir()
    (repo_copy / "functions" / NAME / "handler.py").write_text(handler, encoding="utf-8")
    stack = (repo_copy / "stack.yml").read_text(encoding="utf-8")
    assert stack.rstrip("\n").splitlines()[-1].startswith("    "), "functions: must stay the last mapping"
    (repo_copy / "stack.yml").write_text(stack.rstrip("\n") + "\n\n" + entry, encoding="utf-8")
    return repo_copy


def test_the_skeleton_is_one_folder_with_handler_py_and_one_stack_entry(repo_with_hello):
    stack = yaml.safe_load((repo_with_hello / "stack.yml").read_text(encoding="utf-8"))
    assert set(stack["functions"]) == {"ner-processor", "entity-stats", NAME}
    assert [p.name for p in (repo_with_hello / "functions" / NAME).iterdir()] == ["handler.py"]


def test_the_deploy_consistency_checks_accept_it(repo_with_hello):
    assert consistency_problems(repo_with_hello) == []


def test_faas_cli_generate_renders_a_function_object_for_it(repo_with_hello):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = faas_cli_standin.main(["generate", "-f", str(repo_with_hello / "stack.yml")], environ={})
    assert code == 0, out.getvalue()
    objects = {o["metadata"]["name"]: o for o in yaml.safe_load_all(out.getvalue()) if o}
    assert objects[NAME]["spec"]["environment"]["FUNCTION_NAME"] == NAME
    assert objects[NAME]["spec"]["image"] == "ghcr.io/nlp-enrichment/hello:0.1.0"


def test_it_answers_under_the_runtime_server(repo_with_hello, tmp_path):
    fn = start_function(NAME, tmp_path, FUNCTIONS_DIR=str(repo_with_hello / "functions"))
    try:
        status, headers, body = call(fn, "/?name=Ada", method="GET", body=None, content_type=None,
                                     headers={"X-Call-Id": "call-hello"})
        assert (status, body) == (200, {"hello": "Ada"})
        assert headers["x-request-id"] == "call-hello"
        assert fn.ready_status() == 200  # no checks registered: ready once imported
        status, _, body = call(fn, "/", method="GET", body=None, content_type=None)
        assert (status, body) == (200, {"hello": "world"})
    finally:
        assert fn.stop() == 0
    lines = fn.log_lines()  # every line JSON (the log contract)
    completed = [line for line in lines if line.get("event") == "request.completed"]
    assert len(completed) == 2 and completed[0]["function"] == NAME
    assert completed[0]["request_id"] == "call-hello"


def test_it_answers_under_the_local_gateway(repo_with_hello, tmp_path):
    specs = [spec for spec in read_stack(repo_with_hello / "stack.yml") if spec.name == NAME]
    gateway = Gateway(specs, secrets_dir=tmp_path / "no-secrets", log_dir=tmp_path / "logs", port=free_port(),
                      env_overrides={"FUNCTIONS_DIR": str(repo_with_hello / "functions")})
    gateway.start(timeout=60)
    try:
        status, headers, body = call(gateway.url, f"/function/{NAME}.openfaas-fn?name=Grace", method="GET",
                                     body=None, content_type=None)
        assert (status, body) == (200, {"hello": "Grace"})
        assert headers["x-request-id"] == headers["x-call-id"]
        status, _, body = call(gateway.url, f"/function/{NAME}", method="GET", body=None, content_type=None)
        assert (status, body) == (200, {"hello": "world"})
    finally:
        gateway.stop()
