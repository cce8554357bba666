"""The HTTP edge's cost: the function process direct vs raw ``nlp.pipe`` on the same texts, same run.

For two corpora (the benchmark's generated comments, and short comments: the generated ones of at most
``SHORT_MAX_CHARS``, median about 100 characters) it measures

* raw ``nlp.pipe`` in a fresh process (the same NER-only pipeline the function loads) at batch sizes
  1, 16 and 128: docs/s and docs per CPU-second;
* the ner-processor process direct (HTTP + model + group commit on a real primary) under 1, 16 and 64
  closed-loop clients: docs/s, p99, docs per CPU-second of the function process;

and prints the ratios the goals name (issue 11): 64 clients / pipe(128) >= 0.90, 16 clients /
pipe(16) >= 0.85, 1 client / pipe(1) >= 0.60. Raw and function runs alternate per corpus so load from
elsewhere on the machine hits both alike; the machine's load average is printed with the figures.

``python -m bench.edge [--quick]`` (own PostgreSQL pair under .local/bench/edge-pg) or the ``edge``
phase of ``python -m bench.run``. Results: stdout table + ``bench/results/edge-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench import clients
from bench.common import MODEL, REPO, cpu_seconds, loadavg, run_module_json, write_json
from bench.corpus import iter_generate

RAW_CHILD_ENV = "BENCH_EDGE_RAW_CHILD"
SHORT_MAX_CHARS = 180
LEVELS = (1, 16, 64)
PIPE_SIZES = {1: 1, 16: 16, 64: 128}  # clients -> the raw batch size they are compared with
GOALS = {1: 0.60, 16: 0.85, 64: 0.90}


def corpora(n: int) -> dict[str, list[str]]:
    """{"generated": n distinct generated comments, "short": n distinct ones of <= SHORT_MAX_CHARS}."""
    seen: set[str] = set()
    generated: list[str] = []
    short: list[str] = []
    for text in iter_generate(n * 8):
        if text in seen:
            continue
        seen.add(text)
        if len(generated) < n:
            generated.append(text)
        if len(text) <= SHORT_MAX_CHARS and len(short) < n:
            short.append(text)
        if len(generated) >= n and len(short) >= n:
            break
    return {"generated": generated, "short": short}


def median_chars(texts: list[str]) -> int:
    return sorted(map(len, texts))[len(texts) // 2]


# -- raw nlp.pipe (own process) --------------------------------------------------------------------

def raw_pipe(config: dict) -> dict:
    """In a fresh process: {batch_size: {"docs_s", "docs_per_cpu_s"}} over config["texts_path"]."""
    from functions.runtime.nlp import load_pipeline

    nlp = load_pipeline(config["model"], "ner")
    texts = json.loads(Path(config["texts_path"]).read_text(encoding="utf-8"))
    list(nlp.pipe(texts[:200], batch_size=64))  # warm-up
    out = {}
    for size in config["batch_sizes"]:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for doc in nlp.pipe(texts, batch_size=size):
            _ = [(e.start_char, e.end_char, e.label_) for e in doc.ents]  # what the function extracts
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        out[str(size)] = {"docs_s": len(texts) / wall, "docs_per_cpu_s": len(texts) / cpu}
    return out


# -- the function process ----------------------------------------------------------------------------

def drive(fn, texts_path: Path, n: int, warmup_s: float, duration_s: float, prefix: str) -> dict:
    cpu0, wall0 = cpu_seconds(fn.process.pid), time.monotonic()
    res = clients.run({"mode": "closed", "url": fn.url, "texts_path": str(texts_path), "clients": n,
                       "warmup_s": warmup_s, "duration_s": duration_s, "id_prefix": prefix,
                       "timeout_s": 60.0})
    cpu, wall = cpu_seconds(fn.process.pid) - cpu0, time.monotonic() - wall0
    # CPU over the whole drive (warm-up included) against the docs of the whole drive's rate.
    res["docs_per_cpu_s"] = res["docs_s"] * wall / cpu if cpu else None
    return res


def measure(start_fn, work: Path, quick: bool, run_id: str) -> dict:
    """Both corpora: raw pipe then the function, per corpus. ``start_fn()`` starts a ready function."""
    n = 600 if quick else 2000
    warmup_s, duration_s = (1.0, 4.0) if quick else (2.0, 10.0)
    result: dict = {"loadavg_before": loadavg(), "quick": quick, "corpora": {}}
    fn = start_fn()
    try:
        for name, texts in corpora(n).items():
            path = work / f"edge-{name}.json"
            write_json(path, texts)
            entry = {"docs": len(texts), "median_chars": median_chars(texts)}
            print(f"edge: {name} corpus ({len(texts)} docs, median {entry['median_chars']} chars): raw pipe",
                  file=sys.stderr, flush=True)
            entry["raw"] = run_module_json("bench.edge", {"texts_path": str(path), "model": MODEL,
                                                          "batch_sizes": sorted(set(PIPE_SIZES.values()))},
                                           timeout=900, env={RAW_CHILD_ENV: "1"})
            entry["function"] = {}
            for level in LEVELS:
                print(f"edge: {name} corpus, function direct, {level} client(s)", file=sys.stderr, flush=True)
                res = drive(fn, path, level, warmup_s, duration_s, f"{run_id}-edge-{name}-{level}")
                raw = entry["raw"][str(PIPE_SIZES[level])]
                entry["function"][str(level)] = {
                    "docs_s": res["docs_s"], "p99_ms": res["p99_ms"], "p50_ms": res["p50_ms"],
                    "docs_per_cpu_s": res["docs_per_cpu_s"], "statuses": res["statuses"],
                    "ratio": res["docs_s"] / raw["docs_s"], "raw_batch": PIPE_SIZES[level],
                    "goal": GOALS[level], "met": res["docs_s"] / raw["docs_s"] >= GOALS[level]}
            result["corpora"][name] = entry
    finally:
        fn.stop()
    result["loadavg_after"] = loadavg()
    return result


def table(result: dict) -> str:
    lines = [f"HTTP edge vs raw nlp.pipe (load average before {result['loadavg_before']}, after "
             f"{result['loadavg_after']}{', quick' if result['quick'] else ''})",
             "| corpus | clients | function docs/s | p99 ms | docs/CPU-s | raw pipe(batch) docs/s | raw docs/CPU-s "
             "| ratio | goal |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in result["corpora"].items():
        for level, f in entry["function"].items():
            raw = entry["raw"][str(f["raw_batch"])]
            lines.append(
                f"| {name} (median {entry['median_chars']} ch) | {level} | {f['docs_s']:.0f} | {f['p99_ms']:.1f} | "
                f"{f['docs_per_cpu_s']:.0f} | pipe({f['raw_batch']}) {raw['docs_s']:.0f} | "
                f"{raw['docs_per_cpu_s']:.0f} | {f['ratio']:.2f}x | >= {f['goal']:.2f} "
                f"{'met' if f['met'] else 'NOT met'} |")
    return "\n".join(lines)


def render(result: dict | None, error: str | None = None) -> str:
    """The markdown section of ``make bench``'s report (empty when the phase did not run)."""
    if error:
        return f"\n\n## HTTP edge vs raw nlp.pipe\n\nThe edge phase failed: {error}\n"
    if not result:
        return ""
    return "\n\n## HTTP edge vs raw nlp.pipe (bench/edge.py)\n\n" + table(result) + "\n"


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(RAW_CHILD_ENV) == "1":
        # run_module_json child: the raw pipe measurement, config on stdin, JSON result on stdout.
        print(json.dumps(raw_pipe(json.loads(sys.stdin.read()))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from devtools.pgcluster import LocalCluster
    from devtools.processes import start_function

    work = REPO / ".local" / "bench" / "edge"
    cluster = LocalCluster(REPO / ".local" / "bench" / "edge-pg")
    cluster.destroy()
    cluster.start()
    try:
        def start_fn():
            fn = start_function("ner-processor", work / "logs", secrets_dir=cluster.secrets_dir, wait=False)
            fn.wait_ready(timeout=120)
            return fn

        result = measure(start_fn, work, args.quick, time.strftime("%Y%m%dT%H%M%S"))
    finally:
        cluster.destroy()
    write_json(REPO / "bench" / "results" / "edge-latest.json", result)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
