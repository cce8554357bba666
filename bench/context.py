"""What every phase of ``python -m bench.run`` shares: the plan (sizes and durations), the corpus files,
the local database, the deployed function settings, and :meth:`Context.drive`, one client configuration
against a function process with CPU accounting.

A phase module (bench/phases/) receives the :class:`Context` and reads ``ctx.plan``, ``ctx.sample``
and the ``*_path`` corpus files, ``ctx.cluster`` (the bench's LocalCluster), ``ctx.fn_env``,
``ctx.run_id`` and ``ctx.work``; it starts function processes with :meth:`Context.start_fn`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench import clients, seed_design
from bench import db as dbbench
from bench.common import REPO, log, write_json
from bench.corpus import iter_generate, long_texts
from bench.localstack import start_ready
from bench.metering import CpuMeter, LogCursor, engine_stats, scrape
from devtools.processes import LOCAL_DIR, FunctionProcess

# One client run of a phase: (result key, progress line, bench.clients config, sample replica lag?).
Step = tuple[str, str, dict, bool]


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


# Smoke sizes: every phase runs, on a small sample and in short windows (< 3 minutes in all).
QUICK = Plan(
    sample_docs=400, warmup_docs=100, raw_rounds=1, full_docs=120, long_texts=1,
    closed_warmup_s=1.0, closed_duration_s=4.0, batch_docs=1024, seed_levels=(16,),
    latency_warmup_s=1.0, latency_duration_s=5.0, cold_rounds=1,
    memory_docs=6_000, memory_every=1_000, db_bulk_docs=512, db_single_docs=100,
)


def deployed_env() -> dict[str, str]:
    """The non-secret settings the function is deployed with (env.yml), so the bench measures them."""
    import yaml

    path = REPO / "env.yml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in (data.get("environment") or {}).items()}


class Context:
    """One run's shared state. ``results`` is the run's JSON-able record: ``meta``, ``errors`` (phase ->
    message) and one entry per phase that ran."""

    def __init__(
        self, plan: Plan, mode: str, work: Path, fn_env: dict[str, str], phases: set[str], keep_db: bool
    ):
        self.plan, self.mode, self.work = plan, mode, work
        self.fn_env, self.phases, self.keep_db = fn_env, phases, keep_db
        self.results: dict = {"meta": {}, "errors": {}}
        self.cluster = None
        self.run_id = time.strftime("%Y%m%dT%H%M%S")

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    # -- set-up ----------------------------------------------------------------------------------

    def corpus(self) -> None:
        """Generate the run's distinct comments and write the sample, warm-up, memory, short and long
        text files under ``work`` (JSON lists); describes the corpus in ``results["meta"]["corpus"]``."""
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
        """Start the bench's primary + replica under build/local/bench/pg (fresh unless ``keep_db``)
        and create the seed design's table and secret."""
        from devtools.pgcluster import LocalCluster

        base = LOCAL_DIR / "bench" / "pg"
        self.cluster = LocalCluster(base)
        if not self.keep_db:
            self.cluster.destroy()  # a fresh database every run: same table sizes, comparable figures
        started = time.perf_counter()
        status = self.cluster.start()
        self.pg_dirs = [status["primary"]["data_dir"], status["replica"]["data_dir"]]
        self.results["meta"]["db_start_s"] = time.perf_counter() - started
        self.seed_secrets = seed_design.prepare(self.cluster.dsn("admin", "primary"), self.work / "seed-secrets")

    def stop_db(self) -> None:
        if self.cluster is None:
            return
        if self.keep_db:
            self.cluster.stop()
        else:
            self.cluster.destroy()

    def start_fn(self, **extra: str) -> FunctionProcess:
        """A ready ner-processor process with the run's settings (``fn_env``) plus ``extra``."""
        return start_ready("ner-processor", self.work / "logs", self.cluster.secrets_dir, **(self.fn_env | extra))

    # -- measuring -------------------------------------------------------------------------------

    def drive(self, fn: FunctionProcess, cfg: dict, *, lag: bool = False) -> dict:
        """Run one client configuration (bench.clients) against ``fn`` with CPU accounting (``cpu``),
        the runtime's batching figures (``engine``), the log lines' means (``server``) and, with ``lag``,
        replica lag sampled throughout (``lag``)."""
        cfg = {"url": fn.url, "texts_path": str(self.sample_path), "timeout_s": 60.0} | cfg
        cursor = LogCursor(fn)
        sampler = None
        if lag:
            sampler = dbbench.LagSampler(self.cluster.dsn("admin", "primary"), self.cluster.dsn("admin", "replica"))
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

    def drive_steps(self, fn: FunctionProcess, steps: Iterable[Step], into: dict, index: int = 0) -> int:
        """:meth:`drive` each step ``(key, progress line, client config, sample lag?)`` in turn, each
        continuing the sample where the previous one stopped (so request texts keep changing); results
        go to ``into[key]``. Returns the next text index."""
        for key, line, cfg, lag in steps:
            log(line)
            res = self.drive(fn, cfg | {"start_index": index}, lag=lag)
            index = res["next_index"]
            into[key] = res
        return index

    def record_lag(self, key: str, lag: dict | None) -> None:
        """Keep a phase's replica-lag samples under ``results["lag"][key]`` (the report's lag rows)."""
        self.results.setdefault("lag", {})[key] = lag
