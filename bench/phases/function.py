"""Phases 2 and 4, the function path: one ner-processor process (real HTTP -> runtime -> micro-batched
NER in its model process -> group commit on the primary) under

* 2a: 1, 4, 16, 64 closed-loop clients sending single comments (replica lag sampled at the top level);
* 2b: batch requests of 32 and 256 documents, ``plan.batch_clients`` in flight (lag at the largest);
* 4: open-loop Poisson arrivals at 25/50/90 % of the best single-comment throughput of 2a, then the
  50 % rate on comments <= ``clients.SHORT_CHARS`` only.

Each client run continues the sample where the previous one stopped, so request texts keep changing.
"""

from __future__ import annotations

from collections.abc import Iterator

from bench import clients
from bench.common import log
from bench.context import Step


def run(ctx) -> dict:
    p = ctx.plan
    fn = ctx.start_fn()
    func: dict = {"closed": {}, "batch": {}, "latency": {}}
    ctx.results["function"] = func
    try:
        index = ctx.drive_steps(fn, closed_steps(ctx, p.closed_levels, "function", "c"), func["closed"])
        ctx.record_lag("closed64", func["closed"][str(max(p.closed_levels))].get("lag"))
        try:
            index = ctx.drive_steps(fn, batch_steps(ctx), func["batch"], index)
        finally:  # the report names the requests in flight, also of a batch size measured before a crash
            for res in func["batch"].values():
                res["clients"] = p.batch_clients
        ctx.record_lag("batch", func["batch"][str(max(p.batch_sizes))].get("lag"))
        func["peak_single_req_s"] = max(m["req_s"] for m in func["closed"].values())
        ctx.drive_steps(fn, latency_steps(ctx, func["peak_single_req_s"]), func["latency"], index)
        func["latency_short"] = latency_short(ctx, fn, func["peak_single_req_s"])
    finally:
        fn.stop()
    return func


def closed_steps(ctx, levels: tuple[int, ...], who: str, tag: str) -> Iterator[Step]:
    """Closed-loop single-comment runs at each of ``levels`` clients (lag sampled at the top level for
    the function, never for the seed design: ``tag`` "c" vs "s" in the request ids)."""
    p = ctx.plan
    for n in levels:
        line = f"{who}: {n} closed-loop client(s)" + (f", {p.closed_duration_s:g} s" if tag == "c" else "")
        cfg = {"mode": "closed", "clients": n, "warmup_s": p.closed_warmup_s, "duration_s": p.closed_duration_s,
               "id_prefix": f"{ctx.run_id}-{tag}{n}"}
        yield str(n), line, cfg, tag == "c" and n == max(levels)


def batch_steps(ctx) -> Iterator[Step]:
    p = ctx.plan
    for size in p.batch_sizes:
        cfg = {"mode": "count", "clients": p.batch_clients, "docs_per_request": size, "total_docs": p.batch_docs,
               "id_prefix": f"{ctx.run_id}-b{size}"}
        line = f"function: batch requests of {size} docs, {p.batch_clients} clients"
        yield str(size), line, cfg, size == max(p.batch_sizes)


def latency_steps(ctx, peak: float) -> Iterator[Step]:
    p = ctx.plan
    for frac in p.latency_fractions:
        rate = peak * frac
        cfg = {"mode": "open", "rate": rate, "warmup_s": p.latency_warmup_s, "duration_s": p.latency_duration_s,
               "id_prefix": f"{ctx.run_id}-o{frac}", "seed": int(frac * 100)}
        yield str(frac), f"function: open loop at {frac:.0%} of {peak:.0f} req/s = {rate:.0f} req/s", cfg, False


def latency_short(ctx, fn, peak: float) -> dict:
    """The same 50% rate on typical comments only: separates the tail the server adds (queueing,
    batching, GIL) from the tail the corpus's long reviews bring by themselves."""
    p = ctx.plan
    rate = peak * 0.5
    log(f"function: open loop at {rate:.0f} req/s, comments <= {clients.SHORT_CHARS} chars only")
    cfg = {"mode": "open", "rate": rate, "warmup_s": p.latency_warmup_s, "duration_s": p.latency_duration_s,
           "id_prefix": f"{ctx.run_id}-os", "texts_path": str(ctx.short_path), "seed": 7}
    return ctx.drive(fn, cfg)
