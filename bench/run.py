"""The benchmark suite: ``python -m bench.run [--quick] [--only PHASES]`` (``make bench`` / ``make bench-quick``).

One run, one corpus, one local PostgreSQL primary + streaming replica (started under
``build/local/bench/pg``, destroyed at the end), then the phases of bench/phases/ in their order: raw
spaCy limits, cold start, the function path under closed-loop clients, batch requests and open-loop
latency, the HTTP edge vs raw ``nlp.pipe``, the local gateway, the seed-design baseline, persistence
cost, memory over many distinct comments, container images. Prints one markdown report (bench/report.py
plus each phase's section) and writes it to ``bench/results/latest.md`` (committed) and to
``build/local/bench/results/<timestamp>.md`` with the raw figures as ``<timestamp>.json`` (local only).

Timings never fail the run: the exit code is 0 unless a phase crashed (a crashed phase is reported in
the table and the others still run). docs/performance.md explains every row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from dataclasses import replace

from bench import phases, report
from bench.common import REPO, loadavg, log, write_json
from bench.context import QUICK, Context, Plan, deployed_env
from bench.localstack import LOCAL_RESULTS
from devtools.processes import LOCAL_DIR

RESULTS = REPO / "bench" / "results"  # latest.md only: the committed, generated table
# Settings worth naming in the report's header (the rest of env.yml does not move the figures).
SHOWN_SETTINGS = ("BATCH_", "SPACY_", "DB_POOL_MAX", "LOG_LEVEL", "MAX_PENDING")


def run(ctx: Context) -> int:
    """Every selected phase in order, then the report; returns the exit code (1 when a phase or the
    database shutdown failed)."""
    started = time.perf_counter()
    meta = ctx.results["meta"]
    meta.update(
        timestamp=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        mode=ctx.mode,
        cores=os.cpu_count(),
        loadavg_start=loadavg(),
        plan=ctx.plan.__dict__,
        fn_env=ctx.fn_env,
        fn_env_text=", ".join(f"{k}={v}" for k, v in sorted(ctx.fn_env.items()) if k.startswith(SHOWN_SETTINGS))
        or "defaults",
    )
    log(f"corpus -> {ctx.work}")
    ctx.corpus()
    failed = False
    try:
        log("starting the local PostgreSQL primary + replica")
        ctx.start_db()
        for name in phases.PHASES:
            if name in ctx.phases:
                failed |= not run_phase(ctx, name)
    finally:
        try:
            ctx.stop_db()
        except Exception:
            failed = True
            log(f"stopping the database failed:\n{traceback.format_exc()}")
    meta.update(loadavg_end=loadavg(), elapsed_s=time.perf_counter() - started)
    write_report(ctx)
    return 1 if failed else 0


def run_phase(ctx: Context, name: str) -> bool:
    """Run one phase, store its figures in ``ctx.results[name]``; a crash is logged and recorded in
    ``ctx.results["errors"][name]`` (first line of the message). Returns False when it crashed."""
    try:
        ctx.results[name] = phases.load(name).run(ctx)
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        ctx.results["errors"][name] = f"{type(exc).__name__}: {first_line}"
        log(f"phase {name} crashed:\n{traceback.format_exc()}")
        return False
    return True


def render(results: dict) -> str:
    """The whole report: the main table (bench/report.py), then each phase's own section, if any."""
    text = report.render(results)
    for name in phases.PHASES:
        section = getattr(phases.load(name), "section", None)
        if section is not None:
            text += section(results)
    return text


def write_report(ctx: Context) -> None:
    text = render(ctx.results)
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if ctx.quick else "")
    LOCAL_RESULTS.mkdir(parents=True, exist_ok=True)
    (LOCAL_RESULTS / f"{stamp}.md").write_text(text, encoding="utf-8")
    write_json(LOCAL_RESULTS / f"{stamp}.json", jsonable(ctx.results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(text, encoding="utf-8")
    log(f"written bench/results/latest.md and {LOCAL_RESULTS / stamp}.md (+ .json)")


def jsonable(value):
    """``value`` with string keys, tuples as lists and NaN as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def selected(only: str) -> set[str]:
    """The phases to run for ``--only`` (all when empty), with the phases they require. Raises
    ValueError naming unknown phases."""
    chosen = set(only.split(",")) if only else set(phases.PHASES)
    unknown = chosen - set(phases.PHASES)
    if unknown:
        raise ValueError(f"unknown phase(s): {', '.join(sorted(unknown))}")
    for name in list(chosen):
        chosen.update(getattr(phases.load(name), "REQUIRES", ()))
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="nlp-enrichment benchmark suite")
    ap.add_argument("--quick", action="store_true", help="small corpus and short phases (< 3 minutes)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of phases: {','.join(phases.PHASES)}")
    ap.add_argument(
        "--fn-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the ner-processor process (e.g. BATCH_MAX_WAIT_MS=10)",
    )
    ap.add_argument("--memory-docs", type=int, help="override the memory phase's document count")
    ap.add_argument("--keep-db", action="store_true", help="reuse build/local/bench/pg and leave it (stopped)")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.memory_docs:
        plan = replace(plan, memory_docs=args.memory_docs)
    try:
        chosen = selected(args.only)
    except ValueError as exc:
        ap.error(str(exc))
    fn_env = deployed_env() | {"LOG_LEVEL": "INFO"}
    for item in args.fn_env:
        key, _, value = item.partition("=")
        fn_env[key] = value
    work = LOCAL_DIR / "bench" / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx = Context(plan, "quick" if args.quick else "full", work, fn_env, chosen, args.keep_db)
    return run(ctx)


if __name__ == "__main__":
    sys.exit(main())
