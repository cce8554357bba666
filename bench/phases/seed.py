"""Phase 3, the seed design: bench/seed_function/seed-design/handler.py behind the same server (full
pipeline, ``nlp(text)`` per request, psycopg2, one JSONB row + COMMIT per comment), driven by the same
closed-loop clients at ``plan.seed_levels``."""

from __future__ import annotations

from bench import seed_design
from bench.common import log
from bench.phases.function import closed_steps


def run(ctx) -> dict:
    log("seed design: starting (full pipeline, nlp(text) per request, psycopg2, 1 row + commit each)")
    fn = seed_design.start(ctx.work / "logs", ctx.seed_secrets)
    out: dict = {"closed": {}}
    ctx.results["seed"] = out
    try:
        ctx.drive_steps(fn, closed_steps(ctx, ctx.plan.seed_levels, "seed design", "s"), out["closed"])
    finally:
        fn.stop()
    return out
