"""The local gateway: faas-cli's exact request shape, curl's, async invocations and system routes."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest

from devtools.gateway import Gateway, read_stack
from devtools.processes import free_port
from tests.fixtures.servers import call

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway(pg_cluster, tmp_path_factory):
    gw = Gateway(read_stack(REPO / "stack.yml"), secrets_dir=pg_cluster.secrets_dir,
                 log_dir=tmp_path_factory.mktemp("gateway-logs"), port=free_port())
    gw.start()
    yield gw
    gw.stop()


def test_faas_cli_invoke_request_shape_returns_entities(gateway):
    # What `echo "Tim Cook visited Berlin" | faas-cli invoke ner-processor --gateway URL` sends.
    status, headers, body = call(gateway.url, "/function/ner-processor.openfaas-fn",
                                 body=b"Tim Cook visited Berlin\n", content_type="text/plain",
                                 headers={"User-Agent": "faas-cli/0.18.12"})
    assert status == 200
    assert [(e["text"], e["label"]) for e in body["entities"]] == [("Tim Cook", "PERSON"), ("Berlin", "GPE")]
    assert body["persisted"] is True and headers["x-call-id"] == body["request_id"]


def test_curl_data_file_with_default_form_content_type_works(gateway):
    payload = (REPO / "samples" / "comment.json").read_bytes()
    status, _, body = call(gateway.url, "/function/ner-processor", body=payload,
                           content_type="application/x-www-form-urlencoded")
    assert status == 200 and body["entities"]


def test_wrong_namespace_and_unknown_function_are_404_json(gateway):
    assert call(gateway.url, "/function/ner-processor.other-ns", body="x", content_type="text/plain")[0] == 404
    status, _, body = call(gateway.url, "/function/nope", body="x", content_type="text/plain")
    assert status == 404 and body["error"] == "not_found"


def test_system_routes_list_functions_and_health(gateway):
    status, _, functions = call(gateway.url, "/system/functions", method="GET", body=None, content_type=None)
    assert status == 200
    assert {f["name"] for f in functions} == {spec.name for spec in read_stack(REPO / "stack.yml")}
    assert all(f["availableReplicas"] == 1 for f in functions)
    assert call(gateway.url, "/healthz", method="GET", body=None, content_type=None)[0] == 200


def test_async_invocation_is_accepted_then_persisted_under_its_call_id(gateway, admin_dsn):
    call_id = f"async-{uuid.uuid4()}"
    status, headers, _ = call(gateway.url, "/async-function/ner-processor.openfaas-fn",
                              body=b"Jensen Huang presented Nvidia's roadmap in Taipei.", content_type="text/plain",
                              headers={"X-Call-Id": call_id})
    assert status == 202 and headers["x-call-id"] == call_id
    deadline = time.monotonic() + 20
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM nlp.documents WHERE request_id = %s", (call_id,)).fetchone():
                break
            time.sleep(0.1)
        else:
            pytest.fail("async invocation was not persisted")
