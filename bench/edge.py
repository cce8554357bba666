"""The HTTP edge's cost: the function process direct vs raw ``nlp.pipe`` on the same texts, same run.

For two corpora (the benchmark's generated comments, and short comments: the generated ones of at most
``SHORT_MAX_CHARS``, median about 100 characters) and 1, 16 and 64 closed-loop clients it compares

* raw spaCy (the same NER-only pipeline the function loads, as spaCy ships: BLIS) at the call the goal
  names (``nlp(text)`` one comment at a time for 1 client, ``nlp.pipe`` at batch 16 and 128), in a
  separate process that keeps the model loaded, with
* the ner-processor process direct (HTTP + model process + group commit on a real primary),

in **alternating rounds**: raw for ``round_s`` seconds, then the function for as long (the order flips
every round), and reports the median over the rounds of each side and of the per-round ratio. This
machine's speed drifts by 10-20 % within seconds (other tenants of the host): two long runs one after
the other measure the drift, short alternating rounds cancel it.

Printed per corpus and level: docs/s and p99 of the function, docs per CPU-second of the function's
processes (HTTP process + model process), the CPU cores each of them used, how busy the model worker was
(wall seconds per second inside its batches: ``nlp.pipe`` with the tokenizer guard, extracting the entities
and sending the answers; ``nlp_model_batch_seconds``), the mean model batch
(from the function's own ``/metrics``), raw docs/s, the ratio and the throughput goal: 64 clients
/ pipe(128) >= 0.90, 16 clients / pipe(16) >= 0.85, 1 client / nlp(text) >= 0.60. Closed-loop clients
bound the batch: with N clients and the model as bottleneck, about half wait for the running batch
while the other half form the next, so 16 clients give batches of about 8. The last two columns: the
ratio against raw on the function's matrix library, and the function against raw ``nlp.pipe`` on that
library at the batch size its model actually formed in that round (median over rounds), which separates
the batch-size limit from the edge's own cost.

A second table gives the cost per comment: docs per function CPU-second (the HTTP process and its model
process, CPU read from /proc, documents from the model's own counter over the same interval) against raw's
docs per CPU-second at the matching call (goals: >= 0.85 at 64 clients, >= 0.75 at 16), the CPU
milliseconds per comment of each process, and at 1 client the p50 against raw ``nlp(text)``'s median
time per comment (goal: at most 2 ms more), with raw ``nlp(text)`` paced like the function's model beside
it (idle after each comment for the function's p50 less raw's: what idling alone costs the model). Where
the function's model process runs on another matrix library than spaCy's BLIS (``SPACY_BLAS``,
functions/runtime/blas.py), a second raw process on that library runs the matching call in every round too:
the ratio against it is the edge's own cost, the ratio against spaCy as it ships is what a pod costs against
the bare model. Beside the model process's CPU per comment it prints raw's (on the function's library) at
the batch that process actually formed.

``python -m bench.edge [--quick] [--rounds N]`` (own PostgreSQL pair under build/local/bench/edge-pg)
or the ``edge`` phase of ``python -m bench.run``. Results: stdout table +
``build/local/bench/results/edge-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import clients
from bench.common import MODEL, REPO, loadavg, own_cpu_seconds, process_tree, write_json
from bench.corpus import iter_generate
from bench.localstack import LOCAL_RESULTS, fresh_cluster, start_ready
from bench.metering import metrics_text, scrape
from devtools.processes import LOCAL_DIR

RAW_CHILD_ENV = "BENCH_EDGE_RAW_CHILD"
RAW_BLAS_ENV = "BENCH_EDGE_RAW_BLAS"  # unset: spaCy as it ships (BLIS); else a SPACY_BLAS value
SHORT_MAX_CHARS = 180
LEVELS = (1, 16, 64)
CALL = 0  # the raw side's "batch size" for nlp(text), one comment per call
PIPE_SIZES = {1: CALL, 16: 16, 64: 128}  # clients -> the raw call they are compared with
GOALS = {1: 0.60, 16: 0.85, 64: 0.90}  # throughput, function / raw
CPU_GOALS = {16: 0.75, 64: 0.85}  # docs per function CPU-second (HTTP + model process) / raw's
LATENCY_GOAL_MS = 2.0  # 1 client: function p50 <= raw nlp(text) per comment + this


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


# -- raw nlp.pipe (own process, model loaded once) --------------------------------------------------

def raw_worker() -> int:
    """The raw side: load the model once, then per stdin line {"texts_path", "batch_size", "seconds"} run
    ``nlp.pipe`` over the texts (cycling) for about ``seconds`` and print {"docs_s", "docs_per_cpu_s"}."""
    from functions.runtime import blas
    from functions.runtime.nlp import load_pipeline

    if os.environ.get(RAW_BLAS_ENV):
        blas.use(os.environ[RAW_BLAS_ENV])
    nlp = load_pipeline(MODEL, "ner")
    blas.adopt(nlp)  # on numpy's BLAS, the weights' transposed copies exactly as the function makes them
    texts_cache: dict[str, list[str]] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cfg = json.loads(line)
        texts = texts_cache.setdefault(cfg["texts_path"], json.loads(Path(cfg["texts_path"]).read_text("utf-8")))
        size, budget = cfg["batch_size"], cfg["seconds"]
        out = (raw_call(nlp, texts, budget, cfg.get("idle_ms", 0.0)) if size == CALL
               else _raw_pipe(nlp, texts, size, budget))
        print(json.dumps(out), flush=True)
    return 0


def _raw_pipe(nlp, texts: list[str], size: int, budget: float) -> dict:
    list(nlp.pipe(texts[:64], batch_size=size))  # warm-up at this batch size
    docs, start = 0, 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < budget:
        chunk = texts[start:start + max(size, 32)] or texts[:max(size, 32)]
        start = (start + len(chunk)) % len(texts)
        for doc in nlp.pipe(chunk, batch_size=size):
            _ = [(e.start_char, e.end_char, e.label_) for e in doc.ents]  # what the function extracts
        docs += len(chunk)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"docs_s": docs / wall, "docs_per_cpu_s": docs / cpu}


def raw_call(nlp, texts: list[str], budget: float, idle_ms: float = 0.0) -> dict:
    """``nlp(text)`` one comment at a time (what one client's request costs the bare model): docs/s, docs
    per CPU-second and the median wall milliseconds per comment. ``idle_ms`` > 0 sleeps that long after
    each comment, as the function's model idles while a 1-client request is outside it (HTTP, commit);
    a CPU that idled runs the next comment slower (docs/performance.md, "Where the CPU goes")."""
    for text in texts[:32]:
        nlp(text)
    times: list[float] = []
    index = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < budget:
        t0 = time.perf_counter()
        doc = nlp(texts[index])
        _ = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        times.append(time.perf_counter() - t0)
        index = (index + 1) % len(texts)
        if idle_ms:
            time.sleep(idle_ms / 1000.0)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"docs_s": len(times) / wall, "docs_per_cpu_s": len(times) / cpu,
            "p50_ms": statistics.median(times) * 1000.0}


class RawPipe:
    """The raw ``nlp.pipe`` process, started once per measurement: spaCy as it ships, or with ``setting``
    (a ``SPACY_BLAS`` value) applied the way the function's model process applies it."""

    def __init__(self, setting: str | None = None):
        env = dict(os.environ, **{RAW_CHILD_ENV: "1"})
        env.pop(RAW_BLAS_ENV, None)
        if setting:
            env[RAW_BLAS_ENV] = setting
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.edge"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
        if json.loads(self.proc.stdout.readline() or "{}").get("ready") is not True:
            raise RuntimeError("the raw nlp.pipe process did not start")

    def run(self, texts_path: Path, batch_size: int, seconds: float, idle_ms: float = 0.0) -> dict:
        self.proc.stdin.write(json.dumps({"texts_path": str(texts_path), "batch_size": batch_size,
                                          "seconds": seconds, "idle_ms": idle_ms}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the raw nlp.pipe process stopped")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


# -- the function process ----------------------------------------------------------------------------

def function_blas(fn) -> str:
    """The matrix library the function's model process runs on (``nlp_model_blas_info``'s ``library``
    label in its /metrics); ``"blis"`` when the function does not say (spaCy's default)."""
    found = re.search(r'^nlp_model_blas_info\{[^}]*library="(\w+)"[^}]*\} 1\.0$', metrics_text(fn), re.MULTILINE)
    return found.group(1) if found else "blis"


def _batch_metrics(fn) -> tuple[float, float, float]:
    """(documents, batches, seconds in batches) the model has run so far, from the function's /metrics."""
    values = scrape(fn)
    return (values.get("nlp_model_batch_documents_sum", 0.0), values.get("nlp_model_batch_documents_count", 0.0),
            values.get("nlp_model_batch_seconds_sum", 0.0))


def drive(fn, texts_path: Path, n: int, warmup_s: float, duration_s: float, prefix: str) -> dict:
    """One closed-loop run against the function; adds CPU cores of its HTTP process and of its model
    process, docs per CPU-second of both, and the mean model batch."""
    tree = process_tree(fn.process.pid)
    cpu0 = {pid: own_cpu_seconds(pid) for pid in tree}
    docs0, batches0, busy0 = _batch_metrics(fn)
    wall0 = time.monotonic()
    res = clients.run({"mode": "closed", "url": fn.url, "texts_path": str(texts_path), "clients": n,
                       "warmup_s": warmup_s, "duration_s": duration_s, "id_prefix": prefix,
                       "timeout_s": 60.0})
    wall = time.monotonic() - wall0
    used = {pid: own_cpu_seconds(pid) - cpu0[pid] for pid in tree}
    docs1, batches1, busy1 = _batch_metrics(fn)
    res["server_cores"] = used[fn.process.pid] / wall
    res["model_cores"] = sum(v for pid, v in used.items() if pid != fn.process.pid) / wall
    cpu = sum(used.values())
    # CPU over the whole drive (warm-up and the last answers included) against every document the model
    # ran in it: the clients wait for their last answers, so nothing is counted half.
    docs = docs1 - docs0
    res["docs_per_cpu_s"] = docs / cpu if cpu and docs else None
    res["http_cpu_ms"] = used[fn.process.pid] * 1000.0 / docs if docs else None
    res["model_cpu_ms"] = (cpu - used[fn.process.pid]) * 1000.0 / docs if docs else None
    res["mean_batch"] = (docs1 - docs0) / (batches1 - batches0) if batches1 > batches0 else None
    # Wall seconds per second the model worker spent in batches (nlp.pipe, extraction, answers). Near 1 the
    # model always had work; clearly above model_cores, it had work but its process waited for a CPU.
    res["model_busy"] = (busy1 - busy0) / wall
    return res


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def measure(start_fn, work: Path, quick: bool, run_id: str, rounds: int | None = None) -> dict:
    """Both corpora, every level, in alternating rounds. ``start_fn()`` starts a ready function."""
    n = 600 if quick else 2000
    rounds = rounds or (3 if quick else 5)
    round_s = 3.0 if quick else 6.0
    warmup_s = 1.0
    fn = start_fn()
    library = function_blas(fn)
    result: dict = {"loadavg_before": loadavg(), "quick": quick, "rounds": rounds, "round_s": round_s,
                    "blas": library, "corpora": {}}
    # raw: spaCy as it ships (the goals' reference). same: raw on the matrix library the function's model
    # process chose, so the ratio against it is the edge's own cost (the same process when that is BLIS).
    raw = RawPipe()
    same = RawPipe(library) if library != "blis" else raw
    try:
        for name, texts in corpora(n).items():
            path = work / f"edge-{name}.json"
            write_json(path, texts)
            entry = {"docs": len(texts), "median_chars": median_chars(texts), "raw": {}, "function": {}}
            for level in LEVELS:
                batch = PIPE_SIZES[level]
                print(f"edge: {name} corpus (median {entry['median_chars']} chars), {level} client(s) vs "
                      f"{_raw_name(batch)}, {rounds} rounds", file=sys.stderr, flush=True)
                raws, fns = [], []
                same_batch = []  # raw pipe at the batch the function's model actually formed (level > 1)
                same_batch_cpu_ms = []  # raw's CPU ms per comment at that batch (the model process's own yardstick)
                same_lib = []  # raw at the matching call on the function's matrix library
                idle_raw = []  # 1 client: raw nlp(text) idling between comments as the function's model does
                for r in range(rounds):
                    sides = ["raw", "function"] if r % 2 == 0 else ["function", "raw"]
                    for side in sides:
                        if side == "raw":
                            raws.append(raw.run(path, batch, round_s))
                        else:
                            fns.append(drive(fn, path, level, warmup_s, round_s,
                                             f"{run_id}-edge-{name}-{level}-{r}"))
                    formed = max(1, round(fns[-1]["mean_batch"])) if level > 1 and fns[-1]["mean_batch"] else None
                    # Both runs on the function's library, in alternating order (the machine drifts).
                    for run in (["matching", "formed"] if r % 2 == 0 else ["formed", "matching"]):
                        if run == "matching":
                            same_lib.append(raws[-1] if same is raw else same.run(path, batch, round_s))
                        elif formed is not None:
                            formed_raw = same.run(path, formed, round_s)
                            same_batch.append(fns[-1]["docs_s"] / formed_raw["docs_s"])
                            same_batch_cpu_ms.append(1000.0 / formed_raw["docs_per_cpu_s"])
                    if level == 1 and raws[-1].get("p50_ms") is not None:
                        # The function's model idles between two comments for about the request's time
                        # outside it: raw paced the same way shows what idling alone costs the model.
                        idle_raw.append(raw.run(path, CALL, round_s,
                                                idle_ms=max(0.0, fns[-1]["p50_ms"] - raws[-1]["p50_ms"]))["p50_ms"])
                ratios = [f["docs_s"] / w["docs_s"] for f, w in zip(fns, raws, strict=True)]
                ratio = _median(ratios)
                cpu_ratios = [f["docs_per_cpu_s"] / w["docs_per_cpu_s"] for f, w in zip(fns, raws, strict=True)
                              if f["docs_per_cpu_s"]]
                same_lib_cpu = [f["docs_per_cpu_s"] / w["docs_per_cpu_s"] for f, w in zip(fns, same_lib, strict=True)
                                if f["docs_per_cpu_s"]]
                entry["raw"][str(batch)] = {"docs_s": _median(w["docs_s"] for w in raws),
                                            "docs_per_cpu_s": _median(w["docs_per_cpu_s"] for w in raws),
                                            "p50_ms": _median(w.get("p50_ms") for w in raws),
                                            "rounds": [w["docs_s"] for w in raws],
                                            "same_lib_docs_per_cpu_s": _median(w["docs_per_cpu_s"] for w in same_lib)}
                entry["function"][str(level)] = {
                    "docs_s": _median(f["docs_s"] for f in fns), "p99_ms": _median(f["p99_ms"] for f in fns),
                    "p50_ms": _median(f["p50_ms"] for f in fns),
                    "docs_per_cpu_s": _median(f["docs_per_cpu_s"] for f in fns),
                    "server_cores": _median(f["server_cores"] for f in fns),
                    "model_cores": _median(f["model_cores"] for f in fns),
                    "mean_batch": _median(f["mean_batch"] for f in fns),
                    "model_busy": _median(f.get("model_busy") for f in fns),
                    "statuses": [f["statuses"] for f in fns], "rounds": [f["docs_s"] for f in fns],
                    "ratios": ratios, "ratio": ratio, "raw_batch": batch,
                    "ratio_same_batch": _median(same_batch),
                    "raw_cpu_ms_same_batch": _median(same_batch_cpu_ms),
                    "ratio_same_lib": _median(f["docs_s"] / w["docs_s"] for f, w in zip(fns, same_lib, strict=True)),
                    "cpu_ratio_same_lib": _median(same_lib_cpu),
                    "goal": GOALS[level], "met": ratio >= GOALS[level],
                    "http_cpu_ms": _median(f["http_cpu_ms"] for f in fns),
                    "model_cpu_ms": _median(f["model_cpu_ms"] for f in fns),
                    "cpu_ratios": cpu_ratios, "cpu_ratio": _median(cpu_ratios), "cpu_goal": CPU_GOALS.get(level),
                    "p50_rounds": [f["p50_ms"] for f in fns],
                    "raw_idle_p50_ms": _median(idle_raw),
                    "raw_p50_rounds": [w.get("p50_ms") for w in raws]}
            result["corpora"][name] = entry
    finally:
        raw.close()
        if same is not raw:
            same.close()
        fn.stop()
    result["loadavg_after"] = loadavg()
    return result


def table(result: dict) -> str:
    lines = [f"HTTP edge vs raw nlp.pipe: median of {result['rounds']} alternating rounds of {result['round_s']:.0f} s "
             f"(load average before {result['loadavg_before']}, after {result['loadavg_after']}"
             f"{', quick' if result['quick'] else ''})",
             "| corpus | clients | function docs/s | p99 ms | docs/CPU-s | cores HTTP + model | model busy "
             "| mean model batch | raw pipe(batch) docs/s | ratio (per round) | goal "
             f"| vs raw on {result.get('blas', 'blis')} | vs raw pipe at the formed batch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in result["corpora"].items():
        for level, f in entry["function"].items():
            raw = entry["raw"][str(f["raw_batch"])]
            per_round = " ".join(f"{r:.2f}" for r in f["ratios"])
            batch = f"{f['mean_batch']:.1f}" if f.get("mean_batch") else "-"
            busy = f"{f['model_busy']:.2f}" if f.get("model_busy") is not None else "-"
            lines.append(
                f"| {name} (median {entry['median_chars']} ch) | {level} | {f['docs_s']:.0f} | {f['p99_ms']:.1f} | "
                f"{f['docs_per_cpu_s']:.0f} | {f['server_cores']:.2f} + {f['model_cores']:.2f} | {busy} | {batch} | "
                f"{_raw_name(f['raw_batch'])} {raw['docs_s']:.0f} | **{f['ratio']:.2f}x** ({per_round}) | "
                f">= {f['goal']:.2f} {'met' if f['met'] else 'NOT met'} | {_times(f.get('ratio_same_lib'))} | "
                f"{_times(f.get('ratio_same_batch'))} |")
    return "\n".join(lines)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _raw_name(batch: int) -> str:
    return "nlp(text)" if batch == CALL else f"pipe({batch})"


def cpu_table(result: dict) -> str:
    """The cost per comment (issue 24's acceptance figures): docs per function CPU-second (HTTP process
    + model process) against raw's docs per CPU-second at the matching call, as spaCy ships (BLIS) and on
    the function's matrix library; the CPU milliseconds per comment by process beside raw's on both
    libraries and on the function's library at the batch its model formed; at 1 client the p50 against
    raw ``nlp(text)``'s time per comment. Empty for a result written before these figures existed; a
    column a result predates shows ``-``."""
    rows = []
    for name, entry in result["corpora"].items():
        for level, f in entry["function"].items():
            if f.get("cpu_ratio") is None:
                continue
            raw = entry["raw"][str(f["raw_batch"])]
            raw_ms = 1000.0 / raw["docs_per_cpu_s"]
            per_round = " ".join(f"{r:.2f}" for r in f["cpu_ratios"])
            goal = f.get("cpu_goal")
            verdict = "-" if goal is None else f">= {goal:.2f} {'met' if f['cpu_ratio'] >= goal else 'NOT met'}"
            latency = "-"
            if int(level) == 1 and raw.get("p50_ms") is not None:
                limit = raw["p50_ms"] + LATENCY_GOAL_MS
                latency = (f"{f['p50_ms']:.1f} vs {raw['p50_ms']:.1f} + {LATENCY_GOAL_MS:g} ms: "
                           f"{'met' if f['p50_ms'] <= limit else 'NOT met'}")
                if f.get("raw_idle_p50_ms") is not None:
                    latency += f" (raw after idling: {f['raw_idle_p50_ms']:.1f})"
            formed = f.get("raw_cpu_ms_same_batch")
            formed_ms = "-" if formed is None else f"{formed:.2f} (pipe({max(1, round(f['mean_batch']))}))"
            same_ms = raw.get("same_lib_docs_per_cpu_s")
            rows.append(
                f"| {name} | {level} | {f['docs_per_cpu_s']:.0f} | {_raw_name(f['raw_batch'])} "
                f"{raw['docs_per_cpu_s']:.0f} | **{f['cpu_ratio']:.2f}x** ({per_round}) | {verdict} | "
                f"{_times(f.get('cpu_ratio_same_lib'))} | {f['http_cpu_ms']:.2f} + {f['model_cpu_ms']:.2f} | "
                f"{raw_ms:.2f} | {'-' if not same_ms else format(1000.0 / same_ms, '.2f')} | {formed_ms} | {latency} |")
    if not rows:
        return ""
    lib = result.get("blas", "blis")
    return "\n".join([
        "Cost per comment: docs per function CPU-second (HTTP process + model process) against raw spaCy's docs "
        "per CPU-second at the matching call (as spaCy ships: BLIS), and against raw on the matrix library the "
        f"function's model chose ({lib}); CPU ms per comment by process; 1 client: p50 against raw nlp(text)",
        "| corpus | clients | function docs/CPU-s | raw docs/CPU-s | ratio (per round) | goal "
        f"| vs raw on {lib} | CPU ms per comment: HTTP + model | raw CPU ms | raw CPU ms on {lib} "
        f"| raw CPU ms on {lib} at the formed batch | 1-client p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows])


def render(result: dict | None, error: str | None = None) -> str:
    """The markdown section of ``make bench``'s report (empty when the phase did not run)."""
    if error:
        return f"\n\n## HTTP edge vs raw nlp.pipe\n\nThe edge phase failed: {error}\n"
    if not result:
        return ""
    cost = cpu_table(result)
    return ("\n\n## HTTP edge vs raw nlp.pipe (bench/edge.py)\n\n" + table(result) + "\n"
            + (f"\n{cost}\n" if cost else ""))


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(RAW_CHILD_ENV) == "1":
        return raw_worker()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per level (3 quick, 5 full)")
    args = parser.parse_args(argv)
    work = LOCAL_DIR / "bench" / "edge"
    with fresh_cluster(LOCAL_DIR / "bench" / "edge-pg") as cluster:
        def start_fn():
            return start_ready("ner-processor", work / "logs", cluster.secrets_dir)

        result = measure(start_fn, work, args.quick, time.strftime("%Y%m%dT%H%M%S"), rounds=args.rounds)
    write_json(LOCAL_RESULTS / "edge-latest.json", result)
    print(table(result))
    print()
    print(cpu_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
