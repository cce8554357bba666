"""What stack.yml, env.yml and the Dockerfile promise about running the functions: versioned images,
warm replica and scaling labels, the log label, secrets, read-only root, sizing and timeouts."""

from __future__ import annotations

import re

import pytest

from functions.runtime.credentials import function_secrets
from tests.deploy.conftest import ROOT, load_yaml
from tests.deploy.test_consistency import dockerfile_env, dockerfile_stages

LOG_LABEL = ("com.nlp-enrichment/logs", "json")
QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9, "": 1}


def memory_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?|)", text).groups()
    return int(float(number) * QUANTITY[unit])


def cpu_millis(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def seconds(text: str) -> float:
    """of-watchdog durations: a bare integer is seconds, otherwise a Go duration such as 30s or 1m5s."""
    if re.fullmatch(r"\d+", text):
        return float(text)
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


@pytest.fixture(scope="module")
def image_env() -> dict[str, str]:
    stages = dict(dockerfile_stages((ROOT / "Dockerfile").read_text(encoding="utf-8")))
    return dockerfile_env(stages["runtime"])


@pytest.fixture(scope="module")
def env_file() -> dict[str, str]:
    return load_yaml(ROOT / "env.yml")["environment"]


def test_every_image_carries_a_version_tag_not_latest(stack):
    for name, fn in stack["functions"].items():
        repo, _, tag = fn["image"].rpartition(":")
        assert "/" in repo and re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", tag), f"{name}: {fn['image']}"


def test_every_function_keeps_one_warm_replica_and_can_scale_out(stack):
    for name, fn in stack["functions"].items():
        labels = fn["labels"]
        assert labels["com.openfaas.scale.min"] == "1", name
        assert int(labels["com.openfaas.scale.max"]) > 1, name
        assert 0 < int(labels["com.openfaas.scale.factor"]) <= 100, name
        # Label values must be strings for Kubernetes: quoted in the file, not left to faas-cli.
        assert all(isinstance(v, str) for v in labels.values()), name
    assert stack["functions"]["ner-processor"]["labels"]["com.openfaas.scale.max"] == "20"


def test_every_function_pod_carries_the_log_selection_label(stack):
    for name, fn in stack["functions"].items():
        assert fn["labels"].get(LOG_LABEL[0]) == LOG_LABEL[1], name


def test_the_log_label_is_the_one_filebeat_and_logstash_filter_on():
    dedotted = LOG_LABEL[0].replace(".", "_")
    assert dedotted in (ROOT / "logstash" / "filebeat.yml").read_text(encoding="utf-8")
    assert dedotted in (ROOT / "logstash" / "pipeline" / "nlp-pipeline.conf").read_text(encoding="utf-8")


def test_database_credentials_are_openfaas_secrets_never_environment(stack, env_file):
    for name, fn in stack["functions"].items():
        assert fn.get("secrets") == list(function_secrets(name)), name
        environment = {**env_file, **(fn.get("environment") or {})}
        for key, value in environment.items():
            assert "DSN" not in key and "PASSWORD" not in key, f"{name}: {key} looks like a secret"
            assert "postgres" not in str(value) and "password=" not in str(value), f"{name}: {key}"


def test_every_function_runs_with_a_read_only_root_filesystem(stack, image_env):
    for name, fn in stack["functions"].items():
        assert fn.get("readonly_root_filesystem") is True, name
    # faas-netes mounts an emptyDir at /tmp for read-only functions and probes `cat /tmp/.lock`, so the
    # watchdog must keep writing its lock file there: suppress_lock would break the probe.
    assert image_env.get("suppress_lock", "false") == "false"
    # the process writes nothing else: bytecode was compiled at build time
    assert image_env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_requests_fit_inside_limits_and_the_model_function_gets_model_sized_memory(stack):
    for name, fn in stack["functions"].items():
        assert memory_bytes(fn["requests"]["memory"]) <= memory_bytes(fn["limits"]["memory"]), name
        assert cpu_millis(fn["requests"]["cpu"]) <= cpu_millis(fn["limits"]["cpu"]), name
    ner = stack["functions"]["ner-processor"]
    # measured: ~140 MB after model load, ~290 MB peak for a batch of typical comments (docs/operations.md, Sizing)
    assert memory_bytes(ner["requests"]["memory"]) >= 1.5 * 290 * 10**6
    # measured: ~1 GB peak for 128 texts of 2,000 characters in one model batch
    assert memory_bytes(ner["limits"]["memory"]) >= 1.4 * 10**9


def test_watchdog_runs_the_project_server_in_http_mode_without_log_prefixes(image_env):
    assert image_env["fprocess"] == "python -m functions.runtime.server"
    # of-watchdog splits fprocess on single spaces without quoting
    assert "  " not in image_env["fprocess"] and '"' not in image_env["fprocess"]
    assert image_env["mode"] == "http"
    assert image_env["prefix_logs"] == "false"
    assert image_env["ready_path"] == image_env["READY_PATH"] == "/_/ready"
    assert image_env["upstream_url"] == f"http://{image_env['HOST']}:{image_env['PORT']}"


def test_readiness_is_proxied_without_request_buffering_which_panics_of_watchdog(image_env):
    """of-watchdog 0.11.6 panics on every GET /_/ready when buffer_http (or http_buffer_req_body) is true
    and ready_path is set (docs/contract.md): the probe never gets an answer. The working
    combination is ready_path with buffering off; the upstream server reads chunked bodies itself."""
    assert image_env["ready_path"]
    for key in ("buffer_http", "http_buffer_req_body"):
        assert image_env.get(key, "false").lower() == "false", f"{key} must stay false with ready_path"


def test_timeouts_nest_function_inside_watchdog_inside_http_server(image_env, env_file):
    exec_timeout = seconds(image_env["exec_timeout"])
    assert float(env_file["REQUEST_TIMEOUT_S"]) < exec_timeout
    assert exec_timeout <= seconds(image_env["write_timeout"])
    assert exec_timeout <= seconds(image_env["read_timeout"])
    # After SIGTERM the function serves at least as long as the watchdog proxies (SHUTDOWN_DRAIN_S empty
    # = the inherited healthcheck_interval), and that window is shorter than the drain after it.
    assert env_file.get("SHUTDOWN_DRAIN_S", "") == ""
    assert 0 < seconds(image_env["healthcheck_interval"]) < seconds(image_env["write_timeout"])


def test_env_file_and_inline_environment_never_set_the_same_key(stack, env_file):
    """faas-cli versions disagree on which wins a clash; with disjoint keys all of them agree."""
    for name, fn in stack["functions"].items():
        assert not set(env_file) & set(fn.get("environment") or {}), name
        assert fn["environment_file"] == ["env.yml"], name


def test_env_file_only_sets_settings_the_runtime_reads(env_file):
    settings = (ROOT / "functions" / "runtime" / "settings.py").read_text(encoding="utf-8")
    for key in env_file:
        assert f'"{key}"' in settings, f"env.yml sets {key}, which functions/runtime/settings.py never reads"


def test_only_the_model_function_installs_the_model(stack):
    assert stack["functions"]["ner-processor"]["build_args"]["INSTALL_MODEL"] == "true"
    assert stack["functions"]["entity-stats"]["build_args"]["INSTALL_MODEL"] == "false"
    ner_args = stack["functions"]["ner-processor"]["build_args"]
    assert ner_args["MODEL_PACKAGE"] and ner_args["SPACY_MODEL"]
    assert (
        stack["functions"]["ner-processor"]["annotations"]["com.nlp-enrichment/model-package"]
        == ner_args["MODEL_PACKAGE"]
    )
