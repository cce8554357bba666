"""Phase 5, cold start: spawn -> listening -> readiness 200 -> first persisted 200 answer to a real
comment, against a fresh ``import spacy; spacy.load(model)`` timed end to end (and the NER-only load),
median of ``plan.cold_rounds``; plus the installed sizes of the venv's site-packages and the model."""

from __future__ import annotations

import http.client
import json
import statistics
import time

from bench import limits
from bench.common import MODEL, log
from devtools.processes import free_port, start_function

TIMEOUT_S = 120


def run(ctx) -> dict:
    p = ctx.plan
    log(f"cold start ({p.cold_rounds} round(s)) and installed sizes")
    ctx.results["sizes"] = limits.installed_sizes(MODEL)
    bare_full, bare_ner, listen, ready, first = [], [], [], [], []
    for i in range(p.cold_rounds):
        bare_full.append(limits.bare_load_seconds(MODEL))
        bare_ner.append(limits.bare_load_seconds(MODEL, ner_only=True))
        lst, rdy, fst = cold_function(ctx, i)
        listen.append(lst)
        ready.append(rdy)
        first.append(fst)
    return {
        "bare_full_s": bare_full,
        "bare_ner_s": bare_ner,
        "fn_listen_s": listen,
        "fn_ready_s": ready,
        "fn_first_s": first,
        "bare_full_s_median": statistics.median(bare_full),
        "bare_ner_s_median": statistics.median(bare_ner),
        "fn_listen_s_median": statistics.median(listen),
        "fn_ready_s_median": statistics.median(ready),
        "fn_first_s_median": statistics.median(first),
    }


def cold_function(ctx, i: int) -> tuple[float, float, float]:
    """Spawn a function process; poll its readiness path, then POST a real comment until it is
    answered 200 (persisted). Returns (listening, ready, first 200) seconds from the spawn.
    Raises TimeoutError after TIMEOUT_S, RuntimeError when the process exits."""
    body = json.dumps({"text": ctx.sample[0]}).encode()
    started = time.perf_counter()
    fn = start_function(
        "ner-processor",
        ctx.work / "logs",
        secrets_dir=ctx.cluster.secrets_dir,
        port=free_port(),
        wait=False,
        **ctx.fn_env,
    )
    marks: dict[str, float] = {}
    try:
        while "first" not in marks:
            if time.perf_counter() - started > TIMEOUT_S:
                raise TimeoutError(f"function did not answer 200 within {TIMEOUT_S} s")
            if fn.process.poll() is not None:
                raise RuntimeError(f"function exited during cold start:\n{fn.raw_log()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", fn.port, timeout=10)
                if "ready" not in marks:
                    conn.request("GET", fn.env.get("READY_PATH", "/_/ready"))
                else:
                    conn.request(
                        "POST",
                        "/",
                        body=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Call-Id": f"{ctx.run_id}-cold-{i}-{time.time_ns()}",
                        },
                    )
                resp = conn.getresponse()
                resp.read()
                conn.close()
            except OSError:
                time.sleep(0.005)
                continue
            now = time.perf_counter() - started
            marks.setdefault("listening", now)
            if resp.status == 200:
                marks["first" if "ready" in marks else "ready"] = now
                continue
            time.sleep(0.005)
    finally:
        fn.stop()
    return marks["listening"], marks["ready"], marks["first"]
