"""Local state (venv, PostgreSQL data + secrets, logs, reports, caches) lives where `faas-cli build`
does not copy it: after `make run` (devtools.up) and a test run in a copy of this checkout, what
`faas-cli build --shrinkwrap` would copy per function stays under 50 MB and holds no database file or
secret."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from devtools.gateway import read_stack
from devtools.processes import LOCAL_DIR, REPO, free_port
from tests.gateway.shrinkwrap import copied_files, leaks

LIMIT_BYTES = 50 * 1024 * 1024
SECRET_NAMES = {s for spec in read_stack(REPO / "stack.yml") for s in spec.secrets} | {"migrations-dsn"}


def test_shrinkwrap_reproduction_skips_build_and_template_and_follows_directory_links(tmp_path):
    (tmp_path / "build" / "local" / "pg").mkdir(parents=True)
    (tmp_path / "build" / "local" / "pg" / "PG_VERSION").write_text("15")
    (tmp_path / "template").mkdir()
    (tmp_path / "template" / "t.yml").write_text("language: dockerfile")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "big.bin").write_bytes(b"x" * 1000)
    (tmp_path / "venv-link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ner-writer-dsn").write_text("host=x password=y")
    files = dict(copied_files(tmp_path))
    assert files == {"elsewhere/big.bin": 1000, "venv-link/big.bin": 1000, "secrets/ner-writer-dsn": 17}
    assert leaks(list(files.items()), SECRET_NAMES) == ["secrets/ner-writer-dsn"]


def test_default_local_state_and_venv_live_under_build():
    assert LOCAL_DIR.resolve().is_relative_to((REPO / "build").resolve()) or os.environ.get("NLP_LOCAL_DIR")
    venv = re.search(r"^VENV \?= (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    local = re.search(r"^LOCAL \?= (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    assert venv.startswith("build/") and local.endswith("build/local)")


@pytest.mark.integration
@pytest.mark.slow
def test_after_make_run_and_tests_shrinkwrap_copies_under_50_mb_and_no_database_or_secret():
    # Not pytest's tmp_path: it is 0700 root, so the postgres user could not keep its data under the
    # checkout's build/local (the cluster would fall back to /tmp and the test would prove nothing).
    top = Path(tempfile.mkdtemp(prefix="nlp-shrinkwrap-"))
    top.chmod(0o755)
    checkout = top / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        if (REPO / rel).is_file():
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, checkout / rel)
    env = {k: v for k, v in os.environ.items() if k not in ("NLP_LOCAL_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(checkout)
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = "build/cache/hypothesis"  # what the Makefile exports
    run = subprocess.run([sys.executable, "-m", "devtools.up", "--no-serve", "--port", str(free_port())],
                         cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert re.search(r"\d+ persisted on the primary, 0 failed", run.stdout), run.stdout[-2000:]
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                                "tests/unit/test_entity_stats_params.py"], cwd=checkout, env=env,
                               capture_output=True, text=True, timeout=300)
        assert tests.returncode == 0, tests.stdout[-2000:]
        subprocess.run([sys.executable, "-m", "ruff", "check", "devtools"], cwd=checkout, env=env,
                       capture_output=True, timeout=120)
        # the run's state is there (data, secrets, logs), and is not copied
        assert (checkout / "build" / "local" / "pg" / "data" / "primary" / "PG_VERSION").is_file()
        assert (checkout / "build" / "local" / "pg" / "secrets" / "ner-writer-dsn").is_file()
        files = copied_files(checkout)
        total = sum(size for _, size in files)
        print(f"\nshrinkwrap would copy {len(files)} files, {total / 1e6:.1f} MB per function "
              f"(build/local holds {_du(checkout / 'build') / 1e6:.1f} MB)")
        assert total < LIMIT_BYTES
        assert leaks(files, SECRET_NAMES) == []
    finally:
        subprocess.run([sys.executable, "-m", "devtools.pgcluster", "destroy", "--dir",
                        str(checkout / "build" / "local" / "pg")], cwd=checkout, env=env, capture_output=True,
                       timeout=120)
        shutil.rmtree(top, ignore_errors=True)


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])
