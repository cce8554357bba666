#!/usr/bin/env python3
"""Bump the image tag of one or all functions in stack.yml (the release step of the GitOps flow).

    python3 scripts/release.py --tag 0.2.0 [--function ner-processor] [--dry-run]
    make release TAG=0.2.0 [FUNCTION=ner-processor]

Only the tag of each selected function's ``image:`` line changes; every other byte of stack.yml
(comments, order, quoting, blank lines) stays as it is, because the file is edited line by line and
never re-dumped. Kustomize ``images:`` entries under argocd/ that pin the same image repository (the
migration/retention jobs run the ner-processor image) get the same tag, so the jobs always run the
code of the release.

Then: commit ("release: ner-processor 0.2.0"), push; the release workflow builds and pushes the
images, Argo CD syncs. Rolling back is `git revert` of that commit.

Standard library only (it runs in CI before any dependency is installed).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Docker's tag grammar.
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_KEY_RE = re.compile(r"^(?P<indent>\s*)(?P<key>[^\s#:][^:#]*?|\"[^\"]+\"|'[^']+'):(?:\s+|$)")
_IMAGE_RE = re.compile(r"^(?P<head>\s*image:\s*)(?P<q>[\"']?)(?P<ref>[^\"'\s#]+)(?P=q)(?P<tail>\s*(?:#.*)?)$")
_NEWTAG_RE = re.compile(
    r"^(?P<head>\s*newTag:\s*)(?P<q>[\"']?)(?P<tag>[^\"'\s#]*)(?P=q)(?P<tail>\s*(?:#.*)?)$"
)
_NAME_RE = re.compile(r"^\s*(?:-\s+)?name:\s*[\"']?(?P<name>[^\"'\s#]+)[\"']?\s*(?:#.*)?$")


class ReleaseError(Exception):
    pass


@dataclass
class Change:
    path: Path
    lineno: int
    what: str
    old: str
    new: str


def split_image(ref: str) -> tuple[str, str | None]:
    """'ghcr.io/x/y:0.1.0' -> ('ghcr.io/x/y', '0.1.0'); no tag -> (ref, None)."""
    if "@" in ref:
        raise ReleaseError(f"image {ref!r} is pinned by digest; release.py only manages tags")
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, None


def _strip_key(raw: str) -> str:
    return raw.strip().strip("\"'")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def function_blocks(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Map function name -> (first line index, end index) of its block under the top-level functions:."""
    start = None
    for i, line in enumerate(lines):
        if re.match(r"^functions:\s*(#.*)?$", line.rstrip("\n")):
            start = i
            break
    if start is None:
        raise ReleaseError("stack file has no top-level 'functions:' mapping")
    body_end = len(lines)
    for i in range(start + 1, len(lines)):
        if _is_content(lines[i]) and _indent(lines[i]) == 0:
            body_end = i
            break
    fn_indent = None
    heads: list[tuple[str, int]] = []
    for i in range(start + 1, body_end):
        line = lines[i]
        if not _is_content(line):
            continue
        if fn_indent is None:
            fn_indent = _indent(line)
        if _indent(line) == fn_indent:
            match = _KEY_RE.match(line)
            if not match:
                raise ReleaseError(f"line {i + 1}: cannot read a function name from {line.rstrip()!r}")
            heads.append((_strip_key(match.group("key")), i))
    blocks = {}
    for n, (name, i) in enumerate(heads):
        end = heads[n + 1][1] if n + 1 < len(heads) else body_end
        blocks[name] = (i, end)
    return blocks


def bump_stack(text: str, tag: str, only: str | None, path: Path) -> tuple[str, list[Change], dict[str, str]]:
    """Return the new text, the changes, and {image repository: new tag} of every selected function."""
    lines = text.splitlines(keepends=True)
    blocks = function_blocks(lines)
    if not blocks:
        raise ReleaseError(f"{path}: no functions")
    if only is not None and only not in blocks:
        raise ReleaseError(f"unknown function {only!r}; stack.yml has: {', '.join(sorted(blocks))}")
    changes: list[Change] = []
    repos: dict[str, str] = {}
    for name, (first, end) in blocks.items():
        if only is not None and name != only:
            continue
        fn_indent = _indent(lines[first])
        image_line = None
        for i in range(first + 1, end):
            line = lines[i]
            # only the function's own keys, one level below its name
            if _is_content(line) and _indent(line) > fn_indent and line.lstrip().startswith("image:"):
                child_indent = min(_indent(x) for x in lines[first + 1 : end] if _is_content(x))
                if _indent(line) == child_indent:
                    image_line = i
                    break
        if image_line is None:
            raise ReleaseError(f"function {name!r} has no image: line")
        raw = lines[image_line]
        newline = raw[len(raw.rstrip("\r\n")) :]
        match = _IMAGE_RE.match(raw.rstrip("\r\n"))
        if not match:
            raise ReleaseError(f"line {image_line + 1}: cannot parse image line {raw.rstrip()!r}")
        repo, old_tag = split_image(match.group("ref"))
        new_ref = f"{repo}:{tag}"
        repos[repo] = tag
        if old_tag == tag:
            continue
        lines[image_line] = (
            f"{match.group('head')}{match.group('q')}{new_ref}{match.group('q')}"
            f"{match.group('tail')}{newline}"
        )
        changes.append(Change(path, image_line + 1, name, old_tag or "(none)", tag))
    return "".join(lines), changes, repos


def bump_kustomize_images(text: str, repos: dict[str, str], path: Path) -> tuple[str, list[Change]]:
    """Set newTag of `images:` entries whose name is one of repos (kustomization.yaml, line based)."""
    lines = text.splitlines(keepends=True)
    changes: list[Change] = []
    in_images = False
    current = None
    for i, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        if re.match(r"^images:\s*(#.*)?$", line):
            in_images = True
            current = None
            continue
        if in_images and _is_content(line) and _indent(line) == 0 and not line.startswith("-"):
            in_images = False
        if not in_images:
            continue
        name = _NAME_RE.match(line)
        if name:
            current = name.group("name")
            continue
        tag_match = _NEWTAG_RE.match(line)
        if tag_match and current in repos:
            new = repos[current]
            if tag_match.group("tag") != new:
                newline = raw[len(line) :]
                lines[i] = (
                    f"{tag_match.group('head')}{tag_match.group('q')}{new}{tag_match.group('q')}"
                    f"{tag_match.group('tail')}{newline}"
                )
                changes.append(
                    Change(path, i + 1, f"{current} (kustomize images)", tag_match.group("tag"), new)
                )
    return "".join(lines), changes


def release(
    tag: str,
    function: str | None = None,
    *,
    root: Path = ROOT,
    stack: Path | None = None,
    dry_run: bool = False,
) -> list[Change]:
    if not TAG_RE.match(tag):
        raise ReleaseError(f"{tag!r} is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")
    stack = stack or root / "stack.yml"
    text = stack.read_text(encoding="utf-8")
    new_text, changes, repos = bump_stack(text, tag, function, stack)
    writes = {stack: new_text} if new_text != text else {}
    for kustomization in sorted((root / "argocd").rglob("kustomization.yaml")):
        k_text = kustomization.read_text(encoding="utf-8")
        k_new, k_changes = bump_kustomize_images(k_text, repos, kustomization)
        if k_changes:
            writes[kustomization] = k_new
            changes.extend(k_changes)
    if not dry_run:
        for path, content in writes.items():
            path.write_text(content, encoding="utf-8")
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", required=True, help="new image tag, e.g. 0.2.0")
    parser.add_argument("--function", default=None, help="only this function (default: all in stack.yml)")
    parser.add_argument("--stack", type=Path, default=None, help="stack file (default: <repo>/stack.yml)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    args = parser.parse_args(argv)
    try:
        changes = release(
            args.tag, args.function or None, root=args.root, stack=args.stack, dry_run=args.dry_run
        )
    except (ReleaseError, OSError) as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    if not changes:
        print(f"release: already at {args.tag}, nothing to change")
        return 0
    for change in changes:
        rel = change.path.relative_to(args.root) if change.path.is_relative_to(args.root) else change.path
        print(f"{rel}:{change.lineno}: {change.what}: {change.old} -> {change.new}")
    if args.dry_run:
        print("release: dry run, nothing written")
    else:
        target = args.function or "all functions"
        print(f'release: now commit and push, e.g. git commit -am "release: {target} {args.tag}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
