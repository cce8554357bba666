"""Experiment (b): memory_zone arrangements -- RSS growth vs throughput over many distinct comments.

Why zones cost throughput (spaCy 3.8, read from the installed sources):
  * Tokenizer._save_cached() returns early when `vocab.in_memory_zone` is true, so nothing learnt
    inside a zone is cached; and the cache only ever fills up to `max_cache_size` (10,000 chunks)
    with whatever chunks it sees first, never evicting.
  * Lexemes/strings created inside a zone are *transient*: Vocab._new_lexeme() allocates from the
    zone's Pool and the zone's exit clears them (Vocab._clear_transient_orths,
    StringStore._transient_keys). A word that is not in the permanent vocab is therefore rebuilt,
    lex_attr_getters and all (Python callbacks: norm, shape, prefix, suffix, like_num, ...), once
    per zone it appears in.
  So a process that starts inside zones never fills its tokenizer cache and never makes common words
  permanent: every chunk goes through the affix regexes and most lexemes are rebuilt per zone.

Arrangement spec: "none" | "zone:K" (one memory_zone per K docs, nlp.pipe batch min(K,128)) |
"warm:N+zone:K" (first N docs outside any zone -> cache and common lexemes become permanent) |
"warmtok:N+zone:K" (start-up warm-up: tokenizer only, over N texts from another seed).

    # one run, one arrangement (fresh process = clean RSS)
    python -m bench.experiments.exp_b_zones run --arrangement warm:2000+zone:128 --n 100000 --stage ner
    # tokenizer-stage sweep of all arrangements, 100k docs each (cheap: RSS comes from the vocab)
    python -m bench.experiments.exp_b_zones sweep --stage tok --n 100000
    # same-process throughput comparison with the NER model (interleaved rounds)
    python -m bench.experiments.exp_b_zones compare --history 3000 --measure 1500 --rounds 3
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import subprocess
import sys

from bench.corpus import generate
from bench.experiments._common import Timer, ents_of, load_ner, loadavg, median, rss_mb

ARRANGEMENTS = [
    "none",
    "zone:16",
    "zone:128",
    "zone:1024",
    "zone:4096",
    "warm:2000+zone:16",
    "warm:2000+zone:128",
    "warm:2000+zone:1024",
    "warmtok:5000+zone:128",
]


def parse(spec: str) -> tuple[int, int, int]:
    """-> (warm docs processed outside zones, tokenizer-only warm-up texts, docs per zone; 0 = none)."""
    warm = warmtok = zone = 0
    for part in spec.split("+"):
        kind, _, val = part.partition(":")
        if kind == "warm":
            warm = int(val)
        elif kind == "warmtok":
            warmtok = int(val)
        elif kind == "zone":
            zone = int(val)
        elif kind != "none":
            raise ValueError(spec)
    return warm, warmtok, zone


def units(n: int, warm: int, zone: int):
    """Yield (start, end, in_zone) work units covering docs [0, n)."""
    i = 0
    while i < n:
        if i < warm or not zone:
            end = min(n, warm if i < warm and zone else n, i + 128)
            yield i, end, False
        else:
            end = min(n, i + zone)
            yield i, end, True
        i = end


def process(nlp, texts, spec, stage, step, on_mark) -> None:
    """Run `texts` through `nlp` under arrangement `spec`; call on_mark(docs, seg) every `step` docs."""
    warm, warmtok, zone = parse(spec)
    if warmtok:
        for t in generate(warmtok, seed=99):
            nlp.make_doc(t)
    h = hashlib.blake2b(digest_size=8)
    marks: dict[int, str] = {}
    next_mark = step
    done = 0
    seg = Timer().__enter__()
    for start, end, in_zone in units(len(texts), warm, zone):
        chunk = texts[start:end]
        ctx = nlp.memory_zone() if in_zone else None
        if ctx is not None:
            ctx.__enter__()
        try:
            if stage == "ner":
                for doc in nlp.pipe(chunk, batch_size=min(len(chunk), 128)):
                    h.update(repr(ents_of(doc)).encode())  # copy out while the zone is open
                    done += 1
                    if done % step == 0:
                        marks[done] = h.hexdigest()[:12]
            else:
                for t in chunk:
                    doc = nlp.make_doc(t)
                    h.update(b"%d," % len(doc))
                    done += 1
                    if done % step == 0:
                        marks[done] = h.hexdigest()[:12]
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
        if done >= next_mark:  # sample after the zone closed: transient memory is released by now
            seg.__exit__()
            on_mark(done, seg, marks.get(next_mark, ""), next_mark)
            next_mark += step
            seg = Timer().__enter__()


def cmd_run(args) -> None:
    nlp = load_ner()
    texts = generate(args.n)
    rss0 = rss_mb()
    last = [0]
    rows = []

    def on_mark(done, seg, dig, mark):
        n_seg = done - last[0]
        last[0] = done
        row = {
            "docs": done,
            "rss_mb": round(rss_mb(), 1),
            "vocab": len(nlp.vocab),
            "strings": len(nlp.vocab.strings),
            "seg_docs_s": round(n_seg / seg.wall, 1),
            "seg_docs_cpu_s": round(n_seg / seg.cpu, 1),
            "digest": dig,
            "mark": mark,
        }
        if args.trim:
            # glibc keeps freed heap memory (numpy/thinc batch arrays) unless trimmed; measuring RSS
            # before/after malloc_trim(0) separates allocator retention from live growth.
            with Timer() as tt:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            row["rss_after_trim_mb"] = round(rss_mb(), 1)
            row["trim_ms"] = round(tt.wall * 1000, 2)
        rows.append(row)
        if args.verbose:
            print(json.dumps(row), file=sys.stderr, flush=True)

    with Timer() as total:
        process(nlp, texts, args.arrangement, args.stage, args.step, on_mark)
    steady = rows[1:] or rows
    out = {
        "arrangement": args.arrangement,
        "stage": args.stage,
        "n": args.n,
        "rss_start_mb": round(rss0, 1),
        "docs_s": round(args.n / total.wall, 1),
        "docs_cpu_s": round(args.n / total.cpu, 1),
        "steady_docs_cpu_s_median": median([r["seg_docs_cpu_s"] for r in steady]),
        "steady_docs_s_median": median([r["seg_docs_s"] for r in steady]),
        "rows": rows,
    }
    print(json.dumps(out))


def run_subprocess(spec: str, n: int, stage: str, step: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.experiments.exp_b_zones",
        "run",
        "--arrangement",
        spec,
        "--n",
        str(n),
        "--stage",
        stage,
        "--step",
        str(step),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(res: dict, ref_digests: dict[int, str] | None) -> str:
    rows = {r["mark"]: r for r in res["rows"]}
    first = rows[min(rows)]
    lastr = rows[max(rows)]
    mid = rows.get(50_000, lastr)
    same = "-"
    if ref_digests is not None:
        common = [m for m in rows if m in ref_digests]
        same = "yes" if all(rows[m]["digest"] == ref_digests[m] for m in common) else "NO"
    return (
        f"| {res['arrangement']} | {first['rss_mb']:.0f} | {mid['rss_mb']:.0f} | {lastr['rss_mb']:.0f} "
        f"| {lastr['rss_mb'] / first['rss_mb']:.2f} | {lastr['vocab']:,} | {lastr['strings']:,} "
        f"| {res['docs_s']:.0f} | {res['docs_cpu_s']:.0f} | {res['steady_docs_cpu_s_median']:.0f} | {same} |"
    )


HEADER = (
    "| arrangement | RSS@5k MB | RSS@50k | RSS@end | end/5k | vocab lexemes | strings | docs/s wall "
    "| docs/CPU-s | steady docs/CPU-s (median of 5k segments after the first) | same output as none |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def cmd_sweep(args) -> None:
    specs = args.arrangements.split(",") if args.arrangements else ARRANGEMENTS
    print(f"# sweep stage={args.stage} n={args.n} loadavg {loadavg()}")
    print(HEADER)
    ref = None
    for spec in specs:
        res = run_subprocess(spec, args.n, args.stage, args.step)
        if spec == "none":
            ref = {r["mark"]: r["digest"] for r in res["rows"]}
        print(summarize(res, ref), flush=True)
        if args.dump:
            with open(args.dump, "a") as fh:
                fh.write(json.dumps(res) + "\n")


def cmd_compare(args) -> None:
    """Same process, interleaved rounds: fresh NER pipeline per arrangement, history (tokenizer only --
    the NER component adds nothing to the vocab) processed under the arrangement, then the NER
    throughput measured on the next `measure` docs, still under the arrangement."""
    specs = args.arrangements.split(",") if args.arrangements else ARRANGEMENTS
    need = args.history + args.measure
    # --max-chars: short comments only (like the reference: median ~119 chars)
    texts = [t for t in generate(need * 3) if len(t) <= args.max_chars][:need] if args.max_chars else generate(need)
    hist, meas = texts[: args.history], texts[args.history :]
    res: dict[str, list[tuple[float, float]]] = {s: [] for s in specs}
    digests: dict[str, str] = {}
    chars = sum(len(t) for t in meas)
    print(
        f"# compare history={args.history} measure={args.measure} (mean {chars / len(meas):.0f} chars, "
        f"median {sorted(map(len, meas))[len(meas) // 2]}) rounds={args.rounds} loadavg {loadavg()}"
    )
    for r in range(args.rounds):
        # rotate the order each round so a burst of outside load does not always hit the same one
        for spec in specs[r % len(specs) :] + specs[: r % len(specs)]:
            nlp = load_ner()
            warm, warmtok, zone = parse(spec)
            process(nlp, hist, spec, "tok", 10**9, lambda *a: None)
            # measured part: the warm phase is over (history >= warm), so zones apply from here on
            left_warm = max(0, warm - len(hist))
            rest = f"warm:{left_warm}+zone:{zone}" if zone else "none"
            got: list[str] = []

            def on_mark(done, seg, dig, mark, got=got):
                got.append(dig)

            with Timer() as t:
                process(nlp, meas, rest, "ner", len(meas), on_mark)
            res[spec].append((len(meas) / t.wall, len(meas) / t.cpu))
            digests[spec] = got[-1] if got else ""
        print(f"  round {r + 1} loadavg {loadavg()}", flush=True)
    base_w = median([w for w, _ in res["none"]]) if "none" in res else 1.0
    base_c = median([c for _, c in res["none"]]) if "none" in res else 1.0
    print(
        "| arrangement | NER docs/s wall | docs/CPU-s | x none (wall / cpu) | runs (wall) | output = none |"
    )
    print("|---|---:|---:|---:|---|---|")
    for spec, vals in res.items():
        w = median([v[0] for v in vals])
        c = median([v[1] for v in vals])
        same = "yes" if digests[spec] == digests.get("none") else "NO"
        print(
            f"| {spec} | {w:.0f} | {c:.0f} | {w / base_w:.2f} / {c / base_c:.2f} "
            f"| {[round(v[0]) for v in vals]} | {same} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--arrangement", default="none")
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--stage", choices=["tok", "ner"], default="ner")
    p.add_argument("--step", type=int, default=5000)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--trim", action="store_true", help="malloc_trim(0) at every mark (RSS before/after)")
    p = sub.add_parser("sweep")
    p.add_argument("--arrangements", default="")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--stage", choices=["tok", "ner"], default="tok")
    p.add_argument("--step", type=int, default=5000)
    p.add_argument("--dump", default="")
    p = sub.add_parser("compare")
    p.add_argument("--arrangements", default="")
    p.add_argument("--history", type=int, default=3000)
    p.add_argument("--measure", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-chars", type=int, default=0)
    args = ap.parse_args()
    {"run": cmd_run, "sweep": cmd_sweep, "compare": cmd_compare}[args.cmd](args)


if __name__ == "__main__":
    main()
