"""The built images, run as OpenFaaS runs them (scripts/image/container.py), against the real local
PostgreSQL primary + replica and compared with the host's real spaCy model.

Figures (image sizes, cold start, RSS) are appended to build/local/image-report.jsonl; `make bench` measures
them again against a bare spacy.load() in the same run (bench/image.py).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from devtools.processes import LOCAL_DIR
from scripts.image import build as image_build
from scripts.image.container import APP_UID, cold_start, function_env, image_env, rss_mb, run_function
from scripts.image.container import ROOT as REPO
from tests.logging.fieldrefs import assert_contract_line

TEXT = "Tim Cook visited Berlin on Monday to meet Siemens and Deutsche Bahn about a $2 billion deal."
REPORT = LOCAL_DIR / "image-report.jsonl"


def report(**figures) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}) + "\n")


def stdout_lines(container) -> list[dict]:
    out, _err = container.logs()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ner(engine, built, stack, writer_dsn):
    """ner-processor, cold-started once: (container, cold-start figures)."""
    ref = built["ner-processor"]["ref"]
    request_id = f"image-cold-{uuid.uuid4().hex}"
    with run_function(engine, ref, function_env("ner-processor", stack), {"ner-writer-dsn": writer_dsn}) as c:
        cold = cold_start(c, json.dumps({"text": TEXT}).encode(), request_id)
        cold["request_id"] = request_id
        yield c, cold


@pytest.fixture(scope="module")
def stats(engine, built, stack, analyst_replica_dsn, analyst_primary_dsn, stats_token):
    ref = built["entity-stats"]["ref"]
    secrets = {"stats-replica-dsn": analyst_replica_dsn, "stats-primary-dsn": analyst_primary_dsn,
               "entity-stats-token": stats_token}
    with run_function(engine, ref, function_env("entity-stats", stack), secrets) as c:
        yield c


def test_ner_processor_goes_ready_after_503_and_persists_on_the_primary(ner, admin_dsn, built):
    container, cold = ner
    statuses = [s for s in cold["ready_statuses"] if s is not None]
    assert statuses[0] == 503 and statuses[-1] == 200, cold["ready_statuses"]
    with psycopg.connect(admin_dsn) as conn:
        doc = conn.execute("SELECT model_name, model_version, entity_count FROM nlp.documents WHERE request_id = %s",
                           (cold["request_id"],)).fetchone()
        rows = conn.execute("SELECT text, label, start_char, end_char FROM nlp.entities WHERE request_id = %s "
                            "ORDER BY ordinal", (cold["request_id"],)).fetchall()
    answer = cold["answer"]
    assert doc is not None, "the 200 answer was not committed on the primary"
    assert doc[2] == len(answer["entities"]) == len(rows)
    assert [list(r) for r in rows] == [[e["text"], e["label"], e["start_char"], e["end_char"]]
                                       for e in answer["entities"]]
    report(image="ner-processor", size_mb=round(built["ner-processor"]["size_bytes"] / 1e6, 1),
           ready_s=round(cold["ready_s"], 3), first_persisted_s=round(cold["first_s"], 3), rss_mb=rss_mb(container))


def test_ner_processor_entities_equal_the_hosts_spacy_result_and_name_the_built_model(ner, stack):
    from functions.runtime.nlp import load_pipeline

    _container, cold = ner
    args = stack["functions"]["ner-processor"]["build_args"]
    env = function_env("ner-processor", stack)
    nlp = load_pipeline(args["SPACY_MODEL"], env.get("SPACY_PIPELINE", "ner"))
    expected = [{"text": e.text, "label": e.label_, "start_char": e.start_char, "end_char": e.end_char}
                for e in nlp(TEXT).ents]
    assert expected, "the host model finds nothing in the test text: the comparison would be empty"
    assert cold["answer"]["entities"] == expected
    package, _, version = args["MODEL_PACKAGE"].partition("==")
    assert cold["answer"]["model"] == {"name": args["SPACY_MODEL"], "version": version}
    assert package.replace("-", "_") == args["SPACY_MODEL"]


def test_every_stdout_line_is_contract_json(ner):
    container, cold = ner
    lines = stdout_lines(container)
    assert any(line.get("event") == "model.loaded" for line in lines)
    assert any(line.get("request_id") == cold["request_id"] and line.get("status_code") == 200 for line in lines)
    for line in lines:
        assert_contract_line(line)
    assert TEXT not in "\n".join(json.dumps(line) for line in lines), "the comment text must never be logged"


@pytest.mark.parametrize("function", ["ner-processor", "entity-stats"])
def test_runs_as_uid_10001_on_a_read_only_root_with_only_tmp_writable(request, function):
    container = request.getfixturevalue("ner")[0] if function == "ner-processor" else request.getfixturevalue("stats")
    status = container.exec("cat", "/proc/1/status").stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(APP_UID)] * 4, uid_line
    for path in ("/home/app/x", "/home/app/functions/x", "/opt/venv/x", "/x"):
        result = container.exec("sh", "-c", f"echo x > {path}")
        assert result.returncode != 0 and "Read-only file system" in result.stderr, (path, result.stderr)
    assert container.exec("sh", "-c", "echo x > /tmp/probe && cat /tmp/probe").stdout.strip() == "x"
    mounts = container.exec("cat", "/proc/mounts").stdout
    secrets = [line for line in mounts.splitlines() if " /var/openfaas/secrets " in line]
    assert secrets and " ro," in secrets[0], mounts


def test_entity_stats_serves_from_the_replica_and_has_no_spacy_model(stats, engine, built, stack, stats_token):
    def ready():
        return stats.request("/_/ready", timeout=5)[0] == 200

    from scripts.image.container import wait_for

    assert wait_for(ready, timeout=60), stats.logs()
    assert stats.request("/?window=1h&limit=5")[0] == 401  # no token, no answer
    status, _headers, body = stats.request("/?window=1h&limit=5", headers={"Authorization": f"Bearer {stats_token}"})
    assert status == 200, body
    assert json.loads(body)["served_by"] in {"replica", "primary"}
    ref = built["entity-stats"]["ref"]
    model = stack["functions"]["ner-processor"]["build_args"]["SPACY_MODEL"]
    probe = ("import importlib.util as u, importlib.metadata as md, json; "
             f"print(json.dumps([u.find_spec({model!r}) is None, u.find_spec('spacy') is None, "
             "sorted(d.metadata['Name'].lower().replace('_', '-') for d in md.distributions())]))")
    result = engine.run("run", "--rm", "--network", "none", ref, "python", "-c", probe)
    no_model, no_spacy, installed = json.loads(result.stdout)
    assert no_model and no_spacy, "entity-stats never loads a model: neither the model nor spaCy belongs in it"
    assert {"psycopg", "psycopg-binary", "psycopg-pool", "python-json-logger", "prometheus-client"} <= set(installed)
    assert not {"numpy", "thinc", "blis"} & set(installed), installed
    report(image="entity-stats", size_mb=round(built["entity-stats"]["size_bytes"] / 1e6, 1), rss_mb=rss_mb(stats))


def test_an_unreadable_secret_is_reported_as_unreadable(engine, built, stack, writer_dsn):
    """Mounted the way a careless local set-up writes it (root-owned, 0600): the function must say
    "unreadable", not "not set", and must not pretend to be healthy."""
    ref = built["ner-processor"]["ref"]
    env = function_env("ner-processor", stack)
    with run_function(engine, ref, env, {"ner-writer-dsn": writer_dsn}, secret_owner=0, secret_mode=0o600) as c:
        code = c.wait_exit(timeout=120)
        out, err = c.logs()
    assert code != 0
    assert "ner-writer-dsn is unreadable" in out + err
    assert "is not set" not in out + err
    password = psycopg.conninfo.conninfo_to_dict(writer_dsn).get("password")
    assert not password or password not in out + err, "no credential may reach the log"


def test_the_image_records_its_bases_and_placeholder_images_are_never_tagged_for_the_registry(engine, built, stack):
    for function, info in built.items():
        labels = engine.labels(info["ref"])
        assert labels["com.nlp-enrichment.function"] == function
        watchdog = labels[image_build.WATCHDOG_LABEL]
        registry = stack["functions"][function]["image"]
        if watchdog == image_build.OFFICIAL_WATCHDOG:
            continue
        with pytest.raises(image_build.RefusedError, match="refusing to tag"):
            image_build.tag_for_registry(engine, function, registry)
        assert not engine.has_image(registry)
        # the placeholder is not a watchdog: it refuses to run instead of pretending to serve
        result = engine.run("run", "--rm", "--network", "none", info["ref"], check=False)
        assert result.returncode != 0 and "PLACEHOLDER" in result.stderr


def test_no_ca_bundle_secret_or_database_file_lands_in_a_layer(engine, built, tmp_path):
    """Every layer of both images, file by file: no CA certificate the build was given that the base does
    not ship itself, no build secret mount, no pip config, DSN or PostgreSQL data."""
    from tests.image.layers import extra_ca_blocks, scan_layers

    ca_bundle = image_build.default_ca_bundle()
    for function, info in built.items():
        archive = tmp_path / f"{function}.tar"
        engine.run("save", "-o", str(archive), info["ref"])
        extra = extra_ca_blocks(engine, info["ref"], ca_bundle)
        findings = scan_layers(archive, extra)
        assert not findings, f"{function}: {findings[:10]}"
        archive.unlink()


def test_the_model_loads_and_tags_inside_the_slimmed_image(engine, built, stack):
    args = stack["functions"]["ner-processor"]["build_args"]
    probe = ("import spacy, json; nlp = spacy.load({m!r}); d = nlp({t!r}); "
             "print(json.dumps([[e.text, e.label_] for e in d.ents]))").format(m=args["SPACY_MODEL"], t=TEXT)
    result = engine.run("run", "--rm", "--network", "none", "--read-only", "--user", f"{APP_UID}:{APP_UID}",
                        built["ner-processor"]["ref"], "python", "-c", probe)
    ents = json.loads(result.stdout)
    assert ["Tim Cook", "PERSON"] in ents and ["Berlin", "GPE"] in ents
    env = image_env(engine, built["ner-processor"]["ref"])
    assert env["SPACY_MODEL"] == args["SPACY_MODEL"]
    assert Path(env["PATH"].split(":")[0]) == Path("/opt/venv/bin")


def test_the_layer_scan_finds_a_baked_ca_bundle_and_a_secret_file(tmp_path):
    """The scan above can fail: a hand-made image archive with a proxy CA and a DSN file in a layer."""
    import io
    import tarfile

    from tests.image.layers import pem_lines, scan_layers

    cert = b"-----BEGIN CERTIFICATE-----\nMIIBfirstline\nUNIQUEPROXYCASECONDLINE\nlast==\n-----END CERTIFICATE-----\n"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, data in (("usr/local/share/ca-certificates/proxy.crt", cert),
                           ("var/openfaas/secrets/ner-writer-dsn", b"host=x password=y")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as outer:
        for name, data in (("layer.tar", layer.getvalue()), ("manifest.json", b'[{"Layers": ["layer.tar"]}]')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            outer.addfile(info, io.BytesIO(data))
    findings = scan_layers(archive, pem_lines(cert))
    assert any("proxy.crt: holds a CA certificate" in f for f in findings), findings
    assert any("ner-writer-dsn: forbidden path" in f for f in findings), findings


INVOKE_INSIDE = """
import json, sys, time, urllib.request, urllib.error
deadline = time.monotonic() + 120
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:5000/_/ready", timeout=5) as r:
            break
    except (OSError, urllib.error.HTTPError):
        if time.monotonic() > deadline:
            sys.exit("never ready")
        time.sleep(0.1)
req = urllib.request.Request("http://127.0.0.1:5000/", data=sys.argv[1].encode(),
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=30).read().decode())
"""


def test_without_any_network_ner_processor_reaches_only_the_database_socket(engine, built, stack, pg_cluster,
                                                                            writer_dsn, admin_dsn):
    """The strict variant of "no network except the local PostgreSQL": the container gets no network
    namespace at all (--network none, loopback only) and the primary's unix socket mounted;
    the invoke is sent from inside the container to the upstream port (5000, the image default)."""
    # The primary's socket FILE (mode 0777) is bind-mounted, not its directory: that one is the server's
    # private 0700 directory (devtools/pgcluster/), which uid 10001 rightly cannot traverse.
    port = psycopg.conninfo.conninfo_to_dict(writer_dsn)["port"]
    socket_file = pg_cluster.socket_dir() / f".s.PGSQL.{port}"
    dsn = psycopg.conninfo.make_conninfo(writer_dsn, host="/run/pg")
    request_id = f"image-nonet-{uuid.uuid4().hex}"
    body = json.dumps({"text": TEXT, "request_id": request_id})
    mounts = {str(socket_file): f"/run/pg/.s.PGSQL.{port}"}
    with run_function(engine, built["ner-processor"]["ref"], function_env("ner-processor", stack),
                      {"ner-writer-dsn": dsn}, network="none", mounts=mounts) as c:
        result = c.exec("python", "-c", INVOKE_INSIDE, body, timeout=180)
        assert result.returncode == 0, result.stderr + c.logs()[0][-3000:]
        answer = json.loads(result.stdout)
        assert answer["persisted"] is True and answer["request_id"] == request_id
        outbound = c.exec("python", "-c", "import socket; socket.create_connection(('pypi.org', 443), timeout=3)")
        assert outbound.returncode != 0, "the container must have no route out"
    with psycopg.connect(admin_dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM nlp.documents WHERE request_id = %s", (request_id,)).fetchone()
    assert stored == (1,)


def test_the_unit_suite_passes_inside_the_slimmed_image(engine, built, tmp_path):
    """The runtime's unit tests (real model, no database) run by the image's own interpreter and venv,
    as uid 10001 on a read-only root: what the diet removed is nothing the code needs. pytest itself
    (pure Python) is copied from this venv and mounted; the code-style and bench tests need tools the
    image never carries and are left out."""
    import importlib.util

    tools = tmp_path / "pytest"
    tools.mkdir()
    for module in ("pytest", "_pytest", "py", "pluggy", "iniconfig"):
        origin = Path(importlib.util.find_spec(module).origin)
        src = origin.parent if origin.name == "__init__.py" else origin
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tools / src.name)
    tools.chmod(0o755)
    # Modules that import a dev-only package (PyYAML for the env.yml check, hypothesis for property
    # tests) test no runtime code the image could lack; they run on the host.
    dev_only = re.compile(r"^(?:import|from) (?:yaml|hypothesis)\b", re.MULTILINE)
    unit = sorted(p.name for p in (REPO / "tests" / "unit").glob("test_*.py")
                  if p.name not in {"test_code_style.py", "test_bench_smoke.py"}
                  and not dev_only.search(p.read_text(encoding="utf-8")))
    assert "test_ner_engine.py" in unit
    mounts = []
    for host, inside in ((tools, "/opt/pytest"), (REPO / "tests", "/home/app/tests"),
                         (REPO / "devtools", "/home/app/devtools"),
                         (REPO / "pyproject.toml", "/home/app/pyproject.toml")):
        mounts += ["-v", f"{host}:{inside}:ro"]
    result = engine.run("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,mode=1777",  # noqa: S108
                        "--user", f"{APP_UID}:{APP_UID}", *mounts, "-e", "PYTHONPATH=/opt/pytest",
                        built["ner-processor"]["ref"], "python", "-m", "pytest", "-p", "no:cacheprovider", "-q",
                        *[f"tests/unit/{name}" for name in unit], check=False, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
