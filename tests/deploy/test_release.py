"""`make release TAG=... [FUNCTION=...]` (scripts/release.py) changes image tags and nothing else."""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.deploy.conftest import ROOT

SCRIPT = ROOT / "scripts" / "release.py"


@pytest.fixture
def repo(tmp_path):
    shutil.copy(ROOT / "stack.yml", tmp_path / "stack.yml")
    shutil.copytree(ROOT / "argocd", tmp_path / "argocd")
    return tmp_path


def release(repo, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(repo), *args], capture_output=True, text=True, timeout=30
    )


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_release_all_bumps_every_image_tag_and_keeps_every_other_byte(repo):
    before = (repo / "stack.yml").read_text()
    result = release(repo, "--tag", "0.2.0")
    assert result.returncode == 0, result.stderr
    after = (repo / "stack.yml").read_text()
    assert changed_lines(before, after) == [
        "-    image: ghcr.io/nlp-enrichment/ner-processor:0.1.0",
        "+    image: ghcr.io/nlp-enrichment/ner-processor:0.2.0",
        "-    image: ghcr.io/nlp-enrichment/entity-stats:0.1.0",
        "+    image: ghcr.io/nlp-enrichment/entity-stats:0.2.0",
    ]
    # comments survive (a YAML round trip would drop them)
    assert after.count("#") == before.count("#")
    parsed = yaml.safe_load(after)
    assert {f["image"].rpartition(":")[2] for f in parsed["functions"].values()} == {"0.2.0"}
    # the jobs that run the ner-processor image follow it
    kustomization = yaml.safe_load((repo / "argocd/migrations/kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "ghcr.io/nlp-enrichment/ner-processor", "newTag": "0.2.0"}]


def test_release_of_one_function_leaves_the_others_alone(repo):
    result = release(repo, "--tag", "0.3.0", "--function", "entity-stats")
    assert result.returncode == 0, result.stderr
    functions = yaml.safe_load((repo / "stack.yml").read_text())["functions"]
    assert functions["entity-stats"]["image"].endswith(":0.3.0")
    assert functions["ner-processor"]["image"].endswith(":0.1.0")
    # entity-stats' image is not the jobs' image
    assert "newTag: 0.1.0" in (repo / "argocd/migrations/kustomization.yaml").read_text()


def test_release_is_idempotent(repo):
    assert release(repo, "--tag", "0.2.0").returncode == 0
    snapshot = (repo / "stack.yml").read_text()
    result = release(repo, "--tag", "0.2.0")
    assert result.returncode == 0 and "nothing to change" in result.stdout
    assert (repo / "stack.yml").read_text() == snapshot


def test_dry_run_writes_nothing(repo):
    before = (repo / "stack.yml").read_text()
    result = release(repo, "--tag", "9.9.9", "--dry-run")
    assert result.returncode == 0 and "9.9.9" in result.stdout
    assert (repo / "stack.yml").read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tag", "0.2.0", "--function", "no-such-fn"], "unknown function"),
        (["--tag", "bad tag"], "not a valid image tag"),
        (["--tag=-x"], "not a valid image tag"),
    ],
)
def test_release_rejects_unknown_functions_and_invalid_tags(repo, args, message):
    before = (repo / "stack.yml").read_text()
    result = release(repo, *args)
    assert result.returncode != 0 and message in result.stderr
    assert (repo / "stack.yml").read_text() == before


def test_release_handles_quoted_images_comments_and_registry_ports(tmp_path):
    (tmp_path / "argocd").mkdir()
    (tmp_path / "stack.yml").write_text(
        "provider:\n  name: openfaas\n"
        "functions:\n"
        '  a:\n    image: "registry.local:5000/team/a:1.0.0"  # pinned\n    labels:\n      image: not-this\n'
        "  b:\n    lang: dockerfile\n    image: registry.local:5000/team/b\n"
    )
    assert release(tmp_path, "--tag", "2.0.0").returncode == 0
    text = (tmp_path / "stack.yml").read_text()
    assert '    image: "registry.local:5000/team/a:2.0.0"  # pinned\n' in text
    assert "      image: not-this\n" in text
    assert "    image: registry.local:5000/team/b:2.0.0\n" in text
