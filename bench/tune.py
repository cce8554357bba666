"""Compare runtime settings of the ner-processor on the bench's clients, interleaved to beat machine noise.

    python -m bench.tune --config BATCH_MAX_WAIT_MS=5 --config BATCH_MAX_WAIT_MS=0 \\
        --config "BATCH_MAX_WAIT_MS=0 SPACY_ZONE_DOCS=0" --clients 16,64 --seconds 8 --rounds 2

Each ``--config`` is one set of env overrides on top of env.yml (space-separated KEY=VALUE). For every
round, every config gets a fresh function process and runs each client level; configs alternate round by
round, so a burst of load elsewhere hits them alike. Reported per config and level: median docs/s, docs per
CPU-second of the function process (robust to load elsewhere) and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench import clients
from bench.common import write_json
from bench.context import deployed_env
from bench.corpus import generate
from bench.metering import CpuMeter, engine_stats, scrape
from devtools.processes import LOCAL_DIR, start_function


def main(argv: list[str] | None = None) -> int:
    from devtools.pgcluster import LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config", action="append", default=[], help='e.g. "BATCH_MAX_WAIT_MS=0 SPACY_ZONE_DOCS=0"'
    )
    ap.add_argument(
        "--clients", default="16,64", help="closed-loop levels; 'b256' = batch requests of 256 docs"
    )
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument(
        "--tiny",
        action="store_true",
        help="send 2-word comments: the model costs ~nothing, so "
        "what is left is the per-request cost of HTTP, parsing, logging and the commit",
    )
    args = ap.parse_args(argv)
    configs = args.config or [""]
    work = LOCAL_DIR / "bench" / "tune"
    texts_path = work / "texts.json"
    write_json(texts_path, [f"Thanks {i}!" for i in range(args.docs)] if args.tiny else generate(args.docs))
    cluster = LocalCluster(LOCAL_DIR / "bench" / "pg-profile")
    status = cluster.start()
    pg_dirs = [status["primary"]["data_dir"], status["replica"]["data_dir"]]
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for rnd in range(args.rounds):
            for config in configs:
                env = deployed_env() | dict(item.split("=", 1) for item in config.split())
                fn = start_function("ner-processor", work / "logs", secrets_dir=cluster.secrets_dir, **env)
                try:
                    for level in args.clients.split(","):
                        batch = level.startswith("b")
                        cfg = {
                            "url": fn.url,
                            "texts_path": str(texts_path),
                            "id_prefix": f"t{time.time_ns()}",
                        }
                        if batch:
                            cfg |= {
                                "mode": "count",
                                "clients": 2,
                                "docs_per_request": int(level[1:]),
                                "total_docs": int(level[1:]) * 8,
                            }
                        else:
                            cfg |= {
                                "mode": "closed",
                                "clients": int(level),
                                "warmup_s": 2.0,
                                "duration_s": args.seconds,
                            }
                        before = scrape(fn)
                        with CpuMeter(fn.process.pid, pg_dirs) as meter:
                            res = clients.run(cfg)
                        res["cpu"] = meter.result(res.get("client_cpu_s", 0.0))
                        res["engine"] = engine_stats(before, scrape(fn), meter.wall)
                        results.setdefault((config or "env.yml", level), []).append(res)
                        print(
                            f"round {rnd} [{config or 'env.yml'}] {level}: {res['docs_s']:.1f} docs/s, "
                            f"fn {res['cpu']['fn']:.2f} cores, other {res['cpu']['other']:.2f}",
                            file=sys.stderr,
                            flush=True,
                        )
                finally:
                    fn.stop()
    finally:
        cluster.stop()
    print(
        "| config | level | docs/s (median) | docs per fn CPU-s | fn cores | model busy | micro-batch docs "
        "| p50 ms | p99 ms | runs docs/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (config, level), runs in results.items():
        med = statistics.median
        print(
            f"| {config} | {level} | {med(r['docs_s'] for r in runs):.1f} | "
            f"{med(r['docs_s'] / max(r['cpu']['fn'], 1e-6) for r in runs):.0f} | "
            f"{med(r['cpu']['fn'] for r in runs):.2f} | "
            f"{med(r['engine'].get('model_busy') or 0 for r in runs):.0%} | "
            f"{med(r['engine'].get('batch_docs_mean') or 0 for r in runs):.1f} | "
            f"{med(r['p50_ms'] for r in runs):.1f} | "
            f"{med(r['p99_ms'] for r in runs):.1f} | {[round(r['docs_s']) for r in runs]} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
