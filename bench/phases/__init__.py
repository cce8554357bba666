"""The phases of ``python -m bench.run``, one module each, run in the order of :data:`PHASES`.

A phase module defines

* ``run(ctx: bench.context.Context) -> dict``: measure, and return the phase's JSON-able figures; the
  runner stores them in ``ctx.results[<phase name>]``. A phase that fills its dict step by step stores
  it there first, so the figures it has are still reported when a later step crashes;
* optionally ``REQUIRES``: names of phases whose output it reads (added to a ``--only`` selection);
* optionally ``section(results: dict) -> str``: a markdown section the report appends after the main
  table (bench/report.py renders the table's rows for limits, cold, function, seed, memory and db).

Adding a phase: one module here and its name in :data:`PHASES`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PHASES = (
    "limits",
    "cold",
    "function",
    "edge",
    "gateway",
    "seed",
    "db",
    "memory",
    "image",
    "analytics",
    "campaign",
)


def load(name: str) -> ModuleType:
    """The module of phase ``name`` (one of :data:`PHASES`); ImportError for an unknown name."""
    return importlib.import_module(f"{__name__}.{name}")
