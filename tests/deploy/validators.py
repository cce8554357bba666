"""Offline validation of Kubernetes objects: CRD kinds against the CRDs' openAPIV3Schema (made strict),
core kinds with kubernetes-validate --strict. Unknown fields are errors everywhere."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# The cluster version the manifests target (kubectl here is v1.32); kubernetes-validate bundles it.
KUBERNETES_VERSION = "1.32.0"

# API groups whose kinds kubernetes-validate knows (everything else must be a CRD of the schema dir).
CORE_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "apiextensions.k8s.io",
}

# CRD files in the schema directory (NLP_SCHEMA_DIR; SOURCES.md there says where each came from).
CRD_FILES = [
    "faas-netes/openfaas.com_functions.yaml",
    "faas-netes/openfaas.com_profiles.yaml",
    "faas-netes/openfaas.com_functioningresses.yaml",
    "argo-cd/application-crd.yaml",
    "argo-cd/appproject-crd.yaml",
    "cloudnative-pg/postgresql.cnpg.io_clusters.yaml",
    "cloudnative-pg/postgresql.cnpg.io_poolers.yaml",
]


def strict(schema: dict) -> dict:
    """Copy of a structural schema where objects with declared properties reject unknown ones, like
    `kubectl apply --validate=strict` does for CRDs (the API server would silently prune them)."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


@cache
def crd_schemas(schema_dir: Path) -> dict[tuple[str, str], dict]:
    """{(apiVersion, kind): strict openAPIV3Schema} for every served version of the known CRDs."""
    out = {}
    for name in CRD_FILES:
        crd = yaml.safe_load((schema_dir / name).read_text(encoding="utf-8"))
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                out[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    return out


def _describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


def validate_metadata(obj: dict) -> list[str]:
    """ObjectMeta of a custom resource, checked strictly through a stand-in core object."""
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata") or {}}
    try:
        kubernetes_validate.validate(probe, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_describe(obj)} metadata: {exc.message}"]
    return []


def validate_object(obj: dict, schema_dir: Path) -> list[str]:
    """Errors of one object (empty list = valid)."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if not (obj.get("metadata") or {}).get("name"):
        return [f"{api_version} {kind} has no metadata.name"]
    schemas = crd_schemas(schema_dir)
    if (api_version, kind) in schemas:
        validator = jsonschema.Draft7Validator(schemas[(api_version, kind)])
        errors = [
            f"{_describe(obj)} {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
        ]
        return errors + validate_metadata(obj)
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group not in CORE_GROUPS:
        return [f"{_describe(obj)}: no schema for custom kind {api_version} {kind} in {schema_dir}"]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{_describe(obj)}: kubernetes-validate has no schema for {api_version} {kind}"]
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(map(str, exc.path))
        return [f"{_describe(obj)} {path}: {exc.message}"]
    return []
