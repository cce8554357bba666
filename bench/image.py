"""Bench phase `image`: the function images as containers (`make bench` runs it where Docker or podman
works; `python -m bench.image` alone).

Measures, in one run on the same machine:
* image sizes (ner-processor, entity-stats) as the engine reports them;
* cold start of the ner-processor container: from the engine's State.StartedAt (after the root
  filesystem is prepared: with vfs storage that preparation alone takes seconds and is not what a
  Kubernetes node pays) to the first persisted 200 answer, median of N rounds, as a ratio of a bare
  `import spacy; spacy.load(model)` in a fresh host process measured in the same rounds (goal <= 1.3x);
* RSS of the container's process after a warm-up of W distinct comments.

Containers run as scripts/image/container.py describes (read-only root, uid 10001, host network).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid

from bench import limits
from bench.common import MODEL, REPO

COLD_GOAL = 1.3


def bare_load(model: str = MODEL) -> tuple[float, float]:
    """(wall s, CPU s) of a fresh `python -c 'import spacy; spacy.load(model)'` on the host (the same code
    as bench/limits.py's bare load), CPU from the children's rusage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", limits.BARE_LOAD.format(model=model)], check=True, cwd=REPO,
                   env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(dsn_writer: str, texts: list[str], *, rounds: int = 3, warmup_docs: int = 200,
            log=print) -> dict:
    """Build (from the layer cache when unchanged) and measure; returns the figures (see module doc).
    Raises scripts.image.build.ImageError when no engine works or a build fails."""
    from scripts.image import build as image_build
    from scripts.image.container import cold_start, function_env, rss_mb, run_function

    engine = image_build.detect_engine()
    if engine is None:
        raise image_build.ImageError("no container engine (Docker or podman)")
    built = image_build.build(engine=engine, ca_bundle=image_build.default_ca_bundle())
    out: dict = {"engine": engine.name,
                 "sizes_mb": {fn: round(info["size_bytes"] / 1e6, 1) for fn, info in built.items()},
                 "bare_s": [], "bare_cpu_s": [], "first_s": [], "first_cpu_s": [], "ready_s": []}
    env = function_env("ner-processor")
    for i in range(rounds):
        wall, cpu = bare_load(MODEL)
        out["bare_s"].append(wall)
        out["bare_cpu_s"].append(cpu)
        body = json.dumps({"text": texts[i % len(texts)]}).encode()
        with run_function(engine, built["ner-processor"]["ref"], env, {"ner-writer-dsn": dsn_writer}) as c:
            cold = cold_start(c, body, f"bench-image-cold-{uuid.uuid4().hex}")
            out["first_s"].append(cold["first_s"])
            out["first_cpu_s"].append(cold["cpu_s"])
            out["ready_s"].append(cold["ready_s"])
            log(f"image cold start {i + 1}/{rounds}: ready {cold['ready_s']:.2f} s, first persisted "
                f"{cold['first_s']:.2f} s ({cold['cpu_s']:.2f} CPU-s); bare spacy.load {wall:.2f} s ({cpu:.2f} CPU-s)")
            if i == rounds - 1:
                out["rss_start_mb"] = rss_mb(c)
                for n, text in enumerate(texts[:warmup_docs]):
                    code, _h, data = c.request("/", json.dumps({"text": text}).encode(),
                                               headers={"X-Call-Id": f"bench-image-warm-{uuid.uuid4().hex}-{n}"})
                    if code != 200:
                        raise RuntimeError(f"warm-up request answered {code}: {data[:200]!r}")
                out["rss_warm_mb"] = rss_mb(c)
                out["warmup_docs"] = min(warmup_docs, len(texts))
    for key in ("bare_s", "bare_cpu_s", "first_s", "first_cpu_s", "ready_s"):
        out[f"{key}_median"] = statistics.median(out[key])
    out["cold_ratio"] = out["first_s_median"] / out["bare_s_median"]
    out["cold_cpu_ratio"] = out["first_cpu_s_median"] / out["bare_cpu_s_median"]
    out["loadavg"] = os.getloadavg()
    return out


def render(result: dict | None, error: str | None = None) -> str:
    """Markdown rows (same columns as bench/report.py's table) for bench/results/latest.md; the row says
    why when the phase was skipped or crashed (``error``), empty when it did not run."""
    if error or (result and result.get("skipped")):
        return f"\n| 8 image | container images | not measured: {error or result['skipped']} |  |  |  |\n"
    if not result:
        return ""
    r = result
    met = "**met**" if r["cold_ratio"] <= COLD_GOAL else "**NOT met**"
    sizes = " / ".join(f"{fn} {mb:,.0f} MB" for fn, mb in sorted(r["sizes_mb"].items(), reverse=True))
    rows = [
        "",
        f"Container images ({r['engine']}, read-only root, uid 10001, host network; bench/image.py):",
        "",
        "| # | measure | value | reference | ratio | goal |",
        "|---|---|---|---|---|---|",
        f"| 8 image | image size | {sizes} |  |  |  |",
        f"| 8 image | container started → readiness 200 / → first persisted 200 | "
        f"{r['ready_s_median']:.2f} s / {r['first_s_median']:.2f} s | bare `spacy.load` on the host "
        f"{r['bare_s_median']:.2f} s (median of {len(r['bare_s'])}) | {r['cold_ratio']:.2f}× of bare load | "
        f"{met} (goal ≤ {COLD_GOAL}×) |",
        f"| 8 image | CPU seconds: container process at its first persisted 200 | "
        f"{r['first_cpu_s_median']:.2f} CPU-s | bare `spacy.load` {r['bare_cpu_s_median']:.2f} CPU-s | "
        f"{r['cold_cpu_ratio']:.2f}× | load-independent view of the same (load average "
        f"{r['loadavg'][0]:.1f}) |",
        f"| 8 image | RSS of the container's process: started → after {r['warmup_docs']} comments | "
        f"{r['rss_start_mb']:.1f} → {r['rss_warm_mb']:.1f} MB |  |  |  |",
        "",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Standalone: own local PostgreSQL under build/local/bench/image-pg, 3 rounds, table to stdout."""
    from bench.corpus import iter_generate
    from bench.localstack import fresh_cluster
    from devtools.processes import LOCAL_DIR

    rounds = int((argv or sys.argv[1:] or ["3"])[0])
    with fresh_cluster(LOCAL_DIR / "bench" / "image-pg") as cluster:
        texts = [t for _, t in zip(range(300), iter_generate(300), strict=False)]
        started = time.perf_counter()
        result = measure(cluster.dsn("writer", "primary"), texts, rounds=rounds,
                         log=lambda m: print(m, file=sys.stderr))
        print(render(result))
        print(f"(measured in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
