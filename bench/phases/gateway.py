"""Through the local gateway (bench/gateway.py): the same closed-loop clients direct and through
``devtools/gateway/`` at 16 and 64 clients, alternating rounds, median ratio and CPU per request.
Alone: ``python -m bench.gateway phase [--rounds N] [--quick]``."""

from __future__ import annotations

from bench import gateway


def run(ctx) -> dict:
    return gateway.compare(ctx)


def section(results: dict) -> str:
    return gateway.render(results)
