"""The runtime honours the python3-http contract, and the project's handlers need nothing beyond it."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest

from devtools.processes import start_function
from functions.runtime.server import render
from tests.fixtures.servers import call

REPO = Path(__file__).resolve().parents[2]

# Written only against the official template's documented contract: no project imports.
CONTRACT_ONLY_HANDLER = textwrap.dedent('''
    import json

    def handle(event, context):
        if event.path == "/none":
            return None
        if event.path == "/text":
            return {"statusCode": 201, "body": "plain", "headers": {"X-Kind": "text"}}
        return {
            "statusCode": 200,
            "body": {
                "body_type": type(event.body).__name__,
                "body": event.body.decode("utf-8"),
                "method": event.method,
                "path": event.path,
                "q": event.query.get("q"),
                "q_all": event.query.getlist("q"),
                "header": event.headers.get("x-custom-header"),
                "hostname": context.hostname,
            },
            "headers": {"X-Handled-By": "contract-only"},
        }
''')


@pytest.fixture(scope="module")
def contract_function(tmp_path_factory):
    functions_dir = tmp_path_factory.mktemp("functions")
    (functions_dir / "echo").mkdir()
    (functions_dir / "echo" / "handler.py").write_text(CONTRACT_ONLY_HANDLER)
    fn = start_function("echo", tmp_path_factory.mktemp("logs"), FUNCTIONS_DIR=str(functions_dir),
                        HOSTNAME="pod-echo-1")
    yield fn
    fn.stop()


def test_contract_only_handler_gets_bytes_body_headers_query_path_and_hostname(contract_function):
    status, headers, body = call(contract_function, "/some/path?q=1&q=2", body="héllo",
                                 content_type="text/plain", headers={"X-Custom-Header": "abc"})
    assert status == 200
    assert headers["x-handled-by"] == "contract-only"
    assert headers["content-type"] == "application/json"
    assert body == {"body_type": "bytes", "body": "héllo", "method": "POST", "path": "/some/path",
                    "q": "1", "q_all": ["1", "2"], "header": "abc", "hostname": "pod-echo-1"}


def test_contract_only_handler_string_body_status_and_none(contract_function):
    status, headers, body = call(contract_function, "/text", method="GET", body=None, content_type=None)
    assert (status, body, headers["x-kind"]) == (201, b"plain", "text")
    status, _, body = call(contract_function, "/none", method="DELETE", body=None, content_type=None)
    assert (status, body) == (200, b"")


def test_render_matches_template_for_dict_and_none():
    assert render(None) == (200, {"Content-Type": "text/html; charset=utf-8"}, b"")
    status, headers, body = render({"statusCode": 418, "body": {"a": 1}, "headers": {"X": "y"}})
    assert (status, headers["Content-Type"], json.loads(body)) == (418, "application/json", {"a": 1})
    assert render({"body": "x"})[0] == 200


CONTRACT_EVENT_ATTRS = {"body", "headers", "method", "query", "path"}
CONTRACT_CONTEXT_ATTRS = {"hostname"}


def _handler_files():
    return sorted((REPO / "functions").glob("*/handler.py"))


@pytest.mark.parametrize("path", _handler_files(), ids=lambda p: p.parent.name)
def test_project_handler_defines_handle_event_context_only(path):
    tree = ast.parse(path.read_text())
    handles = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "handle"]
    assert len(handles) == 1, f"{path} must define handle(event, context) once"
    args = handles[0].args
    assert [a.arg for a in args.args] == ["event", "context"]
    assert not (args.vararg or args.kwarg or args.kwonlyargs or args.defaults)


def test_project_handlers_only_touch_contract_attributes():
    # Every attribute a handler module reads from event/context must be in the contract; checked on
    # the runtime code that receives the event too (the handler hands it on).
    sources = [*_handler_files(), REPO / "functions/runtime/ner_service.py", REPO / "functions/runtime/http.py",
               REPO / "functions/runtime/app.py",
               REPO / "functions/runtime/analytics.py"]
    for path in sources:
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "event":
                    assert node.attr in CONTRACT_EVENT_ATTRS, f"{path}: event.{node.attr} is not in the contract"
                if node.value.id == "context":
                    assert node.attr in CONTRACT_CONTEXT_ATTRS, f"{path}: context.{node.attr} not in contract"


def test_render_encodes_what_orjson_refuses_instead_of_failing():
    status, headers, payload = render({"statusCode": 200, "body": {"big": 2**70, 3: "int key", "list": [1.5]}})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(payload) == {"big": 2**70, "3": "int key", "list": [1.5]}
