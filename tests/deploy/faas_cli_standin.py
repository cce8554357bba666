#!/usr/bin/env python3
"""Offline stand-in for ``faas-cli generate`` (faas-cli 0.18.12), used by tests/deploy.

The real faas-cli is a Go binary from GitHub releases, which this project's machines cannot download
(PyPI's ``faas-cli`` 1.0.4 is an unrelated data-platform CLI, npm has none). In the cluster the Argo CD
plugin runs the real one (argocd/plugins/openfaas-stack/generate.sh); the tests point the same script
at this file through ``FAAS_CLI`` so that the script's error handling and the objects it would emit
are checked here.

Implemented exactly as docs/contract.md describes the verified behaviour:

* one ``openfaas.com/v1`` ``Function`` per function: key -> ``metadata.name`` and ``spec.name``;
  ``metadata.namespace`` only from ``-n`` (default ``openfaas-fn``), never from stack.yml;
* ``image`` (a reference without tag gets ``:latest``; a missing image renders as ``:latest``, exit 0);
* ``environment``: ``environment_file`` entries (paths relative to the stack file, later files win)
  merged with the inline map, the inline value winning a clash (CONTRACT.md; older faas-cli sources let
  the file win, which is why the project keeps the two key sets disjoint and tests that it does);
* ``labels``, ``annotations``, ``environment`` values stringified as YAML wrote them (``20`` -> "20",
  ``true`` -> "true", ``0.10`` -> "0.10");
* ``limits``/``requests`` (memory, cpu), ``constraints``, ``secrets``,
  ``readonly_root_filesystem`` -> ``readOnlyRootFilesystem``;
* dropped: lang, handler, fprocess, build_args, build_options, configuration.copy; unknown keys ignored;
* ``${VAR}`` and ``${VAR:-default}`` substituted before parsing (``--envsubst=false`` turns it off);
* errors (unreadable/invalid YAML, provider.name != openfaas, version != 1.0, type mismatches, missing
  environment file) are printed on STDOUT with exit code 1, like cobra does for faas-cli.

Only ``generate`` is implemented; anything else exits 1 with an explanation.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
from pathlib import Path

import yaml

API_VERSION = "openfaas.com/v1"
DEFAULT_NAMESPACE = "openfaas-fn"
_ENVSUBST = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TRUE = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"}
_FALSE = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"}


class StackError(Exception):
    """What faas-cli would print after 'Error: '."""


def envsubst(text: str, environ: dict[str, str]) -> str:
    return _ENVSUBST.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), text)


# --- typed decoding of YAML nodes, the way yaml.v3 decodes into faas-cli's Go structs ------------------


def _unmarshal_error(node: yaml.Node, field: str, go_type: str, value: str | None = None) -> StackError:
    got = f"!!str `{value}`" if value is not None else _kind(node)
    return StackError(
        f"yaml: unmarshal errors:\n  line {node.start_mark.line + 1}: cannot unmarshal {got} "
        f"into {field} of type {go_type}"
    )


def _scalar_string(node: yaml.Node, field: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _unmarshal_error(node, field, "string")
    if node.tag == "tag:yaml.org,2002:null":
        return ""
    return node.value


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "!!map"
    if isinstance(node, yaml.SequenceNode):
        return "!!seq"
    return node.tag.rsplit(":", 1)[-1] if node.tag else "!!str"


def _string_map(node: yaml.Node, field: str) -> dict[str, str]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise _unmarshal_error(node, field, "map[string]string")
    return {_scalar_string(k, field): _scalar_string(v, field) for k, v in node.value}


def _string_list(node: yaml.Node, field: str) -> list[str]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise _unmarshal_error(node, field, "[]string")
    return [_scalar_string(item, field) for item in node.value]


def _bool(node: yaml.Node, field: str) -> bool:
    value = _scalar_string(node, field)
    if value in _TRUE:
        return True
    if value in _FALSE or value == "":
        return False
    raise _unmarshal_error(node, field, "bool", value)


def _mapping(node: yaml.Node, field: str) -> dict[str, yaml.Node]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise _unmarshal_error(node, field, "struct")
    return {_scalar_string(k, field): v for k, v in node.value}


def _resources(node: yaml.Node, field: str) -> dict[str, str]:
    known = _mapping(node, field)
    return {key: _scalar_string(known[key], f"{field}.{key}") for key in ("memory", "cpu") if key in known}


def _image_with_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in last:
        return image
    return image + ":latest"


def parse_stack(path: Path, *, substitute: bool, environ: dict[str, str]) -> dict[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StackError(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
    if substitute:
        text = envsubst(text, environ)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise StackError(f"yaml: {exc}") from None
    top = _mapping(root, "stack.Services") if root is not None else {}

    if "version" in top:
        version = _scalar_string(top["version"], "version")
        if version not in ("1.0", "1"):
            raise StackError(f"[1.0] are the only valid versions for the stack file - found: {version}")
    provider = _mapping(top["provider"], "provider") if "provider" in top else {}
    name = _scalar_string(provider["name"], "provider.name") if "name" in provider else ""
    if name != "openfaas":
        raise StackError(
            f"['openfaas'] is the only valid \"provider.name\" for the OpenFaaS CLI, but you gave: {name}"
        )

    functions = _mapping(top["functions"], "functions") if "functions" in top else {}
    parsed: dict[str, dict] = {}
    for fn_name, fn_node in functions.items():
        fields = _mapping(fn_node, f"functions.{fn_name}")
        fn: dict = {}
        for key in ("image", "lang", "handler", "fprocess", "namespace"):
            if key in fields:
                fn[key] = _scalar_string(fields[key], key)
        for key in ("environment", "labels", "annotations", "build_args"):
            if key in fields:
                fn[key] = _string_map(fields[key], key)
        for key in ("secrets", "constraints", "environment_file", "build_options"):
            if key in fields:
                fn[key] = _string_list(fields[key], key)
        for key in ("limits", "requests"):
            if key in fields:
                fn[key] = _resources(fields[key], key)
        for key in ("readonly_root_filesystem", "skip_build"):
            if key in fields:
                fn[key] = _bool(fields[key], key)
        parsed[fn_name] = fn
    return parsed


def read_environment_files(files: list[str], stack_dir: Path) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name in files:
        path = Path(name) if os.path.isabs(name) else stack_dir / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StackError(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
        try:
            root = yaml.compose(text)
        except yaml.YAMLError as exc:
            raise StackError(f"yaml: {exc}") from None
        top = _mapping(root, "stack.EnvironmentFile") if root is not None else {}
        if "environment" in top:
            merged.update(_string_map(top["environment"], "environment"))
    return merged


def function_object(name: str, fn: dict, namespace: str, stack_dir: Path) -> dict:
    environment = read_environment_files(fn.get("environment_file", []), stack_dir)
    environment.update(fn.get("environment", {}))  # CONTRACT.md: the inline value wins a clash
    spec: dict = {"name": name, "image": _image_with_tag(fn.get("image", ""))}
    for key in ("labels", "annotations"):
        if fn.get(key):
            spec[key] = dict(sorted(fn[key].items()))
    if environment:
        spec["environment"] = dict(sorted(environment.items()))
    for key in ("limits", "requests"):
        if fn.get(key):
            spec[key] = fn[key]
    for key in ("constraints", "secrets"):
        if fn.get(key):
            spec[key] = fn[key]
    if fn.get("readonly_root_filesystem"):
        spec["readOnlyRootFilesystem"] = True
    return {
        "apiVersion": API_VERSION,
        "kind": "Function",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def generate(args: argparse.Namespace, environ: dict[str, str]) -> str:
    if args.api != API_VERSION:
        raise StackError(f"only --api {API_VERSION} is implemented by this stand-in, not {args.api}")
    if args.tag not in (None, "", "latest"):
        raise StackError(f"--tag {args.tag} needs git metadata; not implemented by this stand-in")
    path = Path(args.yaml)
    functions = parse_stack(path, substitute=args.envsubst, environ=environ)
    out = []
    for name in sorted(functions):
        if args.filter and not fnmatch.fnmatchcase(name, args.filter):
            continue
        if args.regex and not re.search(args.regex, name):
            continue
        obj = function_object(name, functions[name], args.namespace, path.parent)
        out.append("---\n" + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=1000))
    return "".join(out)


def _bool_flag(text: str) -> bool:
    if text in ("true", "1", "t", "T", "TRUE", "True"):
        return True
    if text in ("false", "0", "f", "F", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # cobra prints usage errors on stdout too, exit 1
        print(f"Error: {message}")
        sys.exit(1)


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    environ = dict(os.environ if environ is None else environ)
    if not argv or argv[0] != "generate":
        print("Error: this faas-cli stand-in implements only `faas-cli generate` (tests/deploy)")
        return 1
    parser = _Parser(prog="faas-cli generate", add_help=False)
    parser.add_argument("-f", "--yaml", default="stack.yml")
    parser.add_argument("-n", "--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--api", default=API_VERSION)
    parser.add_argument("--tag", default=None)
    parser.add_argument("--envsubst", type=_bool_flag, nargs="?", const=True, default=True)
    parser.add_argument("--filter", default="")
    parser.add_argument("--regex", default="")
    args = parser.parse_args(argv[1:])
    try:
        text = generate(args, environ)
    except StackError as exc:
        print(f"Error: {exc}")
        return 1
    if text:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
