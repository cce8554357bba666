"""Build every function image of stack.yml from the top-level Dockerfile (`make image`).

    python -m scripts.image.build [--function NAME ...] [--ca-bundle PATH|none] [--registry-tag]

* Engine: Docker where a Docker engine answers, podman (rootful, overlay storage or vfs where overlay
  fails, chroot isolation, runc; scripts/image/containers/*.conf) otherwise.
* Build args: exactly stack.yml's `build_args` per function (what `faas-cli build` passes), plus
  PYTHON_IMAGE / WATCHDOG_IMAGE below.
* Bases: the official `python:3.11-slim-bookworm` and `ghcr.io/openfaas/of-watchdog:0.11.6` when the
  engine has them or can pull them. Otherwise (no container registry reachable) a python3 base
  bootstrapped from Debian bookworm packages with mmdebstrap (tarball cached in
  $NLP_IMAGE_CACHE, default ~/.cache/nlp-enrichment) and a PLACEHOLDER watchdog stage. The image labels
  record both; an image with the placeholder watchdog is never tagged with stack.yml's registry name.
  PYTHON_IMAGE / WATCHDOG_IMAGE in the environment override the choice.
* CA bundle (TLS-intercepting proxies): given to the build as the build secret `build-ca` (mounted for
  one RUN, never in a layer). Default: $NLP_BUILD_CA, else pip's configured `cert` / $PIP_CERT, else none.

Images are tagged `localhost/nlp-enrichment/<function>:local` (and, with --registry-tag and the
official watchdog, stack.yml's `image:`). Exit status: 0 built, 1 a build failed, 2 refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "scripts" / "image"
OFFICIAL_PYTHON = "docker.io/library/python:3.11-slim-bookworm"
OFFICIAL_WATCHDOG = "ghcr.io/openfaas/of-watchdog:0.11.6"
LOCAL_PYTHON = "localhost/nlp-enrichment/python-base:bookworm"
PLACEHOLDER_WATCHDOG = "localhost/nlp-enrichment/of-watchdog-placeholder:not-for-release"
LOCAL_REPO = "localhost/nlp-enrichment"
LOCAL_TAG = "local"
WATCHDOG_LABEL = "com.nlp-enrichment.watchdog-image"
PYTHON_LABEL = "com.nlp-enrichment.python-image"
# mmdebstrap: the smallest Debian that runs the project's venv (python3 3.11 + venv/ensurepip, CA
# certificates for pip). Documentation is left out of the base, it is never read in a container.
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = "python3,python3-venv,ca-certificates"
DEBIAN_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")


class ImageError(RuntimeError):
    """A build step failed; the message says which and why."""


class RefusedError(ImageError):
    """The image must not get a registry tag (placeholder watchdog stage)."""


def log(message: str) -> None:
    print(f"image: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    path = Path(os.environ.get("NLP_IMAGE_CACHE") or Path.home() / ".cache" / "nlp-enrichment")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Engine:
    """A container engine CLI (`docker` or `podman`) with the environment it needs."""

    name: str
    env: dict = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        return [self.name, *args]

    def run(self, *args: str, check: bool = True, capture: bool = True, timeout: float | None = None,
            ) -> subprocess.CompletedProcess:
        """Run `<engine> args...`. Raises ImageError (with the engine's stderr) when check and it fails."""
        result = subprocess.run(self.command(*args), env={**os.environ, **self.env}, text=True,
                                capture_output=capture, timeout=timeout)
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip()[-2000:] if capture else ""
            raise ImageError(f"{self.name} {' '.join(args[:2])} failed (exit {result.returncode}): {detail}")
        return result

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict:
        return json.loads(self.run("image", "inspect", ref).stdout)[0]

    def labels(self, ref: str) -> dict:
        info = self.inspect(ref)
        return (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}

    def size_bytes(self, ref: str) -> int:
        return int(self.inspect(ref)["Size"])

    def try_pull(self, ref: str) -> bool:
        """True if the engine has `ref` or could pull it within a minute (fails fast without DNS)."""
        if self.has_image(ref):
            return True
        try:
            return self.run("pull", "-q", ref, check=False, timeout=60).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    @property
    def build_isolation(self) -> list[str]:
        # chroot: RUN steps without a new user/network namespace setup (works in CI runners). Docker
        # image format: what `docker build`/faas-cli produce, and it keeps the HEALTHCHECK (OCI drops it).
        return ["--isolation", "chroot", "--format", "docker"] if self.name == "podman" else []


def podman_envs() -> list[dict]:
    """Environments to try for podman, best first: the repository's settings with overlay storage, then
    with vfs storage (scripts/image/containers/). Settings already in the environment are kept as is."""
    env = {}
    if not os.environ.get("CONTAINERS_CONF"):
        env["CONTAINERS_CONF"] = str(HERE / "containers" / "containers.conf")
    if os.environ.get("CONTAINERS_STORAGE_CONF"):
        return [env]
    return [{**env, "CONTAINERS_STORAGE_CONF": str(HERE / "containers" / name)}
            for name in ("storage.conf", "storage-vfs.conf")]


def detect_engine(preferred: str | None = None) -> Engine | None:
    """Docker if its engine answers, else podman if installed, else None. NLP_CONTAINER_ENGINE forces one."""
    preferred = preferred or os.environ.get("NLP_CONTAINER_ENGINE") or None
    candidates = [preferred] if preferred else ["docker", "podman"]
    for name in candidates:
        if not shutil.which(name):
            continue
        for env in podman_envs() if name == "podman" else [{}]:
            engine = Engine(name, env)
            try:
                if engine.run("info", check=False, timeout=30).returncode == 0:
                    return engine
            except subprocess.TimeoutExpired:
                continue
    return None


def stack_functions(stack_file: Path = ROOT / "stack.yml") -> dict[str, dict]:
    """{function: {"image": str, "build_args": {str: str}}} from stack.yml, values as faas-cli passes them."""
    stack = yaml.safe_load(stack_file.read_text(encoding="utf-8"))
    out = {}
    for name, fn in (stack.get("functions") or {}).items():
        args = {k: ("true" if v is True else "false" if v is False else str(v))
                for k, v in (fn.get("build_args") or {}).items()}
        out[name] = {"image": fn["image"], "build_args": args}
    return out


def local_ref(function: str) -> str:
    return f"{LOCAL_REPO}/{function}:{LOCAL_TAG}"


def bootstrap_base_tarball() -> Path:
    """The cached Debian bookworm rootfs tarball (mmdebstrap, ~40-70 s the first time)."""
    tarball = cache_dir() / f"debian-{DEBIAN_SUITE}-python3.tar"
    if tarball.is_file():
        return tarball
    if not shutil.which("mmdebstrap"):
        raise ImageError("no registry base image and no mmdebstrap to bootstrap one (apt-get install mmdebstrap)")
    partial = tarball.with_suffix(".partial.tar")
    command = ["mmdebstrap", "--variant=minbase", f"--include={DEBIAN_PACKAGES}",
               *[f"--dpkgopt=path-exclude={p}" for p in DEBIAN_EXCLUDES], DEBIAN_SUITE, str(partial)]
    log(f"bootstrapping a Debian {DEBIAN_SUITE} python3 base: {' '.join(command)}")
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ImageError(f"mmdebstrap failed: {result.stderr.strip()[-2000:]}")
    partial.rename(tarball)
    log(f"base tarball {tarball} ({tarball.stat().st_size // 2**20} MB) in {time.monotonic() - started:.0f} s")
    return tarball


def ensure_python_base(engine: Engine) -> str:
    """The PYTHON_IMAGE build arg: $PYTHON_IMAGE, else the official image, else the local bookworm base."""
    if os.environ.get("PYTHON_IMAGE"):
        return os.environ["PYTHON_IMAGE"]
    if engine.try_pull(OFFICIAL_PYTHON):
        return OFFICIAL_PYTHON
    if not engine.has_image(LOCAL_PYTHON):
        tarball = bootstrap_base_tarball()
        engine.run("import", "--change", "CMD [\"python3\"]", "--change", "ENV LANG=C.UTF-8",
                   str(tarball), LOCAL_PYTHON)
        log(f"imported {LOCAL_PYTHON} from {tarball}")
    return LOCAL_PYTHON


def ensure_watchdog(engine: Engine, python_image: str) -> str:
    """The WATCHDOG_IMAGE build arg: $WATCHDOG_IMAGE, else the official release, else the placeholder."""
    if os.environ.get("WATCHDOG_IMAGE"):
        return os.environ["WATCHDOG_IMAGE"]
    if engine.try_pull(OFFICIAL_WATCHDOG):
        return OFFICIAL_WATCHDOG
    context = HERE / "placeholder-watchdog"
    engine.run("build", *engine.build_isolation, "--build-arg", f"PYTHON_IMAGE={python_image}",
               "-t", PLACEHOLDER_WATCHDOG, str(context))
    log(f"no of-watchdog image reachable: using the PLACEHOLDER {PLACEHOLDER_WATCHDOG} (local tests only)")
    return PLACEHOLDER_WATCHDOG


def parse_ca_bundle(value: str) -> Path | None:
    return None if value == "none" else Path(value)


def default_ca_bundle() -> Path | None:
    """$NLP_BUILD_CA, else $PIP_CERT, else pip's configured `cert`, else None ("none" disables)."""
    for candidate in (os.environ.get("NLP_BUILD_CA"), os.environ.get("PIP_CERT")):
        if candidate:
            return parse_ca_bundle(candidate)
    result = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.cert"],
                            capture_output=True, text=True)
    value = result.stdout.strip()
    return Path(value) if result.returncode == 0 and value else None


def build_command(engine: Engine, function: str, build_args: dict[str, str], *, python_image: str,
                  watchdog_image: str, ca_bundle: Path | None) -> list[str]:
    """The engine's build argv for one function (Dockerfile at the repository root, context = root)."""
    args = ["build", *engine.build_isolation, "-f", str(ROOT / "Dockerfile"), "-t", local_ref(function)]
    for key, value in {**build_args, "PYTHON_IMAGE": python_image, "WATCHDOG_IMAGE": watchdog_image}.items():
        args += ["--build-arg", f"{key}={value}"]
    if ca_bundle is not None:
        args += ["--secret", f"id=build-ca,src={ca_bundle}"]
    return [*args, str(ROOT)]


def tag_for_registry(engine: Engine, function: str, registry_ref: str) -> None:
    """Tag the local image with stack.yml's registry name. Raises RefusedError when it was built with the
    placeholder watchdog (or from a non-official watchdog image): such an image must never be published."""
    watchdog = engine.labels(local_ref(function)).get(WATCHDOG_LABEL, "")
    if watchdog != OFFICIAL_WATCHDOG:
        raise RefusedError(f"refusing to tag {registry_ref}: {local_ref(function)} was built with watchdog stage "
                           f"{watchdog or '(unknown)'}, not {OFFICIAL_WATCHDOG}; it is for local tests only")
    engine.run("tag", local_ref(function), registry_ref)


def build(functions: list[str] | None = None, *, engine: Engine | None = None, ca_bundle: Path | None = None,
          registry_tag: bool = False) -> dict[str, dict]:
    """Build the images; returns {function: {"ref", "seconds", "size_bytes"}}. Raises ImageError."""
    engine = engine or detect_engine()
    if engine is None:
        raise ImageError("no container engine: install podman (apt-get install podman buildah runc) or Docker")
    stack = stack_functions()
    unknown = sorted(set(functions or ()) - set(stack))
    if unknown:
        raise ImageError(f"not in stack.yml: {unknown}")
    python_image = ensure_python_base(engine)
    watchdog_image = ensure_watchdog(engine, python_image)
    if ca_bundle is not None and not ca_bundle.is_file():
        raise ImageError(f"CA bundle {ca_bundle} does not exist")
    results = {}
    for function in functions or sorted(stack):
        command = build_command(engine, function, stack[function]["build_args"], python_image=python_image,
                                watchdog_image=watchdog_image, ca_bundle=ca_bundle)
        log(f"building {local_ref(function)} with {engine.name} (base {python_image}, watchdog {watchdog_image})")
        started = time.monotonic()
        result = engine.run(*command, check=False, capture=False)
        if result.returncode != 0:
            raise ImageError(f"building {function} failed (exit {result.returncode}); the build output is above")
        seconds = time.monotonic() - started
        results[function] = {"ref": local_ref(function), "seconds": round(seconds, 1),
                             "size_bytes": engine.size_bytes(local_ref(function))}
        log(f"{local_ref(function)}: {results[function]['size_bytes'] / 1e6:.0f} MB in {seconds:.0f} s")
        if registry_tag:
            tag_for_registry(engine, function, stack[function]["image"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--function", action="append", help="build only this function (repeatable)")
    parser.add_argument("--ca-bundle", help="CA bundle for pip in the build ('none': no bundle)")
    parser.add_argument("--registry-tag", action="store_true",
                        help="also tag stack.yml's image name (refused for placeholder-watchdog images)")
    parser.add_argument("--engine", choices=("docker", "podman"))
    args = parser.parse_args(argv)
    ca_bundle = default_ca_bundle() if not args.ca_bundle else parse_ca_bundle(args.ca_bundle)
    try:
        engine = detect_engine(args.engine)
        results = build(args.function, engine=engine, ca_bundle=ca_bundle, registry_tag=args.registry_tag)
    except RefusedError as exc:
        log(str(exc))
        return 2
    except ImageError as exc:
        log(str(exc))
        return 1
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
