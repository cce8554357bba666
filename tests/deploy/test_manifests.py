"""Every manifest under argocd/ (after kustomize) and every Function that `faas-cli generate` would emit
for stack.yml validates against the real schemas: CRD kinds against the CRDs in the schema directory,
core kinds with kubernetes-validate --strict. Unknown fields are errors."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import ARGOCD, ROOT, kustomization_dirs, load_all, load_yaml, run_generate
from tests.deploy.validators import strict, validate_object


def _all_objects(rendered) -> list[tuple[str, dict]]:
    return [(directory, obj) for directory, objects in rendered.items() for obj in objects]


def test_every_kustomization_under_argocd_renders_objects(rendered):
    assert set(rendered) == {d.relative_to(ROOT).as_posix() for d in kustomization_dirs()}
    for directory, objects in rendered.items():
        assert objects, f"{directory} renders no objects"


def test_every_yaml_under_argocd_is_reached_by_a_kustomization():
    """A manifest nobody renders would silently never reach the cluster."""
    referenced = set()
    for directory in kustomization_dirs():
        kustomization = load_yaml(directory / "kustomization.yaml")
        for entry in kustomization.get("resources", []) + [
            p["path"] for p in kustomization.get("patches", [])
        ]:
            if not entry.startswith("http"):
                referenced.add((directory / entry).resolve())
    plugin_files = {(ARGOCD / "plugins" / "openfaas-stack" / "plugin.yaml").resolve()}  # configMapGenerator
    for path in ARGOCD.rglob("*.yaml"):
        if path.name == "kustomization.yaml" or path.resolve() in plugin_files:
            continue
        assert path.resolve() in referenced, (
            f"{path.relative_to(ROOT)} is not listed in any kustomization.yaml"
        )


def test_argocd_manifests_validate_against_crds_and_core_schemas(rendered, schemas):
    errors = []
    for directory, obj in _all_objects(rendered):
        errors += [f"{directory}: {e}" for e in validate_object(obj, schemas)]
    assert not errors, "\n".join(errors)


def test_function_objects_from_faas_cli_generate_validate_against_the_function_crd(faas_cli, schemas):
    result = run_generate(ROOT, faas_cli)
    assert result.returncode == 0, result.stderr
    functions = load_all(result.stdout)
    assert {f["kind"] for f in functions} == {"Function"}
    errors = [e for obj in functions for e in validate_object(obj, schemas)]
    assert not errors, "\n".join(errors)


def test_validation_rejects_unknown_fields_in_crd_and_core_kinds(schemas):
    """The checks above are only worth something if a typo fails them."""
    function = {
        "apiVersion": "openfaas.com/v1",
        "kind": "Function",
        "metadata": {"name": "x"},
        "spec": {"name": "x", "image": "x:1", "readonly_root_filesystem": True},
    }
    assert any("readonly_root_filesystem" in e for e in validate_object(function, schemas))
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "x"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "x:1", "comand": ["a"]}],
                }
            }
        },
    }
    assert validate_object(job, schemas)
    application = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "x"},
        "spec": {
            "project": "p",
            "destination": {},
            "source": {"repoURL": "r"},
            "syncPolicy": {"automated": {"prune": True, "selfheal": True}},
        },
    }
    assert any("selfheal" in e for e in validate_object(application, schemas))
    cluster = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "x", "labelz": {}},
        "spec": {"instances": 2, "storage": {"size": "1Gi"}},
    }
    assert any("labelz" in e for e in validate_object(cluster, schemas))


def _plugin_schema(schemas):
    return strict(
        json.loads((schemas / "argo-cd" / "configmanagementplugin.derived.schema.json").read_text())
    )


def test_cmp_plugin_yaml_validates_against_the_configmanagementplugin_schema(schemas):
    plugin = load_yaml(ARGOCD / "plugins" / "openfaas-stack" / "plugin.yaml")
    jsonschema.validate(plugin, _plugin_schema(schemas))


def test_cmp_plugin_yaml_reaches_the_sidecar_unchanged(rendered, schemas):
    """The ConfigMap mounted at /home/argocd/cmp-server/config/plugin.yaml carries the validated file."""
    [config_map] = [
        o
        for o in rendered["argocd/bootstrap"]
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("openfaas-stack-cmp")
    ]
    embedded = yaml.safe_load(config_map["data"]["plugin.yaml"])
    assert embedded == load_yaml(ARGOCD / "plugins" / "openfaas-stack" / "plugin.yaml")
    jsonschema.validate(embedded, _plugin_schema(schemas))
    [repo_server] = [
        o
        for o in rendered["argocd/bootstrap"]
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "argocd-repo-server"
    ]
    pod = repo_server["spec"]["template"]["spec"]
    [sidecar] = [c for c in pod["containers"] if c["name"] == "openfaas-stack"]
    assert sidecar["command"] == ["/var/run/argocd/argocd-cmp-server"]
    assert sidecar["securityContext"]["runAsUser"] == 999
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    config_mount = mounts["/home/argocd/cmp-server/config/plugin.yaml"]
    assert config_mount["subPath"] == "plugin.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    # kustomize rewrote the reference to the hashed ConfigMap name
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    sidecar_tmp = "/tmp"  # noqa: S108 - a mount path in a manifest, not a file this test writes
    assert {"/var/run/argocd", "/home/argocd/cmp-server/plugins", sidecar_tmp} <= set(mounts)
    # its own /tmp, not the repo-server's
    assert mounts[sidecar_tmp]["name"] != "tmp"


def test_cmp_schema_check_catches_a_misspelt_field(schemas):
    plugin = load_yaml(ARGOCD / "plugins" / "openfaas-stack" / "plugin.yaml")
    plugin["spec"]["generate"]["comand"] = plugin["spec"]["generate"].pop("command")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(plugin, _plugin_schema(schemas))


def test_stack_yml_validates_against_the_derived_stack_schema(schemas, stack):
    schema = json.loads((schemas / "stack-yml.derived.schema.json").read_text())
    jsonschema.validate(stack, schema)
    broken = json.loads(json.dumps(stack))
    broken["functions"]["ner-processor"]["build-args"] = {"FUNCTION": "ner-processor"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
