"""Experiment (d): do BLAS/OpenMP thread env vars, n_process or torch matter for this model on 2 cores?

Each env configuration runs in a fresh subprocess (thread pools are sized at import time), loads
the NER-only pipeline, warms it, then times nlp.pipe(batch_size=128) twice; the thread count of the
process and docs per CPU-second are reported too. n_process=2 is timed end to end (including the
worker start-up, which is what a request would pay).

    python -m bench.experiments.exp_d_threads [--docs 800]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys

from bench.experiments._common import loadavg

CHILD = r"""
import json, sys, time
from bench.corpus import generate
from bench.experiments._common import Timer, load_ner, thread_count
n = int(sys.argv[1]); mode = sys.argv[2]
nlp = load_ner()
texts = generate(n + 300)
warm, texts = texts[:300], texts[300:]
for _ in nlp.pipe(warm, batch_size=128):
    pass
out = {"threads": thread_count(), "runs": []}
for _ in range(2):
    if mode == "n_process=2":
        kw = {"n_process": 2, "batch_size": 64}
    else:
        kw = {"batch_size": 128}
    with Timer() as t:
        for _ in nlp.pipe(texts, **kw):
            pass
    out["runs"].append((n / t.wall, n / t.cpu))
print(json.dumps(out))
"""

ENVS = {
    "default env": {},
    "OMP/OPENBLAS/BLIS/MKL_NUM_THREADS=1": {
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "BLIS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    },
    "BLIS_NUM_THREADS=2": {"BLIS_NUM_THREADS": "2"},
    "OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2": {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"},
}


def run(env_extra: dict[str, str], n: int, mode: str) -> dict:
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), mode], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=800)
    args = ap.parse_args()
    print(f"# exp d  docs={args.docs}  cpus={os.cpu_count()}  loadavg {loadavg()}")
    for mod in ("torch", "cupy", "threadpoolctl"):
        print(f"  {mod} installed: {importlib.util.find_spec(mod) is not None}")
    print("| configuration | docs/s wall (2 runs) | docs/CPU-s | process threads |")
    print("|---|---|---:|---:|")
    for name, env in ENVS.items():
        res = run(env, args.docs, "pipe")
        print(
            f"| {name} | {[round(w) for w, _ in res['runs']]} | {max(c for _, c in res['runs']):.0f} "
            f"| {res['threads']} |",
            flush=True,
        )
    res = run(ENVS["OMP/OPENBLAS/BLIS/MKL_NUM_THREADS=1"], args.docs, "n_process=2")
    print(
        f"| nlp.pipe(n_process=2, batch_size=64), threads=1 env | {[round(w) for w, _ in res['runs']]} "
        f"| (parent only) | {res['threads']} |"
    )


if __name__ == "__main__":
    main()
