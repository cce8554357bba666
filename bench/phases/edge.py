"""The HTTP edge vs raw ``nlp.pipe`` (bench/edge.py): the function direct at 1, 16 and 64 clients
against raw ``nlp.pipe`` at batch 1, 16 and 128 in alternating rounds, on the generated and on short
comments. Alone: ``python -m bench.edge [--quick] [--rounds N]``."""

from __future__ import annotations

from bench import edge


def run(ctx) -> dict:
    return edge.measure(ctx.start_fn, ctx.work, ctx.quick, ctx.run_id)


def section(results: dict) -> str:
    return edge.render(results.get("edge"), results["errors"].get("edge"))
