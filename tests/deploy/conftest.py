"""Shared helpers of tests/deploy: repository paths, the schema directory, kustomize rendering and the
faas-cli stand-in. Everything here works offline."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "argocd"
GENERATE_SH = ARGOCD / "plugins" / "openfaas-stack" / "generate.sh"
STANDIN = Path(__file__).resolve().parent / "faas_cli_standin.py"
INSTALL_STUB = Path(__file__).resolve().parent / "fixtures" / "argocd-install-stub.yaml"
REMOTE_INSTALL_PREFIX = "https://raw.githubusercontent.com/argoproj/argo-cd/"


def schema_dir() -> Path:
    """NLP_SCHEMA_DIR, default ../shared/schemas relative to the repository root."""
    return Path(os.environ.get("NLP_SCHEMA_DIR") or (ROOT.parent / "shared" / "schemas")).resolve()


@pytest.fixture(scope="session")
def schemas() -> Path:
    path = schema_dir()
    if not path.is_dir():
        pytest.skip(
            f"schema directory {path} not found: set NLP_SCHEMA_DIR to the folder with the CRD and "
            "derived schemas (../shared/schemas beside the repository in CI)"
        )
    return path


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def stack() -> dict:
    return load_yaml(ROOT / "stack.yml")


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl (with built-in kustomize) not found: cannot render argocd/ kustomizations")
    return path


def kustomize(directory: Path) -> list[dict]:
    """`kubectl kustomize` with the load restrictor Argo CD is configured with (argocd-cm)."""
    command = [kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kustomize {directory} failed:\n{result.stderr}"
    return load_all(result.stdout)


def offline_bootstrap(tmp_path: Path) -> Path:
    """A copy of argocd/ whose bootstrap uses the local install.yaml stub instead of the remote one."""
    copy = tmp_path / "argocd"
    shutil.copytree(ARGOCD, copy)
    kustomization = copy / "bootstrap" / "kustomization.yaml"
    lines = kustomization.read_text(encoding="utf-8").splitlines()
    remote = [line for line in lines if line.strip().startswith("- " + REMOTE_INSTALL_PREFIX)]
    assert len(remote) == 1, "argocd/bootstrap/kustomization.yaml must list exactly one upstream install.yaml"
    shutil.copy(INSTALL_STUB, copy / "bootstrap" / INSTALL_STUB.name)
    local = [line.replace(line.strip()[2:], INSTALL_STUB.name) if line in remote else line for line in lines]
    kustomization.write_text("\n".join(local) + "\n", encoding="utf-8")
    return copy / "bootstrap"


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in ARGOCD.rglob("kustomization.yaml"))


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    """Every kustomization under argocd/, rendered once: {relative dir: objects}."""
    out = {}
    tmp = tmp_path_factory.mktemp("bootstrap")
    for directory in kustomization_dirs():
        rel = directory.relative_to(ROOT).as_posix()
        source = offline_bootstrap(tmp) if rel == "argocd/bootstrap" else directory
        out[rel] = kustomize(source)
    return out


@pytest.fixture(scope="session")
def faas_cli(tmp_path_factory) -> Path:
    """An executable `faas-cli` that runs the Python stand-in with this interpreter."""
    wrapper = tmp_path_factory.mktemp("bin") / "faas-cli"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n', encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return wrapper


def run_generate(
    cwd: Path,
    faas_cli: Path,
    *,
    shell: str = "sh",
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run the CMP generate script the way argocd-cmp-server does: in the source dir, `sh script`."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FAAS_CLI": str(faas_cli)}
    full_env.update(env or {})
    return subprocess.run(
        [shell, str(GENERATE_SH)], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=60
    )
