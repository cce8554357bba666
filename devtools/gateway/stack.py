"""stack.yml as faas-cli reads it: each function's image, merged environment, labels, secrets, sizing."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Settings that only make sense inside the image: locally the server picks its own port and host.
IMAGE_ONLY = frozenset({"PORT", "HOST", "fprocess", "mode", "upstream_url", "SECRETS_DIR", "FUNCTION_NAME"})


@dataclass(frozen=True)
class FunctionSpec:
    """One function of stack.yml, as faas-cli reads it (environment_file merged, inline wins)."""

    name: str
    image: str
    environment: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]
    namespace: str
    secrets: tuple[str, ...] = ()
    limits: dict[str, str] | None = None
    requests: dict[str, str] | None = None
    constraints: tuple[str, ...] = ()
    read_only_root_filesystem: bool = False

    def local_environment(self, overrides: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for a local process: without :data:`IMAGE_ONLY`, ``overrides`` on top."""
        env = {k: v for k, v in self.environment.items() if k not in IMAGE_ONLY}
        env.update(overrides or {})
        return env


def _substitute(text: str, environ: dict[str, str]) -> str:
    return _VAR.sub(lambda m: environ.get(m.group(1), m.group(2) or ""), text)


def read_stack(stack_path: Path, environ: dict[str, str] | None = None) -> list[FunctionSpec]:
    """Functions of a stack.yml with their merged environment (environment_file first, inline wins),
    like ``faas-cli``; ``${VAR}`` / ``${VAR:-default}`` are substituted from ``environ`` (default: the
    process environment). Raises ValueError when the file has no functions."""
    env = dict(os.environ if environ is None else environ)
    stack = yaml.safe_load(_substitute(stack_path.read_text(encoding="utf-8"), env)) or {}
    functions = stack.get("functions") or {}
    if not functions:
        raise ValueError(f"{stack_path} defines no functions")
    default_ns = (stack.get("provider") or {}).get("namespace") or "openfaas-fn"
    specs = []
    for name, spec in functions.items():
        merged: dict[str, str] = {}
        for env_file in spec.get("environment_file") or []:
            data = yaml.safe_load((stack_path.parent / env_file).read_text(encoding="utf-8")) or {}
            merged.update({k: _stringify(v) for k, v in (data.get("environment") or {}).items()})
        merged.update({k: _stringify(v) for k, v in (spec.get("environment") or {}).items()})
        specs.append(FunctionSpec(
            name=name, image=spec.get("image", ""), environment=merged,
            labels={k: _stringify(v) for k, v in (spec.get("labels") or {}).items()},
            annotations={k: _stringify(v) for k, v in (spec.get("annotations") or {}).items()},
            namespace=spec.get("namespace") or default_ns,
            secrets=tuple(spec.get("secrets") or ()),
            limits=_resources(spec.get("limits")), requests=_resources(spec.get("requests")),
            constraints=tuple(spec.get("constraints") or ()),
            read_only_root_filesystem=bool(spec.get("readonly_root_filesystem", False))))
    return specs


def _resources(value) -> dict[str, str] | None:
    if not value:
        return None
    return {k: _stringify(v) for k, v in value.items() if k in ("memory", "cpu")}


def _stringify(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
