"""Phases 2 and 4, the function path: one ner-processor process (real HTTP -> runtime -> micro-batched
NER in its model process -> group commit on the primary) under

* 2a: 1, 4, 16, 64 closed-loop clients sending single comments (replica lag sampled at the top level);
* 2b: batch requests of 32 and 256 documents, ``plan.batch_clients`` in flight (lag at the largest);
* 4: open-loop Poisson arrivals at 25/50/90 % of the best single-comment throughput of 2a, then the
  50 % rate on comments <= ``clients.SHORT_CHARS`` only.

Each client run continues the sample where the previous one stopped, so request texts keep changing.
"""

from __future__ import annotations

from bench import clients
from bench.common import log


def run(ctx) -> dict:
    fn = ctx.start_fn()
    func: dict = {"closed": {}, "batch": {}, "latency": {}}
    ctx.results["function"] = func
    try:
        index = closed_levels(ctx, fn, func, 0)
        index = batch_sizes(ctx, fn, func, index)
        func["peak_single_req_s"] = max(m["req_s"] for m in func["closed"].values())
        latency(ctx, fn, func, index)
    finally:
        fn.stop()
    return func


def closed_levels(ctx, fn, func: dict, index: int) -> int:
    """2a into ``func["closed"][str(n)]``; returns the next text index."""
    p = ctx.plan
    for n in p.closed_levels:
        log(f"function: {n} closed-loop client(s), {p.closed_duration_s:g} s")
        res = ctx.drive(
            fn,
            {
                "mode": "closed",
                "clients": n,
                "warmup_s": p.closed_warmup_s,
                "duration_s": p.closed_duration_s,
                "id_prefix": f"{ctx.run_id}-c{n}",
                "start_index": index,
            },
            lag=(n == max(p.closed_levels)),
        )
        index = res["next_index"]
        func["closed"][str(n)] = res
        if "lag" in res:
            ctx.record_lag("closed64", res["lag"])
    return index


def batch_sizes(ctx, fn, func: dict, index: int) -> int:
    """2b into ``func["batch"][str(size)]``; returns the next text index."""
    p = ctx.plan
    for size in p.batch_sizes:
        log(f"function: batch requests of {size} docs, {p.batch_clients} clients")
        res = ctx.drive(
            fn,
            {
                "mode": "count",
                "clients": p.batch_clients,
                "docs_per_request": size,
                "total_docs": p.batch_docs,
                "id_prefix": f"{ctx.run_id}-b{size}",
                "start_index": index,
            },
            lag=(size == max(p.batch_sizes)),
        )
        index = res["next_index"]
        res["clients"] = p.batch_clients
        func["batch"][str(size)] = res
        if "lag" in res:
            ctx.record_lag("batch", res["lag"])
    return index


def latency(ctx, fn, func: dict, index: int) -> None:
    """4 into ``func["latency"][str(fraction)]`` and ``func["latency_short"]``."""
    p = ctx.plan
    peak = func["peak_single_req_s"]
    for frac in p.latency_fractions:
        rate = peak * frac
        log(f"function: open loop at {frac:.0%} of {peak:.0f} req/s = {rate:.0f} req/s")
        res = ctx.drive(
            fn,
            {
                "mode": "open",
                "rate": rate,
                "warmup_s": p.latency_warmup_s,
                "duration_s": p.latency_duration_s,
                "id_prefix": f"{ctx.run_id}-o{frac}",
                "start_index": index,
                "seed": int(frac * 100),
            },
        )
        index = res["next_index"]
        func["latency"][str(frac)] = res
    # The same 50% rate on typical comments only: separates the tail the server adds (queueing,
    # batching, GIL) from the tail the corpus's long reviews bring by themselves.
    rate = peak * 0.5
    log(f"function: open loop at {rate:.0f} req/s, comments <= {clients.SHORT_CHARS} chars only")
    func["latency_short"] = ctx.drive(
        fn,
        {
            "mode": "open",
            "rate": rate,
            "warmup_s": p.latency_warmup_s,
            "duration_s": p.latency_duration_s,
            "id_prefix": f"{ctx.run_id}-os",
            "texts_path": str(ctx.short_path),
            "seed": 7,
        },
    )
