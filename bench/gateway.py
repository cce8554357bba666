"""The local gateway's cost, and a loopback load test through it.

``compare(ctx)`` (the ``gateway`` phase of ``python -m bench.run``, bench/phases/gateway.py): one
ner-processor process, the local gateway in its own process fronting it (``python -m devtools.gateway
--upstream``), and the same closed-loop client (``bench.clients``, single comments, same corpus) sent
alternately straight to the function and through ``/function/ner-processor`` at 16 and 64 clients, in
10 short rounds (3 in quick mode). Directions alternate per round (direct, gateway, gateway, direct,
...) so a drift in machine load hits both sides alike; the reported ratio is the median of the rounds';
the goal is gateway >= 0.9x direct.

``python -m bench.gateway phase --rounds 10 --quick`` runs that phase alone with more rounds.

``python -m bench.gateway load`` (JSON config on stdin, JSON result on stdout) is the load test's
client: ``clients`` keep-alive connections opened at once (a burst the listen backlog must absorb),
each sending its next request when the previous answer arrived, for ``duration_s``; it counts answers
by status, connection errors by kind and answers whose body is not JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import clients
from bench.common import REPO, cpu_seconds, log

CLIENT_LEVELS = (16, 64)
WARMUP_S = 1.0
GOAL = 0.9  # gateway throughput / direct throughput


# ------------------------------------------------------------------------------------ gateway process


def start_gateway_process(upstream_url: str, log_dir: Path, function: str = "ner-processor") -> tuple[
        subprocess.Popen, str]:
    """``python -m devtools.gateway --upstream function=URL`` on a free port; returns (process, url).
    Raises RuntimeError (with its stderr) when it does not answer /healthz within 30 s."""
    import urllib.request

    from devtools.processes import free_port

    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"gateway-{port}.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), LOG_LEVEL="WARNING")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "devtools.gateway", "--port", str(port),
                                 "--upstream", f"{function}={upstream_url}"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gateway not answering: {log_path.read_text()[-2000:]}")


# --------------------------------------------------------------------------------------- bench phase


def compare(ctx, rounds: int | None = None) -> dict:
    """Gateway vs direct at CLIENT_LEVELS on the context's corpus (a bench.context.Context); stores the
    figures in ``ctx.results["gateway"]`` as it goes and returns them.

    Each round runs both sides back to back (order alternating), so each round gives one ratio measured
    under the same machine load; the reported ratio is the median of the rounds' ratios. Also recorded:
    CPU seconds per answered request of the gateway process and of the function process (the gateway's
    cost where the CPU is the bottleneck, independent of what else the machine runs)."""
    # Many short rounds beat few long ones on a shared machine: each round's ratio is taken under one
    # load, and the median of many rounds shrugs off the rounds another process disturbed.
    rounds = rounds or (3 if ctx.quick else 10)
    duration_s = min(ctx.plan.closed_duration_s, 5.0)
    fn = ctx.start_fn()
    gw_proc, gw_url = start_gateway_process(fn.url, ctx.work / "gateway-logs")
    out: dict = {"levels": {}, "rounds": rounds, "duration_s": duration_s}
    ctx.results["gateway"] = out
    targets = {"direct": (fn.url, "/"), "gateway": (gw_url, "/function/ner-processor")}
    try:
        index = 0
        for n in CLIENT_LEVELS:
            level = out["levels"][str(n)] = {"direct": [], "gateway": [], "ratios": [],
                                             "gateway_cpu_ms": [], "function_cpu_ms": []}
            for r in range(rounds):
                order = ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct")
                got = {}
                for side in order:
                    res = _one_side(ctx, fn, gw_proc, level, n, r, side, targets[side], index, duration_s)
                    index = res["next_index"]
                    got[side] = res["docs_s"]
                    log(f"gateway phase: {n} clients, round {r + 1}/{rounds}, {side}: "
                        f"{res['docs_s']:.1f} docs/s, p50 {res['p50_ms']:.1f} ms, errors {res['errors'] or 0}")
                if got["direct"]:
                    level["ratios"].append(got["gateway"] / got["direct"])
            level.update(direct_docs_s=statistics.mean(x["docs_s"] for x in level["direct"]),
                         gateway_docs_s=statistics.mean(x["docs_s"] for x in level["gateway"]),
                         ratio=statistics.median(level["ratios"]) if level["ratios"] else float("nan"))
    finally:
        gw_proc.terminate()
        try:
            gw_proc.wait(15)
        except subprocess.TimeoutExpired:
            gw_proc.kill()
        fn.stop()
    for line in render(ctx.results).splitlines():
        log(line)
    return out


def _one_side(ctx, fn, gw_proc, level: dict, n: int, r: int, side: str, target: tuple[str, str], index: int,
              duration_s: float) -> dict:
    """One closed-loop run of ``n`` clients against ``target`` (url, path); appends its figures (and, for
    the gateway side, the CPU milliseconds per request of both processes) to ``level``."""
    cfg = {"mode": "closed", "clients": n, "warmup_s": WARMUP_S, "duration_s": duration_s,
           "texts_path": str(ctx.sample_path), "id_prefix": f"{ctx.run_id}-gw{n}-{side}-{r}",
           "start_index": index, "timeout_s": 60.0, "url": target[0], "path": target[1]}
    gw0, fn0 = cpu_seconds(gw_proc.pid), cpu_seconds(fn.process.pid)
    res = clients.run(cfg, timeout=WARMUP_S + duration_s + 180)
    gw_cpu, fn_cpu = cpu_seconds(gw_proc.pid) - gw0, cpu_seconds(fn.process.pid) - fn0
    level[side].append({"docs_s": res["docs_s"], "p50_ms": res["p50_ms"],
                        "errors": res["errors"], "statuses": res["statuses"]})
    # requests answered over warm-up + window, estimated from the window's rate
    answered = max((WARMUP_S + duration_s) * res["req_s"], 1.0)
    if side == "gateway":
        level["gateway_cpu_ms"].append(gw_cpu * 1000 / answered)
        level["function_cpu_ms"].append(fn_cpu * 1000 / answered)
    return res


def render(results: dict) -> str:
    """Markdown section for the report (empty when the phase did not run)."""
    gw = results.get("gateway")
    if not gw or not gw.get("levels"):
        return ""
    lines = ["", "### Local gateway vs direct (single comments, same corpus, same run)", "",
             "| clients | direct | through the gateway | ratio (median of rounds) | CPU per request: gateway / "
             "function | goal |", "|---|---|---|---|---|---|"]
    for n, level in gw["levels"].items():
        if "ratio" not in level:
            continue
        gcpu, fcpu = level["gateway_cpu_ms"], level["function_cpu_ms"]
        cpu_text = (f"{statistics.mean(gcpu):.2f} / {statistics.mean(fcpu):.2f} ms "
                    f"({statistics.mean(gcpu) / statistics.mean(fcpu):.0%})") if gcpu and fcpu else "n/a"
        rounds = ", ".join(f"{r:.2f}" for r in level["ratios"])
        verdict = "**met**" if level["ratio"] >= GOAL else "**NOT met**"
        lines.append(f"| {n} | {level['direct_docs_s']:.1f} docs/s | {level['gateway_docs_s']:.1f} docs/s | "
                     f"{level['ratio']:.2f}× ({rounds}) | {cpu_text} | {verdict} (goal ≥ {GOAL}×) |")
    lines.append(f"\n{gw['rounds']} rounds of {gw['duration_s']:g} s per side, the two sides back to back in "
                 "alternating order.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- clients


def closed_loop(cfg: dict) -> dict:
    """bench.clients' closed loop in this process, ``cfg["path"]`` as the request path (e.g.
    ``/function/ner-processor``); same config and result as ``bench.clients`` mode "closed"."""
    return clients.run_inline(cfg | {"mode": "closed"})


async def load(cfg: dict) -> dict:
    """Closed-loop load with answer checks. Config: url, path, texts (list) or texts_path, clients,
    duration_s, timeout_s. Returns {requests, statuses, errors, non_json, max_latency_ms,
    connect_max_ms}."""
    host, port = cfg["url"].removeprefix("http://").rstrip("/").split(":")
    port = int(port)
    texts = cfg.get("texts") or json.loads(Path(cfg["texts_path"]).read_text(encoding="utf-8"))
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    head = f"POST {cfg['path']} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    timeout = cfg.get("timeout_s", 60.0)
    loop = asyncio.get_running_loop()
    end = loop.time() + cfg["duration_s"]
    stats = {"requests": 0, "statuses": {}, "errors": {}, "non_json": 0, "non_json_samples": [],
             "max_latency_ms": 0.0, "connect_max_ms": 0.0}

    def error(kind: str) -> None:
        stats["errors"][kind] = stats["errors"].get(kind, 0) + 1

    async def connect():
        started = loop.time()
        conn = await asyncio.wait_for(clients.Connection.open(host, port), timeout)
        stats["connect_max_ms"] = max(stats["connect_max_ms"], (loop.time() - started) * 1000)
        return conn

    async def client(i: int) -> None:
        try:
            conn = await connect()
        except (OSError, TimeoutError) as exc:
            error(f"connect:{type(exc).__name__}")
            return
        k = i
        while loop.time() < end:
            body = bodies[k % len(bodies)]
            k += cfg["clients"]
            request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            sent = loop.time()
            try:
                status, close, payload = await asyncio.wait_for(conn.roundtrip(request), timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                error(type(exc).__name__)
                conn.close()
                try:
                    conn = await connect()
                except (OSError, TimeoutError) as exc2:
                    error(f"connect:{type(exc2).__name__}")
                    return
                continue
            stats["max_latency_ms"] = max(stats["max_latency_ms"], (loop.time() - sent) * 1000)
            stats["requests"] += 1
            stats["statuses"][str(status)] = stats["statuses"].get(str(status), 0) + 1
            try:
                json.loads(payload)
            except ValueError:
                stats["non_json"] += 1
                if len(stats["non_json_samples"]) < 3:
                    stats["non_json_samples"].append(f"{status}: {payload[:200]!r}")
            if close:
                conn.close()
                conn = await connect()
        conn.close()

    await asyncio.gather(*(client(i) for i in range(cfg["clients"])))
    return stats


def standalone(argv: list[str]) -> int:
    """``python -m bench.gateway phase [--rounds N] [--quick]``: the gateway phase alone, on its own
    corpus and database (build/local/bench/gateway), more rounds than `make bench` gives it."""
    import argparse
    import shutil

    from bench.context import QUICK, Context, Plan, deployed_env
    from devtools.processes import LOCAL_DIR

    ap = argparse.ArgumentParser(prog="python -m bench.gateway phase")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="4 s per side and round (default: 5 s)")
    args = ap.parse_args(argv)
    work = LOCAL_DIR / "bench" / "gateway"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx = Context(QUICK if args.quick else Plan(), "quick" if args.quick else "full", work,
                  deployed_env() | {"LOG_LEVEL": "INFO"}, {"gateway"}, False)
    ctx.corpus()
    ctx.start_db()
    try:
        compare(ctx, rounds=args.rounds)
    finally:
        ctx.stop_db()
    print(render(ctx.results))
    return 0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "phase":
        raise SystemExit(standalone(sys.argv[2:]))
    cfg = json.loads(sys.stdin.read())
    command = cfg.get("command", sys.argv[1] if len(sys.argv) > 1 else "")
    if command == "closed":
        print(json.dumps(closed_loop(cfg)))
    elif command == "load":
        print(json.dumps(asyncio.run(load(cfg))))
    else:
        raise SystemExit(f"unknown command {command!r} (closed | load)")


if __name__ == "__main__":
    main()
