"""Phase 6, memory: a fresh function process, ``plan.memory_docs`` distinct generated comments in
batch requests of ``plan.memory_batch``, RSS (VmRSS of the process and its model process) every
``plan.memory_every`` documents; replica lag sampled throughout (the run at full write speed)."""

from __future__ import annotations

from bench.common import log, rss_mb


def run(ctx) -> dict:
    p = ctx.plan
    fn = ctx.start_fn()
    try:
        start_mb = rss_mb(fn.process.pid)
        log(f"memory: {p.memory_docs:,} distinct docs in batches of {p.memory_batch}, RSS every {p.memory_every:,}")
        res = ctx.drive(
            fn,
            {
                "mode": "count",
                "clients": p.memory_clients,
                "docs_per_request": p.memory_batch,
                "total_docs": p.memory_docs,
                "rss_pid": fn.process.pid,
                "rss_every_docs": p.memory_every,
                "texts_path": str(ctx.memory_path),
                "id_prefix": f"{ctx.run_id}-m",
                "timeout_s": 120.0,
            },
            lag=True,
        )
    finally:
        fn.stop()
    rss = res.get("rss") or []
    ctx.record_lag("max_load", res.get("lag"))
    return {
        "rss": rss,
        "start_mb": start_mb,
        "batch": p.memory_batch,
        "docs_s": res.get("docs_s"),
        "statuses": res.get("statuses"),
        "cpu": res.get("cpu"),
        "first_docs": rss[0]["docs"] if rss else None,
        "last_docs": rss[-1]["docs"] if rss else None,
        "first_mb": rss[0]["rss_mb"] if rss else None,
        "last_mb": rss[-1]["rss_mb"] if rss else None,
        "max_mb": max(s["rss_mb"] for s in rss) if rss else None,
        "ratio": rss[-1]["rss_mb"] / rss[0]["rss_mb"] if rss else None,
    }
