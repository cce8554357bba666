"""Least privilege and secrets.

* Secrets come from ``$SECRETS_DIR/<name>`` files (OpenFaaS mounts them at /var/openfaas/secrets);
  an environment variable of the same name is only a fallback.
* No DSN or password ever appears in a log line or an error body, connection errors included: the
  functions are started with secrets whose passwords are distinctive canaries (wrong password,
  unreachable port, URI form) and everything they print or answer is searched for the canary.
* The functions connect as nlp_writer / nlp_analyst (pg_stat_activity by application_name). What
  those roles may do is proven in tests/integration/test_roles.py (writer: INSERT + idempotency
  columns only, no DROP/ALTER/TRUNCATE; analyst: SELECT on analytics views only; replica read-only),
  not repeated here.
* The image runs as non-root (top-level Dockerfile) and the Argo CD AppProject restricts destinations
  and cluster-scoped kinds (argocd/).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from functions.runtime.settings import DEFAULT_SECRETS_DIR, Settings, read_secret
from tests.faults.support import REPO, Http, bearer, report

pytestmark = [pytest.mark.faults]


# -- read_secret -----------------------------------------------------------------------------------

def test_secret_file_wins_over_env_and_env_is_only_a_fallback(tmp_path):
    (tmp_path / "ner-writer-dsn").write_text("host=file-host password=from-file\n")
    env = {"SECRETS_DIR": str(tmp_path), "NER_WRITER_DSN": "host=env-host password=from-env",
           "STATS_REPLICA_DSN": "host=env-only"}
    assert read_secret("ner-writer-dsn", env) == "host=file-host password=from-file"  # newline stripped
    assert read_secret("stats-replica-dsn", env) == "host=env-only"  # no file: env fallback
    assert read_secret("stats-primary-dsn", env) is None
    assert Settings.from_env(env).secret("ner-writer-dsn") == "host=file-host password=from-file"
    # Without SECRETS_DIR the OpenFaaS mount point is used.
    assert DEFAULT_SECRETS_DIR == "/var/openfaas/secrets"
    assert read_secret("definitely-not-a-secret-name", {}) is None


def test_secret_directory_that_is_a_file_or_missing_falls_back_to_env(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    for secrets_dir in (not_a_dir, tmp_path / "missing"):
        env = {"SECRETS_DIR": str(secrets_dir), "MIGRATIONS_DSN": "host=fallback"}
        assert read_secret("migrations-dsn", env) == "host=fallback"


# -- processes use SECRETS_DIR, never leak the secret -----------------------------------------------

def _canary() -> str:
    return "Canary" + uuid.uuid4().hex + "Pw"


def _dsn_with(cluster, role: str, server: str, password: str, port: int | None = None) -> str:
    dsn = cluster.dsn(role, server)
    dsn = re.sub(r"password=\S+", f"password={password}", dsn)
    if port is not None:
        dsn = re.sub(r"port=\d+", f"port={port}", dsn)
    return dsn


def _wait_listening(fn, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert fn.process.poll() is None, fn.raw_log()[-2000:]
        if '"server.started"' in fn.raw_log():
            return
        time.sleep(0.1)
    raise TimeoutError(fn.raw_log()[-2000:])


def _requests_for(function: str) -> list[dict]:
    if function == "entity-stats":
        return [{"method": "GET", "path": "/?window=1h", "content_type": None},
                {"method": "GET", "path": "/?consistency=strong", "content_type": None},
                {"method": "GET", "path": "/_/ready", "content_type": None}]
    rid = uuid.uuid4().hex
    return [{"body": json.dumps({"text": "Tim Cook of Apple in Paris.", "request_id": f"c-{rid}"})},
            {"body": json.dumps({"documents": [{"id": f"c-{rid}.0", "text": "Amazon in Seattle."}]})},
            {"body": "Siemens in Munich.", "content_type": "text/plain"},
            {"method": "GET", "path": "/_/ready", "content_type": None}]


def _free_port() -> int:
    from devtools.processes import free_port

    return free_port()


CASES = {
    "wrong-password": lambda c, pw: {"ner-writer-dsn": _dsn_with(c, "writer", "primary", pw)},
    "unreachable-port": lambda c, pw: {"ner-writer-dsn": _dsn_with(c, "writer", "primary", pw, _free_port())},
    "uri-wrong-password": lambda c, pw: {"ner-writer-dsn": (
        f"postgresql://nlp_writer:{pw}@127.0.0.1:{c.status()['primary']['port']}/nlp?connect_timeout=2")},
    "stats-wrong-passwords": lambda c, pw: {
        "stats-replica-dsn": _dsn_with(c, "analyst", "replica", pw),
        "stats-primary-dsn": _dsn_with(c, "analyst", "primary", pw + "P")},
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(CASES))
def test_connection_errors_never_reveal_the_dsn_or_password(function_factory, healthy, tmp_path, case,
                                                           stats_token):
    password = _canary()
    secrets = CASES[case](healthy, password)
    secrets_dir = tmp_path / f"secrets-{case}"
    secrets_dir.mkdir()
    for name, value in secrets.items():
        (secrets_dir / name).write_text(value + "\n")
    (secrets_dir / "entity-stats-token").write_text(stats_token + "\n")
    function = "entity-stats" if case.startswith("stats") else "ner-processor"
    fn = function_factory(function, wait=False, SECRETS_DIR=str(secrets_dir), DB_CONNECT_TIMEOUT_S="1",
                          DB_POOL_TIMEOUT_S="0.5")
    _wait_listening(fn)
    client = Http(fn.port, headers=bearer(stats_token))
    answers = []
    for request in _requests_for(function):
        request = dict(request)
        reply = client.request(request.pop("method", "POST"), request.pop("path", "/"),
                               body=request.pop("body", None),
                               content_type=request.pop("content_type", "application/json"))
        answers.append(reply)
    time.sleep(1.0)  # let the pools' background reconnect attempts fail and log
    client.close()
    log = fn.raw_log()
    exposed = "\n".join(f"{r.status} {r.headers} {r.body.decode('utf-8', 'replace')}" for r in answers) + log
    data_statuses = sorted({r.status for r in answers if b'"ready"' not in r.body})
    failures_logged = sum('"db.' in line or "psycopg" in line for line in log.splitlines())
    report(f"secrets_{case}", statuses=data_statuses, log_lines=len(log.splitlines()),
           db_failure_lines=failures_logged, canary_in_logs=password in log,
           canary_in_responses=any(password.encode() in r.body for r in answers))

    assert data_statuses == [503], "a misconfigured database must give 503, never 2xx or 500"
    assert all(r.error_code() == "database_unavailable"
               for r in answers if r.status == 503 and b'"error"' in r.body)
    assert failures_logged > 0, "the connection failures should be logged (without the secret)"
    for secret_part in (password, *secrets.values()):
        assert secret_part not in exposed, f"secret material leaked: {secret_part[:20]}..."
    # Not even a redacted DSN: the log's redaction is a safety net that must not have been needed.
    assert "password=" not in log and ":***@" not in log


@pytest.mark.integration
def test_secret_file_beats_a_wrong_env_dsn_in_a_real_process(function_factory, healthy, tmp_path):
    wrong = _dsn_with(healthy, "writer", "primary", _canary())
    fn = function_factory("ner-processor", NER_WRITER_DSN=wrong)  # SECRETS_DIR = the cluster's secrets
    reply = Http(fn.port).post_json({"text": "Nokia in Helsinki.", "request_id": f"sec-{uuid.uuid4().hex}"})
    assert reply.status == 200, "the secret file must be used, not the env var"
    env_only = function_factory("ner-processor", SECRETS_DIR=str(tmp_path / "empty"),
                                NER_WRITER_DSN=healthy.dsn("writer", "primary"))
    reply = Http(env_only.port).post_json({"text": "Nokia in Oslo.", "request_id": f"sec-{uuid.uuid4().hex}"})
    assert reply.status == 200, "without a secret file the env var is the fallback"


@pytest.mark.integration
def test_functions_connect_as_their_least_privileged_roles(function_factory, healthy, admin_dsn, stats_token):
    ner = function_factory("ner-processor")
    stats = function_factory("entity-stats")
    reply = Http(ner.port).post_json({"text": "Apple in Paris.", "request_id": f"role-{uuid.uuid4().hex}"})
    assert reply.status == 200
    authorized = Http(stats.port, headers=bearer(stats_token))
    assert authorized.request("GET", "/?window=1h", content_type=None).status == 200
    assert authorized.request("GET", "/?consistency=strong", content_type=None).status == 200
    query = ("SELECT a.application_name, a.usename, r.rolsuper OR r.rolcreaterole OR r.rolcreatedb"
             " FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename"
             " WHERE a.application_name IN ('ner-writer', 'entity-stats-replica', 'entity-stats-primary')")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        on_primary = set(conn.execute(query).fetchall())
    with psycopg.connect(healthy.dsn("admin", "replica"), autocommit=True) as conn:
        on_replica = set(conn.execute(query).fetchall())
    report("roles_in_pg_stat_activity", primary=sorted(on_primary), replica=sorted(on_replica))
    assert ("ner-writer", "nlp_writer", False) in on_primary
    assert ("entity-stats-primary", "nlp_analyst", False) in on_primary
    assert on_replica == {("entity-stats-replica", "nlp_analyst", False)}
    assert {user for _, user, _ in on_primary} <= {"nlp_writer", "nlp_analyst"}


# -- image and GitOps guard rails (files written by the deploy side) -------------------------------

def _dockerfile_final_user(text: str) -> str | None:
    """USER of the final stage, ARG defaults substituted; None if the final stage sets none."""
    logical = re.sub(r"\\\r?\n", " ", text)
    args: dict[str, str] = {}
    user = None
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        if instruction == "FROM":
            user = None  # a new stage starts as its base image's user
        elif instruction == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"\'')
        elif instruction == "USER":
            user = re.sub(r"\$\{?(\w+)(?::-([^}]*))?\}?",
                          lambda m: args.get(m.group(1), m.group(2) or ""), rest).strip()
    return user


@pytest.mark.parametrize("text,expected", [
    ("FROM a AS b\nUSER app\nFROM c\nUSER 10001:10001\n", "10001:10001"),
    ("FROM a\nUSER app\nFROM b\nRUN x\n", None),
    ("ARG UID=10001\nFROM a\nUSER ${UID}\n", "10001"),
    ("FROM a\nuser root\n", "root"),
])
def test_dockerfile_user_parser(text, expected):
    assert _dockerfile_final_user(text) == expected


def test_image_runs_as_non_root():
    dockerfile = REPO / "Dockerfile"
    assert dockerfile.is_file(), "the top-level Dockerfile is missing (deploy side)"
    user = _dockerfile_final_user(dockerfile.read_text())
    report("dockerfile_user", final_stage_user=user)
    assert user, "the final stage must set USER (the base image's default is root)"
    name = user.split(":", 1)[0].strip()
    assert name not in {"root", "0", ""}, f"final USER is {user!r}"


def _app_projects() -> list[tuple[Path, dict]]:
    found = []
    for path in sorted((REPO / "argocd").rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "AppProject":
                found.append((path, doc))
    return found


def test_argocd_app_project_restricts_destinations_and_cluster_kinds():
    assert (REPO / "argocd").is_dir(), "argocd/ is missing (deploy side)"
    projects = _app_projects()
    assert projects, "no AppProject under argocd/"
    summary = {}
    for path, project in projects:
        spec = project.get("spec") or {}
        where = f"{path.relative_to(REPO)}:{project.get('metadata', {}).get('name')}"
        destinations = spec.get("destinations") or []
        assert destinations, f"{where}: no destinations means nothing may be deployed; list them"
        for dest in destinations:
            for key in ("namespace", "server", "name"):
                assert "*" not in str(dest.get(key, "")), f"{where}: destination {key} {dest.get(key)!r}"
        cluster_kinds = spec.get("clusterResourceWhitelist") or []
        for entry in cluster_kinds:
            assert "*" not in str(entry.get("kind", "")) and "*" not in str(entry.get("group", "")), \
                f"{where}: clusterResourceWhitelist allows {entry}"
        summary[where] = {"destinations": [f"{d.get('server', d.get('name'))}/{d.get('namespace')}"
                                           for d in destinations],
                          "cluster_kinds": [e.get("kind") for e in cluster_kinds],
                          "namespace_kinds": len(spec.get("namespaceResourceWhitelist") or []) or "all",
                          "source_repos": spec.get("sourceRepos")}
    report("argocd_app_project", projects=summary)
