"""Experiment (c): does nlp.pipe in a worker thread suffer from other busy Python threads (GIL)?

The runtime runs the model in one worker thread while other threads parse JSON, serve HTTP and talk
to PostgreSQL. Here the model thread runs NER-only nlp.pipe(batch_size=128) over the same texts
while 0-2 other threads either spin on json.loads/json.dumps of a ~2 KB request body ("busy":
the worst case, pure-Python CPU work holding the GIL) or do the same work with a 1 ms sleep between
requests ("server-like": ~20-40% duty cycle, closer to an HTTP front end), under different
sys.setswitchinterval values. Configurations are interleaved round by round in one process.

    python -m bench.experiments.exp_c_gil [--docs 600] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from bench.corpus import generate
from bench.experiments._common import load_ner, loadavg, median

PAYLOAD = {
    "documents": [
        {"id": f"doc-{i}", "text": t, "source": "bench", "metadata": {"k": i}}
        for i, t in enumerate(generate(8, seed=3))
    ]
}
BODY = json.dumps(PAYLOAD)


def json_worker(stop: threading.Event, counter: list[int], sleep_s: float) -> None:
    n = 0
    while not stop.is_set():
        obj = json.loads(BODY)
        json.dumps({"request_id": "x", "documents": obj["documents"]})
        n += 1
        if sleep_s:
            time.sleep(sleep_s)
    counter.append(n)


def run_config(nlp, texts, threads: int, sleep_s: float, switch: float) -> tuple[float, float]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(switch)
    stop = threading.Event()
    counts: list[int] = []
    workers = [threading.Thread(target=json_worker, args=(stop, counts, sleep_s)) for _ in range(threads)]
    result: dict[str, float] = {}

    def model_thread() -> None:
        t0 = time.perf_counter()
        for _ in nlp.pipe(texts, batch_size=128):
            pass
        result["dt"] = time.perf_counter() - t0

    for w in workers:
        w.start()
    m = threading.Thread(target=model_thread)
    m.start()
    m.join()
    stop.set()
    for w in workers:
        w.join()
    sys.setswitchinterval(old)
    return len(texts) / result["dt"], sum(counts) / result["dt"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--followup", action="store_true", help="smaller switch intervals only")
    args = ap.parse_args()
    nlp = load_ner()
    texts = generate(args.docs)
    for _ in nlp.pipe(texts, batch_size=128):  # warm the tokenizer cache and vocab
        pass
    default = sys.getswitchinterval()
    configs = {
        "alone (model thread only)": (0, 0.0, default),
        "1 busy json thread": (1, 0.0, default),
        "2 busy json threads": (2, 0.0, default),
        "2 busy json threads, switchinterval 1 ms": (2, 0.0, 0.001),
        "2 busy json threads, switchinterval 20 ms": (2, 0.0, 0.02),
        "2 server-like threads (json + 1 ms sleep)": (2, 0.001, default),
    }
    if args.followup:
        configs = {
            "alone (model thread only)": (0, 0.0, default),
            "2 busy json threads, switchinterval 0.5 ms": (2, 0.0, 0.0005),
            "2 busy json threads, switchinterval 0.2 ms": (2, 0.0, 0.0002),
            "2 server-like threads, switchinterval 1 ms": (2, 0.001, 0.001),
        }
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    print(f"# exp c  docs={args.docs} rounds={args.rounds} switchinterval={default} loadavg {loadavg()}")
    for r in range(args.rounds):
        for name, (k, sl, sw) in configs.items():
            res[name].append(run_config(nlp, texts, k, sl, sw))
        print(f"  round {r + 1} loadavg {loadavg()}", flush=True)
    base = median([v[0] for v in res["alone (model thread only)"]])
    print("| configuration | model docs/s | x alone | json requests/s in other threads | runs |")
    print("|---|---:|---:|---:|---|")
    for name, vals in res.items():
        d = median([v[0] for v in vals])
        j = median([v[1] for v in vals])
        print(f"| {name} | {d:.0f} | {d / base:.2f} | {j:,.0f} | {[round(v[0]) for v in vals]} |")


if __name__ == "__main__":
    main()
