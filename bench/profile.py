"""Profile the ner-processor under load with py-spy and say where the time goes.

``python -m bench.profile [--clients 64] [--docs-per-request 1] [--seconds 15] [--idle]`` starts a local
cluster (``build/local/bench/pg-profile``), runs the function process *under* ``py-spy record`` (attaching by
pid is not possible in every container; launching the child always works), drives it with the same
closed-loop clients as the benchmark, then stops it and summarises the collapsed stacks: the share of
samples per thread kind (HTTP request threads, the model worker, the DB committer) and per category
(model, JSON, HTTP parsing/writing, logging, waiting for the GIL ...). ``--gil`` samples only the
thread holding the GIL, which shows how the single CPU's worth of Python is split between threads.
Outputs go to ``build/local/bench/results/profile-<timestamp>.*``: the raw stacks (for flamegraph.pl or
speedscope), an SVG flame graph and a markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench import clients
from bench.common import REPO, children, write_json
from bench.corpus import generate
from bench.localstack import LOCAL_RESULTS as RESULTS
from devtools.processes import FPROCESS, LOCAL_DIR, FunctionProcess, free_port

# (category, regex on a frame "function (file:line)"), first match from the leaf upwards wins.
CATEGORIES = [
    ("model: nlp.pipe (spaCy/thinc)", re.compile(r"spacy|thinc|\.pyx|numpy|blis")),
    ("database: psycopg / pool", re.compile(r"psycopg")),
    ("logging (JSON lines)", re.compile(r"logging/|pythonjsonlogger|runtime/logs\.py|request_log")),
    ("JSON encode/decode", re.compile(r"json/")),
    (
        "HTTP: uvicorn / asyncio / socket I/O",
        re.compile(r"uvicorn|httptools|asyncio/|selectors\.py|socket\.py|runtime/server\.py"),
    ),
    ("model process pipe (pickle / multiprocessing.connection)", re.compile(r"multiprocessing/|model_process\.py")),
    ("hashing / validation", re.compile(r"hashlib|ner_service\.py|runtime/http\.py")),
    ("threading / queues (waiting)", re.compile(r"threading\.py|queue\.py|concurrent/futures")),
]


# Leaf frames where a thread sleeps (lock, condition, queue, socket wait): time, but not CPU.
WAITING = re.compile(
    r"Condition\.wait|Event\.wait|Thread\.join|SimpleQueue|Queue\.get|(^|\.)(select|poll) \(|"
    r"SocketIO\.readinto|_wait_for_tstate_lock|acquire|Connection\.wait|sleep|"
    # an idle handler thread waits in its pool's queue; the model pipes' readers block in _recv
    r"_worker \(concurrent/futures/thread\.py|HandlerPool\._work \(functions/runtime/server\.py|Connection\._recv"
)


def _blocking_lines(path: str, call: str) -> frozenset[str]:
    """Leaf frames ``(path:N)`` of the lines of ``path`` that call ``call``: a C-level blocking call
    (``SimpleQueue.get``) has no Python frame of its own, so py-spy's leaf is the line that made it."""
    source = (REPO / path).read_text(encoding="utf-8").splitlines()
    return frozenset(f"({path}:{n})" for n, line in enumerate(source, 1) if call in line)


# The model worker waiting for its next batch (NerEngine._run / _collect on its queue), and the model
# process's parent-watch thread blocked in poll().
ENGINE_IDLE = (_blocking_lines("functions/runtime/nlp.py", "self._queue.get(")
               | _blocking_lines("functions/runtime/model_process.py", "poller.poll("))


def is_waiting(leaf: str) -> bool:
    """True when the leaf frame is a thread sleeping rather than running."""
    return WAITING.search(leaf) is not None or leaf[leaf.rfind(" ") + 1:] in ENGINE_IDLE


def thread_kind(stack: list[str]) -> str:
    text = ";".join(stack)
    if "NerEngine._run" in text:
        return "ner-worker (model process)"
    if "EntityWriter._run" in text:
        return "db-committer"
    if "child_main" in text:
        return "model process: pipe reader"
    if "ModelProcess._receive" in text:
        return "model results reader"
    if "_worker (concurrent/futures/thread.py" in text or "HandlerPool._work" in text:
        return "handler threads (handle(event, context))"
    if "asyncio/runners.py" in text or "run_until_complete" in text or "run_forever" in text:
        return "uvicorn event loop"
    return "other"


def categorize(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other Python"


def parse_collapsed(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def _startup(stack: list[str]) -> bool:
    """Imports, the model load and its warm-up before the first request (in the function's process and in
    the model process): not the request path."""
    return any(f.startswith(("load_handler ", "load_pipeline ", "NerEngine.__init__ ")) or "<frozen importlib" in f
               for f in stack)


def summarize(stacks: list[tuple[list[str], int]]) -> dict:
    total = sum(c for s, c in stacks if not _startup(s)) or 1
    by_thread: Counter = Counter()
    by_cat: dict[str, Counter] = defaultdict(Counter)
    leaves: Counter = Counter()
    waiting: Counter = Counter()
    startup = 0
    for stack, count in stacks:
        if _startup(stack):
            startup += count  # model load before the first request: not the request path
            continue
        kind = thread_kind(stack)
        if is_waiting(stack[-1]):
            waiting[kind] += count
            continue
        by_thread[kind] += count
        by_cat[kind][categorize(stack)] += count
        leaves[stack[-1]] += count
    return {
        "samples": total,
        "waiting": {k: round(100 * v / total, 1) for k, v in waiting.most_common()},
        "threads": {k: round(100 * v / total, 1) for k, v in by_thread.most_common()},
        "categories": {
            k: {c: round(100 * v / total, 1) for c, v in cats.most_common()} for k, cats in by_cat.items()
        },
        "top_leaves": [(f, round(100 * v / total, 1)) for f, v in leaves.most_common(25)],
    }


def profile(
    secrets_dir: Path,
    work: Path,
    client_cfg: dict,
    *,
    fn_env: dict,
    idle: bool,
    gil: bool,
    rate: int = 250,
    stem: str = "profile",
) -> dict:
    """Run the function under py-spy while ``client_cfg`` drives it; returns the summary."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DSN")}
    env.update(fn_env)
    env.update(
        {
            "FUNCTION_NAME": "ner-processor",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "SECRETS_DIR": str(secrets_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    raw = RESULTS / f"{stem}.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    # --subprocesses: the model runs in a child process (functions/runtime/model_process.py).
    cmd = [py_spy, "record", "--format", "raw", "--output", str(raw), "--rate", str(rate), "--nonblocking",
           "--subprocesses"]
    cmd += ["--idle"] if idle else []
    cmd += ["--gil"] if gil else []
    cmd += ["--", *FPROCESS]
    log_path = work / f"{stem}.log"
    work.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        spy = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    fn = FunctionProcess(name="ner-processor", port=port, process=spy, log_path=log_path, env=env)
    try:
        fn.wait_ready(timeout=120)
        result = clients.run({"url": fn.url} | client_cfg)
    finally:
        for child in children(spy.pid):
            os.kill(child, signal.SIGTERM)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
    summary = summarize(parse_collapsed(raw))
    summary["client"] = {k: result.get(k) for k in ("docs_s", "req_s", "p50_ms", "p99_ms", "statuses")}
    summary["mode"] = {
        "idle": idle,
        "gil": gil,
        "client": {k: v for k, v in client_cfg.items() if k != "texts_path"},
    }
    return summary


def render(summary: dict) -> str:
    lines = [
        f"### py-spy profile: {json.dumps(summary['mode'])}",
        "",
        f"client saw {summary['client']}; {summary['samples']} samples",
        "",
        "| thread | share of samples | by category |",
        "|---|---|---|",
    ]
    for kind, share in summary["threads"].items():
        cats = ", ".join(f"{c} {v}%" for c, v in summary["categories"][kind].items())
        lines.append(f"| {kind} | {share}% running | {cats} |")
    for kind, share in summary["waiting"].items():
        lines.append(f"| {kind} | {share}% waiting | lock / condition / queue / socket |")
    lines += ["", "Top leaf frames: " + "; ".join(f"`{f}` {v}%" for f, v in summary["top_leaves"][:15]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from devtools.pgcluster import LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--docs-per-request", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--docs", type=int, default=2000, help="distinct texts the clients cycle through")
    ap.add_argument("--idle", action="store_true", help="also sample threads that are waiting")
    ap.add_argument("--gil", action="store_true", help="only sample the thread holding the GIL")
    ap.add_argument("--fn-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--tiny", action="store_true", help="2-word comments: profile the per-request overhead")
    ap.add_argument("--short", action="store_true",
                    help="bench.edge's short corpus (median ~100 characters) instead of the generated one")
    args = ap.parse_args(argv)
    from bench.context import deployed_env

    fn_env = deployed_env() | dict(item.partition("=")[::2] for item in args.fn_env)
    work = LOCAL_DIR / "bench" / "profile"
    texts_path = work / "texts.json"
    if args.tiny:
        texts = [f"Thanks {i}!" for i in range(args.docs)]
    elif args.short:
        from bench.edge import corpora

        texts = corpora(args.docs)["short"]
    else:
        texts = generate(args.docs)
    write_json(texts_path, texts)
    cluster = LocalCluster(LOCAL_DIR / "bench" / "pg-profile")
    cluster.start()
    stem = (
        f"profile-{time.strftime('%Y%m%d-%H%M%S')}-c{args.clients}-d{args.docs_per_request}"
        + ("-idle" if args.idle else "")
        + ("-gil" if args.gil else "")
        + ("-tiny" if args.tiny else "")
        + ("-short" if args.short else "")
    )
    try:
        summary = profile(
            cluster.secrets_dir,
            work,
            {
                "mode": "closed",
                "clients": args.clients,
                "docs_per_request": args.docs_per_request,
                "warmup_s": 2.0,
                "duration_s": args.seconds,
                "texts_path": str(texts_path),
                "id_prefix": f"prof-{time.time_ns()}",
            },
            fn_env=fn_env,
            idle=args.idle,
            gil=args.gil,
            stem=stem,
        )
    finally:
        cluster.stop()
    text = render(summary)
    (RESULTS / f"{stem}.md").write_text(text)
    write_json(RESULTS / f"{stem}.json", summary)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
