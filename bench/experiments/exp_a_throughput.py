"""Experiment (a): full pipeline vs NER-only, nlp(text) loop vs nlp.pipe batch sizes.

All throughput figures come from ONE process, configurations interleaved round by round (so a
burst of load from other engineers hits every configuration alike); the median of the rounds is
reported together with docs per CPU-second (robust to machine load). Load times are measured in
fresh subprocesses (import spacy first, then time spacy.load only).

    python -m bench.experiments.exp_a_throughput [--docs 1200] [--rounds 3] [--eq-docs 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.corpus import generate
from bench.experiments._common import (
    MODEL,
    Timer,
    digest,
    ents_of,
    load_full,
    load_ner,
    loadavg,
    median,
    non_ner_components,
)

LOAD_SNIPPET = """
import json, time, spacy
exclude = {exclude!r}
enable = {enable!r}
t = time.perf_counter()
kw = {{}}
if exclude: kw["exclude"] = exclude
if enable: kw["enable"] = enable
nlp = spacy.load({model!r}, **kw)
dt = time.perf_counter() - t
print(json.dumps({{"load_s": dt, "pipes": nlp.pipe_names}}))
"""


def load_time(exclude: list[str] | None, enable: list[str] | None) -> tuple[float, list[str]]:
    code = LOAD_SNIPPET.format(exclude=exclude, enable=enable, model=MODEL)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["load_s"], res["pipes"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--eq-docs", type=int, default=2000)
    args = ap.parse_args()
    import spacy

    print(f"# exp a  spacy {spacy.__version__}  model {MODEL}  loadavg {loadavg()}")

    # --- load time (fresh process each) ---
    variants = {
        "full": (None, None),
        "ner exclude=[others]": (non_ner_components(), None),
        "ner enable=['ner']": (None, ["ner"]),
    }
    for name, (exc, ena) in variants.items():
        times, pipes = [], []
        for _ in range(3):
            t, pipes = load_time(exc, ena)
            times.append(t)
        print(
            f"load {name:<24} median {median(times) * 1000:6.0f} ms  "
            f"runs {[round(x * 1000) for x in times]}  pipes={pipes}"
        )

    # --- entity equality on eq-docs (doubles as a warm-up of each vocab) ---
    eq_texts = generate(args.eq_docs)
    full = load_full()
    ner = load_ner()
    ner_enable = spacy.load(MODEL, enable=["ner"])
    e_full = [ents_of(d) for d in full.pipe(eq_texts, batch_size=128)]
    e_ner = [ents_of(d) for d in ner.pipe(eq_texts, batch_size=128)]
    e_ena = [ents_of(d) for d in ner_enable.pipe(eq_texts, batch_size=128)]
    diff = sum(a != b for a, b in zip(e_full, e_ner, strict=True))
    diff2 = sum(a != b for a, b in zip(e_full, e_ena, strict=True))
    n_ents = sum(len(e) for e in e_full)
    print(
        f"entities on {len(eq_texts)} docs: {n_ents} ents; full vs ner-exclude differ in {diff} docs, "
        f"full vs ner-enable differ in {diff2} docs; digests {digest(e_full)} {digest(e_ner)} {digest(e_ena)}"
    )

    # --- throughput, interleaved rounds in this process ---
    texts = eq_texts[: args.docs]
    chars = sum(len(t) for t in texts)

    def loop(nlp):
        for t in texts:
            nlp(t)

    def piper(nlp, bs):
        def run():
            for _ in nlp.pipe(texts, batch_size=bs):
                pass

        return run

    configs = {
        "full   nlp(text) loop": lambda: loop(full),
        "ner    nlp(text) loop": lambda: loop(ner),
        "ner    nlp.pipe bs=16": piper(ner, 16),
        "ner    nlp.pipe bs=32": piper(ner, 32),
        "ner    nlp.pipe bs=128": piper(ner, 128),
        "full   nlp.pipe bs=128": piper(full, 128),
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    for r in range(args.rounds):
        for name, fn in configs.items():
            with Timer() as t:
                fn()
            results[name].append((len(texts) / t.wall, len(texts) / t.cpu))
        print(f"  round {r + 1} done, loadavg {loadavg()}", flush=True)
    base = median([w for w, _ in results["ner    nlp.pipe bs=128"]])
    base_cpu = median([c for _, c in results["ner    nlp.pipe bs=128"]])
    print(
        f"\n{len(texts)} docs, {chars} chars (mean {chars / len(texts):.0f}), {args.rounds} rounds, median:"
    )
    print(
        "| configuration | docs/s (wall) | chars/s | docs per CPU-s "
        "| x ner pipe bs=128 (wall / cpu) | runs docs/s |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name, vals in results.items():
        w = median([v[0] for v in vals])
        c = median([v[1] for v in vals])
        print(
            f"| {name} | {w:.0f} | {w * chars / len(texts):,.0f} | {c:.0f} "
            f"| {w / base:.2f} / {c / base_cpu:.2f} "
            f"| {[round(v[0]) for v in vals]} |"
        )


if __name__ == "__main__":
    main()
