"""The code keeps to the project's ruff settings (pyproject.toml), so `make lint` stays green."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_ruff_reports_nothing():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (requirements/dev-extra.txt)")
    result = subprocess.run([ruff, "check", "functions", "devtools", "tests", "bench", "scripts"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
