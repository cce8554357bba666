"""Named SQL queries kept in ``sql/queries/<file>.sql``.

A file holds blocks that start with ``-- name: <query_name>``; the text up to the next such line is
the query. Files are read once per process.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from functions.runtime import settings

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """The project's ``sql/`` folder (setting ``SQL_DIR``, e.g. in an image)."""
    return Path(settings.current().sql_dir)


def parse(text: str) -> dict[str, str]:
    """Split a named-query file into {name: sql}. Raises ValueError on duplicate names."""
    queries: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end():end]
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";").strip()
        if match.group(1) in queries:
            raise ValueError(f"duplicate query name {match.group(1)!r}")
        queries[match.group(1)] = sql
    return queries


@functools.cache
def load(file_stem: str) -> dict[str, str]:
    """Queries of ``sql/queries/<file_stem>.sql``. Raises FileNotFoundError if the file is missing."""
    return parse((sql_dir() / "queries" / f"{file_stem}.sql").read_text(encoding="utf-8"))
