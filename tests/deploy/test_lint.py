"""Linters CI runs on the deployment files: hadolint (nothing above "info"), yamllint on every YAML file,
the GitHub workflow schema, shellcheck on the scripts the image build and the CMP run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import GENERATE_SH, ROOT

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.skip(f"{name} not installed (requirements/dev.txt)")
    return path


def run(*command, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_hadolint_reports_nothing_above_info_on_the_dockerfile():
    result = run(tool("hadolint"), "--no-fail", "--format", "json", "Dockerfile")
    findings = json.loads(result.stdout or "[]")
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in serious)


def test_yamllint_passes_on_every_yaml_file_of_the_repository():
    result = run(tool("yamllint"), "--strict", "--format", "parsable", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_github_workflows_match_the_workflow_schema():
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows, "no workflows"
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflows)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_workflow_runs_the_projects_ci_entry_point():
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "bash .ci/run" in text


def test_shell_scripts_pass_shellcheck():
    shellcheck = tool("shellcheck")
    scripts = sorted((ROOT / "scripts" / "image").glob("*.sh"))
    result = run(shellcheck, *map(str, scripts))
    assert result.returncode == 0, result.stdout
    # the CMP script runs under busybox sh in the sidecar: POSIX sh, not bash
    result = run(shellcheck, "--shell=sh", str(GENERATE_SH))
    assert result.returncode == 0, result.stdout
