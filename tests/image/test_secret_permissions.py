"""Secrets as the function's uid sees them: a mounted file it may not read is reported as "unreadable"
(never as "not set"). Runs the real settings code in a child process as an unprivileged uid; the
container-level twin is test_function_images.py::test_an_unreadable_secret_is_reported_as_unreadable."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from scripts.image.container import APP_UID, ROOT

# settings.py needs the standard library only. The system interpreter, because this venv's base
# interpreter may live where uid 10001 cannot go (e.g. under /root/.pyenv).
PYTHON = "/usr/bin/python3"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to uid 10001"),
    pytest.mark.skipif(not os.access(PYTHON, os.X_OK), reason=f"no {PYTHON}"),
]

PROBE = """
from functions.runtime.settings import SettingsError, read_secret
try:
    print("value:", read_secret("ner-writer-dsn"))
except SettingsError as exc:
    print("error:", exc)
"""


def read_as_app_user(secrets_dir) -> str:
    def drop():
        os.setgid(APP_UID)
        os.setuid(APP_UID)

    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "SECRETS_DIR": str(secrets_dir), "PYTHONPATH": str(ROOT),
           "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env,
                            cwd="/", preexec_fn=drop)  # noqa: PLW1509 (no threads in the child yet)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def secrets_dir():
    # Not pytest's tmp_path: its 0700 parents are not traversable by uid 10001, as a mount point is.
    path = Path(tempfile.mkdtemp(prefix="nlp-secret-perm-"))
    path.chmod(0o755)  # noqa: S103 (a secrets mount point: traversable, the files decide who reads)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_root_owned_0600_secret_is_reported_unreadable_without_its_content(secrets_dir):
    path = secrets_dir / "ner-writer-dsn"
    path.write_text("host=db password=hunter2-canary\n")
    path.chmod(0o600)
    out = read_as_app_user(secrets_dir)
    assert out.startswith("error: secret ner-writer-dsn is unreadable") and str(path) in out, out
    assert "hunter2-canary" not in out


def test_the_same_secret_readable_by_the_function_user_is_read(secrets_dir):
    path = secrets_dir / "ner-writer-dsn"
    path.write_text("host=db password=x\n")
    os.chown(path, APP_UID, APP_UID)
    path.chmod(0o400)
    assert read_as_app_user(secrets_dir) == "value: host=db password=x"
