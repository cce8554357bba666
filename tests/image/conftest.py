"""The function images, built by `make image` (scripts/image/build.py) and run the way OpenFaaS runs them
(scripts/image/container.py says exactly how, and why the host network namespace). Every test here is
marked `image` and `slow`, and skips cleanly (with the reason) where neither Docker nor podman works.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.image import build as image_build
from scripts.image.build import ROOT


def pytest_configure(config):
    config.addinivalue_line("markers", "image: builds and runs the function images (podman or Docker)")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.image)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def engine() -> image_build.Engine:
    found = image_build.detect_engine()
    if found is None:
        pytest.skip("no container engine (Docker daemon or podman): apt-get install podman buildah runc mmdebstrap")
    return found


@pytest.fixture(scope="session")
def built(engine) -> dict[str, dict]:
    """Both images, built (or confirmed up to date from the layer cache) once per session."""
    try:
        return image_build.build(engine=engine, ca_bundle=image_build.default_ca_bundle())
    except image_build.ImageError as exc:
        pytest.fail(f"make image failed: {exc}")


@pytest.fixture(scope="session")
def stack() -> dict:
    return yaml.safe_load((ROOT / "stack.yml").read_text(encoding="utf-8"))
