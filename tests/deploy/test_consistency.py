"""stack.yml, functions/, the Dockerfile, the CMP plugin, the Argo CD Applications and the migration jobs
describe the same system: a function missing from any of them fails here."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.deploy.conftest import ARGOCD, GENERATE_SH, ROOT, load_yaml

SCRIPT_RE = re.compile(r"(\./)?argocd/plugins/openfaas-stack/generate\.sh")


def dockerfile_stages(text: str) -> list[tuple[str, list[str]]]:
    """[(stage name, its instruction lines with continuations joined)]; the pre-FROM part is ''."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[tuple[str, list[str]]] = [("", [])]
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            stages.append((match.group(1) or "", []))
        stages[-1][1].append(line)
    return stages


def dockerfile_args(lines: list[str]) -> dict[str, str | None]:
    args = {}
    for line in lines:
        match = re.match(r"ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", line)
        if match:
            args[match.group(1)] = match.group(2)
    return args


def dockerfile_env(lines: list[str]) -> dict[str, str]:
    env = {}
    for line in lines:
        if line.upper().startswith("ENV "):
            for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', line[4:]):
                env[key] = value.strip('"')
    return env


def consistency_problems(root: Path) -> list[str]:
    """Every disagreement between the places that name the functions (empty list = consistent)."""
    problems = []
    stack = load_yaml(root / "stack.yml")
    functions = stack["functions"]
    folders = {p.parent.name for p in (root / "functions").glob("*/handler.py")}
    if set(functions) != folders:
        problems.append(
            f"stack.yml functions {sorted(functions)} != folders with handler.py {sorted(folders)}"
        )

    stages = dict(dockerfile_stages((root / "Dockerfile").read_text(encoding="utf-8")))
    final_args = dockerfile_args(stages["runtime"])
    declared = set(dockerfile_args(stages[""])) | set(dockerfile_args(stages["builder"])) | set(final_args)
    for name, fn in functions.items():
        build_args = fn.get("build_args") or {}
        if build_args.get("FUNCTION") != name:
            problems.append(f"{name}: build_args.FUNCTION is {build_args.get('FUNCTION')!r}, not {name!r}")
        unknown = set(build_args) - declared
        if unknown:
            problems.append(f"{name}: build_args {sorted(unknown)} are not ARGs of the Dockerfile")
        if (fn.get("environment") or {}).get("FUNCTION_NAME", name) != name:
            problems.append(f"{name}: environment FUNCTION_NAME disagrees with the function's name")
        if fn.get("lang") != "dockerfile" or fn.get("handler") not in (".", "./"):
            problems.append(
                f"{name}: must be built by the top-level Dockerfile (lang: dockerfile, handler: .)"
            )
    # The function is selected by the FUNCTION build arg: the builder checks it, the runtime exports it.
    if "FUNCTION" not in dockerfile_args(stages["builder"]) or "FUNCTION" not in final_args:
        problems.append("Dockerfile: FUNCTION must be an ARG of both the builder and the runtime stage")
    if dockerfile_env(stages["runtime"]).get("FUNCTION_NAME") != "${FUNCTION}":
        problems.append("Dockerfile: runtime stage must set ENV FUNCTION_NAME=${FUNCTION}")
    if not any("install-app.sh" in line and '"${FUNCTION}"' in line for line in stages["builder"]):
        problems.append('Dockerfile: builder stage must run scripts/image/install-app.sh with "${FUNCTION}"')

    # The CMP renders exactly this stack file.
    plugin = load_yaml(root / "argocd" / "plugins" / "openfaas-stack" / "plugin.yaml")
    command = " ".join(plugin["spec"]["generate"]["command"] + plugin["spec"]["generate"].get("args", []))
    if not SCRIPT_RE.search(command):
        problems.append(f"plugin.yaml generate command does not run generate.sh: {command!r}")
    script = (root / "argocd" / "plugins" / "openfaas-stack" / "generate.sh").read_text(encoding="utf-8")
    if "STACK_FILE:-stack.yml" not in script:
        problems.append("generate.sh: the default stack file must be stack.yml")
    if plugin["spec"].get("discover", {}).get("fileName") not in ("./stack.yml", "stack.yml"):
        problems.append("plugin.yaml: discover.fileName must be stack.yml")
    app = load_yaml(root / "argocd" / "apps" / "functions.yaml")
    plugin_sources = [
        s for s in app["spec"].get("sources", [app["spec"].get("source")]) if s and "plugin" in s
    ]
    expected_plugin = plugin["metadata"]["name"] + (
        f"-{plugin['spec']['version']}" if plugin["spec"].get("version") else ""
    )
    if len(plugin_sources) != 1:
        problems.append("argocd/apps/functions.yaml: exactly one source must use the openfaas-stack plugin")
    else:
        source = plugin_sources[0]
        if source["plugin"].get("name") != expected_plugin:
            problems.append(
                f"functions app uses plugin {source['plugin'].get('name')!r}, not {expected_plugin!r}"
            )
        env = {e["name"]: e["value"] for e in source["plugin"].get("env", [])}
        stack_file = env.get("STACK_FILE", "stack.yml")
        if (root / source.get("path", ".") / stack_file).resolve() != (root / "stack.yml").resolve():
            problems.append(f"functions app renders {source.get('path')}/{stack_file}, not stack.yml")

    # Migration/retention jobs and the rollup worker run the ner-processor image of the same release.
    writer_repo, _, writer_tag = functions["ner-processor"]["image"].rpartition(":")
    for folder in ("migrations", "rollups"):
        kustomization = load_yaml(root / "argocd" / folder / "kustomization.yaml")
        pins = {i["name"]: i.get("newTag") for i in kustomization.get("images", [])}
        if pins.get(writer_repo) != writer_tag:
            problems.append(
                f"argocd/{folder} pins {writer_repo}:{pins.get(writer_repo)}, stack.yml has {writer_tag}"
            )
    return problems


def test_stack_functions_folders_dockerfile_and_cmp_agree():
    assert consistency_problems(ROOT) == []


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    for name in ("stack.yml", "Dockerfile", "env.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "argocd", tmp_path / "argocd")
    for handler in (ROOT / "functions").glob("*/handler.py"):
        (tmp_path / "functions" / handler.parent.name).mkdir(parents=True)
        shutil.copy(handler, tmp_path / "functions" / handler.parent.name / "handler.py")
    return tmp_path


def test_a_new_function_folder_missing_from_stack_yml_is_reported(repo_copy):
    (repo_copy / "functions" / "sentiment").mkdir()
    (repo_copy / "functions" / "sentiment" / "handler.py").write_text(
        "def handle(event, context):\n    pass\n"
    )
    assert any("sentiment" in p for p in consistency_problems(repo_copy))


def test_a_function_with_the_wrong_build_arg_is_reported(repo_copy):
    stack = repo_copy / "stack.yml"
    stack.write_text(stack.read_text().replace("FUNCTION: entity-stats", "FUNCTION: ner-processor"))
    assert any("build_args.FUNCTION" in p for p in consistency_problems(repo_copy))


def test_a_build_arg_the_dockerfile_does_not_declare_is_reported(repo_copy):
    stack = repo_copy / "stack.yml"
    stack.write_text(
        stack.read_text().replace(
            '      INSTALL_MODEL: "false"', '      INSTALL_MODEL: "false"\n      MODEL_PACKAG: x'
        )
    )
    assert any("MODEL_PACKAG" in p for p in consistency_problems(repo_copy))


def test_a_migration_image_out_of_step_with_stack_yml_is_reported(repo_copy):
    kustomization = repo_copy / "argocd" / "migrations" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("newTag: 0.1.0", "newTag: 0.0.9"))
    assert any("argocd/migrations" in p for p in consistency_problems(repo_copy))


def test_a_rollup_worker_image_out_of_step_with_stack_yml_is_reported(repo_copy):
    kustomization = repo_copy / "argocd" / "rollups" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("newTag: 0.1.0", "newTag: 0.0.9"))
    assert any("argocd/rollups" in p for p in consistency_problems(repo_copy))


def test_generate_script_is_the_one_plugin_yaml_runs():
    plugin = load_yaml(ARGOCD / "plugins" / "openfaas-stack" / "plugin.yaml")
    [script_arg] = [a for a in plugin["spec"]["generate"]["command"] if SCRIPT_RE.fullmatch(a)]
    assert (ROOT / script_arg).resolve() == GENERATE_SH.resolve()
