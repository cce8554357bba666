"""The Argo CD plugin's generate script: a good stack.yml gives the Function objects on stdout; a broken one
gives a non-zero exit and NOTHING on stdout (faas-cli prints its errors on stdout; with automated prune
an empty or garbage manifest set would delete every function).

The real faas-cli cannot be installed on this machine (GitHub releases are unreachable; PyPI's
`faas-cli` is an unrelated project), so FAAS_CLI points the script at tests/deploy/faas_cli_standin.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from tests.deploy.conftest import ROOT, STANDIN, load_all, run_generate

# dash (Debian sh, no pipefail) and bash; the sidecar image runs busybox sh.
SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]


def write_stack(tmp_path, body: str, env: str | None = None):
    (tmp_path / "stack.yml").write_text(textwrap.dedent(body), encoding="utf-8")
    if env is not None:
        (tmp_path / "env.yml").write_text(textwrap.dedent(env), encoding="utf-8")
    return tmp_path


GOOD = """\
    version: 1.0
    provider:
      name: openfaas
    functions:
      fn-a:
        lang: dockerfile
        handler: .
        image: ghcr.io/example/fn-a:1.2.3
        labels:
          com.openfaas.scale.min: 1
        environment_file: [env.yml]
"""


@pytest.mark.parametrize("shell", SHELLS)
def test_repository_stack_renders_one_function_object_per_function(faas_cli, stack, shell):
    result = run_generate(ROOT, faas_cli, shell=shell)
    assert result.returncode == 0, result.stderr
    objects = load_all(result.stdout)
    assert sorted(o["metadata"]["name"] for o in objects) == sorted(stack["functions"])
    for obj in objects:
        assert obj["apiVersion"] == "openfaas.com/v1" and obj["kind"] == "Function"
        assert obj["metadata"]["namespace"] == "openfaas-fn"
        assert obj["spec"]["image"] == stack["functions"][obj["metadata"]["name"]]["image"]


def test_namespace_and_stack_file_come_from_the_application_plugin_env(faas_cli, tmp_path):
    write_stack(tmp_path, GOOD.replace("environment_file: [env.yml]", ""))
    (tmp_path / "stack.yml").rename(tmp_path / "functions.yml")
    result = run_generate(
        tmp_path,
        faas_cli,
        env={"ARGOCD_ENV_STACK_FILE": "functions.yml", "ARGOCD_ENV_FUNCTION_NAMESPACE": "team-fn"},
    )
    assert result.returncode == 0, result.stderr
    [obj] = load_all(result.stdout)
    assert obj["metadata"]["namespace"] == "team-fn"


BROKEN = {
    "invalid YAML": ("functions: [unclosed\n", None),
    "wrong provider": (GOOD.replace("name: openfaas", "name: faas"), "environment: {}\n"),
    "wrong version": (GOOD.replace("version: 1.0", "version: 2.0"), "environment: {}\n"),
    "missing environment file": (GOOD, None),
    "list where a map belongs": (
        GOOD.replace("com.openfaas.scale.min: 1", "- not-a-map"),
        "environment: {}\n",
    ),
    "no functions": ("provider:\n  name: openfaas\nfunctions: {}\n", None),
    "function without image": (GOOD.replace("image: ghcr.io/example/fn-a:1.2.3", ""), "environment: {}\n"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_stack_exits_non_zero_with_nothing_on_stdout(faas_cli, tmp_path, case):
    body, env = BROKEN[case]
    write_stack(tmp_path, body, env)
    result = run_generate(tmp_path, faas_cli)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "openfaas-stack:" in result.stderr


def test_faas_cli_error_text_printed_on_stdout_is_moved_to_stderr(faas_cli, tmp_path):
    write_stack(tmp_path, GOOD.replace("name: openfaas", "name: faas"), "environment: {}\n")
    result = run_generate(tmp_path, faas_cli)
    assert result.returncode == 1 and result.stdout == ""
    assert 'only valid "provider.name"' in result.stderr


def test_missing_stack_file_or_faas_cli_fails_cleanly(faas_cli, tmp_path):
    result = run_generate(tmp_path, faas_cli)
    assert result.returncode != 0 and result.stdout == "" and "not found" in result.stderr
    write_stack(tmp_path, GOOD, "environment: {}\n")
    result = run_generate(tmp_path, tmp_path / "no-such-faas-cli")
    assert result.returncode != 0 and result.stdout == "" and "faas-cli not found" in result.stderr


# --- the stand-in itself behaves like faas-cli generate (docs/contract.md) -------------------------


def standin(tmp_path, *args, env=None):
    return subprocess.run(
        [sys.executable, str(STANDIN), "generate", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env or {"PATH": "/usr/bin:/bin"},
        timeout=30,
    )


def test_standin_merges_env_files_stringifies_and_maps_every_field(tmp_path):
    write_stack(
        tmp_path,
        """\
        provider:
          name: openfaas
          gateway: http://127.0.0.1:8080
        functions:
          fn:
            lang: dockerfile
            handler: .
            fprocess: ignored
            image: registry.local:5000/team/fn
            build_args: {FUNCTION: fn}
            unknown_key: silently ignored
            environment: {INLINE: yes, SHARED: inline, RATIO: 0.10}
            environment_file: [a.yml, b.yml]
            labels: {com.openfaas.scale.max: 20, canary: true}
            annotations: {topic: payments}
            limits: {memory: 256Mi, cpu: "1"}
            requests: {memory: 128Mi}
            constraints: ["node.platform.os == linux"]
            secrets: [db-dsn]
            readonly_root_filesystem: true
            namespace: ignored-too
    """,
    )
    (tmp_path / "a.yml").write_text("environment:\n  SHARED: a\n  FROM_A: 1\n  LATER: a\n")
    (tmp_path / "b.yml").write_text("environment:\n  LATER: b\n")
    result = standin(tmp_path, "-f", "stack.yml", "-n", "prod-fn")
    assert result.returncode == 0, result.stdout
    [obj] = load_all(result.stdout)
    assert obj == {
        "apiVersion": "openfaas.com/v1",
        "kind": "Function",
        "metadata": {"name": "fn", "namespace": "prod-fn"},
        "spec": {
            "name": "fn",
            "image": "registry.local:5000/team/fn:latest",
            "labels": {"canary": "true", "com.openfaas.scale.max": "20"},
            "annotations": {"topic": "payments"},
            "environment": {
                "FROM_A": "1",
                "INLINE": "yes",
                "LATER": "b",
                "RATIO": "0.10",
                "SHARED": "inline",
            },
            "limits": {"memory": "256Mi", "cpu": "1"},
            "requests": {"memory": "128Mi"},
            "constraints": ["node.platform.os == linux"],
            "secrets": ["db-dsn"],
            "readOnlyRootFilesystem": True,
        },
    }


def test_standin_substitutes_only_braced_variables_with_defaults(tmp_path):
    write_stack(
        tmp_path,
        """\
        provider: {name: openfaas}
        functions:
          fn:
            image: ${REGISTRY:-ghcr.io/default}/fn:${TAG}
            environment: {LITERAL: $HOME}
    """,
    )
    result = standin(tmp_path, env={"PATH": "/usr/bin:/bin", "TAG": "9.9.9", "HOME": "/root"})
    [obj] = load_all(result.stdout)
    assert obj["spec"]["image"] == "ghcr.io/default/fn:9.9.9"
    assert obj["spec"]["environment"] == {"LITERAL": "$HOME"}
    result = standin(tmp_path, "--envsubst=false")
    assert yaml.safe_load(result.stdout)["spec"]["image"] == "${REGISTRY:-ghcr.io/default}/fn:${TAG}"


def test_standin_reports_errors_on_stdout_with_exit_one(tmp_path):
    write_stack(
        tmp_path, "provider: {name: openfaas}\nfunctions:\n  fn:\n    image: x:1\n    secrets: notalist\n"
    )
    result = standin(tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("Error: ") and result.stderr == ""


def test_standin_renders_a_missing_image_as_colon_latest_with_exit_zero(tmp_path):
    write_stack(tmp_path, "provider: {name: openfaas}\nfunctions:\n  fn:\n    lang: dockerfile\n")
    result = standin(tmp_path)
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout)["spec"]["image"] == ":latest"
