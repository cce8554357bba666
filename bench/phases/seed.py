"""Phase 3, the seed design: bench/seed_function/seed-design/handler.py behind the same server (full
pipeline, ``nlp(text)`` per request, psycopg2, one JSONB row + COMMIT per comment), driven by the same
closed-loop clients at ``plan.seed_levels``."""

from __future__ import annotations

from bench import seed_design
from bench.common import log


def run(ctx) -> dict:
    p = ctx.plan
    log("seed design: starting (full pipeline, nlp(text) per request, psycopg2, 1 row + commit each)")
    fn = seed_design.start(ctx.work / "logs", ctx.seed_secrets)
    out: dict = {"closed": {}}
    ctx.results["seed"] = out
    try:
        index = 0
        for n in p.seed_levels:
            log(f"seed design: {n} closed-loop client(s)")
            res = ctx.drive(
                fn,
                {
                    "mode": "closed",
                    "clients": n,
                    "warmup_s": p.closed_warmup_s,
                    "duration_s": p.closed_duration_s,
                    "id_prefix": f"{ctx.run_id}-s{n}",
                    "start_index": index,
                },
            )
            index = res["next_index"]
            out["closed"][str(n)] = res
    finally:
        fn.stop()
    return out
