"""What `faas-cli build` / `--shrinkwrap` (0.18.12) copies for a function with ``handler: .``: every file
under the handler folder except the top-level ``build/`` and ``template/`` folders, symlinked directories
copied as directories (docs/contract.md). Used to measure what local state would leak into
``build/<function>/``."""

from __future__ import annotations

import os
from pathlib import Path

EXCLUDED_TOP_LEVEL = {"build", "template"}
# Files that only a PostgreSQL data directory holds.
PG_MARKERS = {"PG_VERSION", "postmaster.pid", "postmaster.opts", "pg_control", "pg_hba.conf"}


def copied_files(handler_dir: Path) -> list[tuple[str, int]]:
    """(path relative to the handler folder, bytes) of every file faas-cli would copy."""
    handler_dir = Path(handler_dir)
    out: list[tuple[str, int]] = []
    for entry in sorted(handler_dir.iterdir()):
        if entry.name in EXCLUDED_TOP_LEVEL:
            continue
        if entry.is_dir():  # follows a symlink: faas-cli copies the target as a directory
            for root, dirs, files in os.walk(entry, followlinks=True):
                if _in_cycle(Path(root), handler_dir):  # a link back to an ancestor: count it once
                    dirs[:] = []
                    continue
                for name in files:
                    path = Path(root, name)
                    if path.exists():
                        out.append((str(path.relative_to(handler_dir)), path.stat().st_size))
        elif entry.exists():
            out.append((entry.name, entry.stat().st_size))
    return out


def _in_cycle(directory: Path, top: Path) -> bool:
    real = os.path.realpath(directory)
    parent = directory.parent
    while parent != top and parent != parent.parent:
        if os.path.realpath(parent) == real:
            return True
        parent = parent.parent
    return False


def leaks(files: list[tuple[str, int]], secret_names: set[str]) -> list[str]:
    """The copied files that are PostgreSQL data or secrets."""
    bad = []
    for rel, _ in files:
        parts = Path(rel).parts
        if parts[-1] in PG_MARKERS or "pg_wal" in parts or parts[-1] in secret_names or "secrets" in parts[:-1]:
            bad.append(rel)
    return bad
