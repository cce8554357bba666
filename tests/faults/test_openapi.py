"""functions/openapi.yaml: a valid OpenAPI 3 document that matches the runtime, and schemathesis runs
generated from it against real function processes (no 5xx, responses conform to the document).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from functions.runtime.settings import Settings
from tests.faults.support import REPO, report

pytestmark = [pytest.mark.faults]

SPEC_PATH = REPO / "functions" / "openapi.yaml"
ST_CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 200
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection")


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def test_openapi_document_is_valid_openapi_3(spec):
    validator = pytest.importorskip("openapi_spec_validator", reason="pip install openapi-spec-validator")
    validator.validate(spec)
    assert spec["openapi"].startswith("3.")


def _deref(spec: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_document_lists_every_error_status_with_the_json_error_schema_and_the_runtime_limits(spec):
    ner = spec["paths"]["/function/ner-processor"]["post"]["responses"]
    stats = spec["paths"]["/function/entity-stats"]["get"]["responses"]
    assert {"400", "405", "409", "413", "415", "422", "429", "500", "503", "504"} <= set(ner)
    assert {"401", "405", "422", "500", "503", "504"} <= set(stats)
    for responses in (ner, stats):
        for status, response in responses.items():
            if int(status) < 400:
                continue
            response = _deref(spec, response)
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, status
            if status in ("429", "503"):
                assert response["headers"]["Retry-After"], status
            if status == "405":
                assert response["headers"]["Allow"]["required"] is True
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message"]
    # The documented limits are the runtime's defaults (a change on one side must reach the other).
    defaults = Settings.from_env({})
    schemas = spec["components"]["schemas"]
    assert schemas["Text"]["maxLength"] == defaults.max_text_chars
    assert schemas["BatchRequest"]["properties"]["documents"]["maxItems"] == defaults.max_batch_docs
    params = {p["name"]: p for p in spec["paths"]["/function/entity-stats"]["get"]["parameters"]}
    assert set(params) == {"window", "label", "limit", "consistency", "min_lsn", "source"}
    assert params["consistency"]["schema"]["enum"] == ["eventual", "strong"]


def _schemathesis(tmp_path: Path, url: str, path: str, headers: dict | None = None) -> dict:
    executable = Path(sys.executable).with_name("schemathesis")
    if not executable.exists():
        pytest.skip("schemathesis is not installed (see requirements/dev-extra.txt)")
    report_path = tmp_path / f"schemathesis-{path.strip('/').replace('/', '-')}.json"
    command = [str(executable), "--config-file", str(ST_CONFIG), "run", str(SPEC_PATH), "--url", url,
               "--include-path", path, "--max-examples", str(MAX_EXAMPLES), "--checks", CHECKS,
               "--seed", "1", "--generation-database", "none", "--workers", "1", "--request-timeout", "30",
               "--no-color", "--suppress-health-check", "all",
               "--report", "json", "--report-json-path", str(report_path)]
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}: {value}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    if not report_path.exists():
        raise AssertionError(f"schemathesis did not run (exit {result.returncode}):\n{result.stdout[-3000:]}"
                             f"\n{result.stderr[-3000:]}")
    outcome = json.loads(report_path.read_text())
    outcome["stdout_tail"] = result.stdout[-4000:]
    outcome["returncode"] = result.returncode
    return outcome


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("function,path", [("ner-processor", "/function/ner-processor"),
                                           ("entity-stats", "/function/entity-stats")])
def test_schemathesis_against_a_real_process_finds_no_5xx_and_no_contract_violation(
        function_factory, healthy, tmp_path, function, path, stats_token):
    # Random far-future min_lsn values would each wait the full strong-read bound for the replica.
    fn = function_factory(function, STATS_STRONG_WAIT_MS="50")
    outcome = _schemathesis(tmp_path, fn.url, path, {"Authorization": f"Bearer {stats_token}"})
    cases = outcome["test_cases"]
    report(f"schemathesis_{function}", generated=cases["generated"], with_failures=cases["with_failures"],
           unique_failures=cases["unique_failures"], errored=cases["errored"],
           seconds=round(outcome["running_time"], 1))
    assert fn.process.poll() is None
    assert outcome["operations"]["tested"] == 1
    assert outcome["returncode"] == 0 and cases["unique_failures"] == 0 and not outcome["errors"], \
        outcome["stdout_tail"]
