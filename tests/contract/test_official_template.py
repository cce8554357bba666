"""The project's handlers run unchanged under the official python3-http template's Flask front end.

The harness below follows the template's behaviour (python-flask-template python3-http, index.py; the
contract as functions/runtime/contract.py states it): the event
wraps Flask's request (``get_data()`` bytes, werkzeug headers, ``args``, ``method``, ``path``), a dict
response becomes (body, statusCode, headers) with dict bodies through ``jsonify`` and anything else
through ``str()``; an exception would become Flask's HTML 500 page.
"""

from __future__ import annotations

import importlib.util
import os
import time
import uuid

import pytest

from functions.runtime import settings

flask = pytest.importorskip("flask")

pytestmark = pytest.mark.integration


def template_app(handler):
    app = flask.Flask("python3-http-template")

    class Event:
        def __init__(self):
            self.body = flask.request.get_data()
            self.headers = flask.request.headers
            self.method = flask.request.method
            self.query = flask.request.args
            self.path = flask.request.path

    class Context:
        def __init__(self):
            self.hostname = os.getenv("HOSTNAME", "localhost")

    def format_response(resp):
        if resp is None:
            return ("", 200)
        if isinstance(resp, dict):
            body = resp.get("body", "")
            body = flask.jsonify(body) if isinstance(body, dict) else str(body)
            return (body, resp.get("statusCode", 200), list((resp.get("headers") or {}).items()))
        return resp

    @app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    def call_handler(path):
        return format_response(handler.handle(Event(), Context()))

    return app


@pytest.fixture(scope="module")
def ner_handler(pg_cluster):
    previous = os.environ.get("SECRETS_DIR")
    os.environ["SECRETS_DIR"] = str(pg_cluster.secrets_dir)
    settings.current.cache_clear()  # the process settings are read once: re-read them with this folder
    try:
        path = os.path.join(os.path.dirname(__file__), "..", "..", "functions", "ner-processor", "handler.py")
        spec = importlib.util.spec_from_file_location("template_ner_handler", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        if previous is None:
            os.environ.pop("SECRETS_DIR", None)
        else:
            os.environ["SECRETS_DIR"] = previous
        settings.current.cache_clear()
        module.service.close()
        # The in-process service stamped the model on every log line of this process: undo it.
        from functions.runtime import logs

        logs.set_static_fields(model_name=None, model_version=None)


def test_ner_handler_answers_json_under_the_template(ner_handler):
    client = template_app(ner_handler).test_client()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not ner_handler.service.ready():
        time.sleep(0.1)
    call_id = f"template-{uuid.uuid4()}"
    resp = client.post("/", data="Tim Cook visited Berlin", content_type="text/plain",
                       headers={"X-Call-Id": call_id})
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    assert [(e["text"], e["label"]) for e in body["entities"]] == [("Tim Cook", "PERSON"), ("Berlin", "GPE")]
    assert body["persisted"] is True and resp.headers["X-Request-Id"] == call_id


def test_ner_handler_errors_are_json_under_the_template_not_html(ner_handler):
    client = template_app(ner_handler).test_client()
    resp = client.post("/", data="{oops", content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_json"
    resp = client.get("/")
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"
