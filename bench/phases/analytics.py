"""Analytics at campaign volume (issue 22): a fresh local primary + replica filled with a campaign (by default
2 M comments / 10 M mentions over the last hour, ``--analytics-scale N``: N times that over N hours), by bulk
SQL in time-ordered chunks and a share through the function's own writer, with the rollup worker running and
both functions behind the local gateway. Then, in this order:

1. the load: rows/s, the rollup worker's CPU, and how long after the replica replayed the last commit
   entity-stats counts it (``window=1h`` label mix); VACUUM ANALYZE; the data's shape; storage per million
   mentions of raw tables, keys and rollups;
2. at rest: entity-stats' top 20 for 1 h against the exact top 20 of the base tables over the answer's window;
   each ``sql/analyst/*.sql`` with its default variables through psql on the replica;
3. with a write stream through EntityWriter: entity-stats latency per window through the gateway (after
   rollups) and the old raw-scan queries on the replica with the function's 3 s statement timeout (before
   rollups), window by window; rollup lag sampled meanwhile;
4. freshness: 100 comments/s through ner-processor, entity-stats polled every 100 ms: per comment, the first
   poll whose watermark LSN passes its commit LSN minus the arrival of its answer;
5. EntityWriter throughput at 1 and 16 writers with the rollup worker running or stopped, interleaved rounds,
   pg_locks sampled;
6. a future day of mentions dropped (detach concurrently + drop) while 16 writers write.

Figures in ``results["analytics"]``; :func:`section` renders them (bench/analytics_report.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench import analytics_report
from bench.analytics_probes import (
    LagSampler,
    StatsClient,
    analyst_files,
    at_rest_top,
    counted_within,
    data_shape,
    entity_stats_latency,
    exact_mentions,
    freshness,
    parse_time,
    raw_scan_latency,
    short_texts,
    storage,
)
from bench.campaign_data import Campaign, WriteStream, bulk_load
from bench.common import loadavg, log
from bench.localstack import fresh_cluster
from bench.writer_rounds import PeakRss, RollupProcess, drop_day, writer_rounds
from devtools.gateway import Gateway, read_stack
from devtools.processes import LOCAL_DIR, REPO
from functions.runtime import queries


@dataclass(frozen=True)
class AnalyticsPlan:
    """Sizes and durations of the phase (see the module doc for what each step does)."""

    comments: int = 2_000_000  # 5 mentions each on average
    hours: float = 1.0  # the campaign's span, ending when the load starts
    writer_share: float = 0.05  # of the comments, written through EntityWriter during the bulk load
    warmups: int = 3
    calls: int = 30  # per window, after the warm-ups
    raw_calls: int = 30  # per window for the raw-scan baseline ...
    raw_stop_after_timeouts: int = 3  # ... which stops a window after this many statement timeouts
    statement_timeout_ms: int = 3000  # the function's DB_STATEMENT_TIMEOUT_MS
    stream_docs_s: float = 200.0  # the write stream during the latency step (~1,000 mentions/s)
    freshness_rate: float = 100.0  # comments/s through ner-processor
    freshness_comments: int = 1200
    writer_levels: tuple[int, ...] = (1, 16)
    writer_rounds: int = 5
    writer_round_s: float = 5.0
    writer_group: int = 16  # documents per EntityWriter transaction
    drop_day_mentions: int = 2_000_000
    drop_writers: int = 16
    analyst_runs: int = 3


FULL = AnalyticsPlan()
QUICK = AnalyticsPlan(comments=40_000, calls=10, raw_calls=5, stream_docs_s=100.0, freshness_comments=300,
                      writer_rounds=3, writer_round_s=2.0, drop_day_mentions=200_000, analyst_runs=1)
# The functional test's sizes (tests/integration/test_bench_analytics.py): every figure, in seconds.
TINY = AnalyticsPlan(comments=4_000, warmups=1, calls=3, raw_calls=2, stream_docs_s=50.0, freshness_rate=20.0,
                     freshness_comments=30, writer_levels=(1, 4), writer_rounds=1, writer_round_s=0.5,
                     writer_group=4, drop_day_mentions=5_000, drop_writers=2, analyst_runs=1)

CATCH_UP_S = 3600.0  # the longest the phase waits for the rollups to count a load
# (name, entity-stats query, window, label, goal: median seconds at most)
WINDOWS = (
    ("5m", "window=5m&limit=20", timedelta(minutes=5), None, 0.150),
    ("1h", "window=1h&limit=20", timedelta(hours=1), None, 0.150),
    ("1h ORG", "window=1h&label=ORG&limit=20", timedelta(hours=1), "ORG", 0.150),
    ("24h", "window=24h&limit=20", timedelta(hours=24), None, 0.150),
    ("90m", "window=90m&limit=20", timedelta(minutes=90), None, 0.500),
)


def plan_for(quick: bool, scale: float = 1.0) -> AnalyticsPlan:
    """The full or quick plan with ``scale`` times the comments over ``scale`` times the hours."""
    base = QUICK if quick else FULL
    return replace(base, comments=int(base.comments * scale), hours=base.hours * scale)


def run(ctx) -> dict:
    plan = plan_for(ctx.quick, getattr(ctx, "analytics_scale", 1.0))
    out: dict = {}
    ctx.results["analytics"] = out
    with fresh_cluster(LOCAL_DIR / "bench" / "analytics-pg") as cluster:
        measure(plan, cluster, ctx.work / "analytics", out, run_id=ctx.run_id)
    return out


def section(results: dict) -> str:
    return analytics_report.render(results.get("analytics"), results["errors"].get("analytics"))


def measure(plan: AnalyticsPlan, cluster, work: Path, out: dict, *, run_id: str = "run") -> dict:
    """Every step of the module doc on ``cluster`` (started, migrations applied, empty), filling ``out``
    step by step (a crash keeps the figures so far). Returns ``out``."""
    out.update(plan=asdict(plan), loadavg_start=loadavg(), windows={name: query for name, query, *_ in WINDOWS})
    worker = RollupProcess(cluster, work / "logs")
    worker.start()
    token = (cluster.secrets_dir / "entity-stats-token").read_text(encoding="utf-8").strip()
    gateway = Gateway(read_stack(REPO / "stack.yml"), secrets_dir=cluster.secrets_dir, log_dir=work / "logs",
                      port=0)
    client = None
    try:
        gateway.start()
        client = StatsClient(gateway.url, token)
        _load(plan, cluster, worker, client, out)
        log("analytics: at rest: top 20 for 1 h against the base tables; the analyst files")
        out["at_rest"] = at_rest_top(client, cluster.dsn("admin", "replica"))
        out["analyst"] = analyst_files(cluster.dsn("analyst", "replica"), plan.analyst_runs)
        _latency(plan, cluster, client, out)
        log(f"analytics: freshness, {plan.freshness_comments} comments at {plan.freshness_rate:g}/s through "
            "ner-processor")
        lag = LagSampler(cluster.dsn("admin", "primary"))
        lag.start()
        out["freshness"] = freshness(gateway.url, token, short_texts(plan.freshness_comments), plan.freshness_rate,
                                     prefix=f"fresh-{run_id}-")
        out["freshness"]["rollup_lag"] = lag.stop()
        log(f"analytics: EntityWriter with / without rollup maintenance at {plan.writer_levels} writers")
        out["writers"] = writer_rounds(cluster, worker, plan.writer_levels, plan.writer_rounds, plan.writer_round_s,
                                       plan.writer_group, log=log)
        log(f"analytics: drop a day of {plan.drop_day_mentions:,} mentions with {plan.drop_writers} writers")
        out["drop_day"] = drop_day(cluster, plan.drop_day_mentions, plan.drop_writers, plan.writer_group,
                                   prefix=f"day-{run_id}-")
    finally:
        out["loadavg_end"] = loadavg()
        if client is not None:
            client.close()
        gateway.stop()
        worker.stop()
    return out


def _load(plan: AnalyticsPlan, cluster, worker: RollupProcess, client: StatsClient, out: dict) -> None:
    """Bulk load + writer share with the worker running; counted-within; VACUUM ANALYZE; shape; storage."""
    campaign = Campaign(comments=plan.comments, hours=plan.hours, end=datetime.now(UTC),
                        writer_share=plan.writer_share)
    log(f"analytics: loading {campaign.comments:,} comments over {campaign.hours:g} h "
        f"({campaign.writer_comments:,} through EntityWriter), rollup worker running")
    share = WriteStream(cluster.dsn("writer", "primary"), "bench-share", group=64, total=campaign.writer_comments)
    cpu0, started = worker.cpu_s(), time.perf_counter()
    rss = PeakRss(worker)
    rss.start()
    share.start()

    def progress(done: int, chunks: int) -> None:
        if done % max(1, chunks // 10) == 0:
            log(f"analytics: bulk chunk {done}/{chunks}")

    bulk = bulk_load(cluster.dsn("owner", "primary"), campaign, progress=progress)
    share.join()
    sql = queries.load("bench")
    with psycopg.connect(cluster.dsn("admin", "primary"), autocommit=True) as conn:
        last_lsn = conn.execute(sql["wal_lsn"]).fetchone()[0]
    load_s = time.perf_counter() - started
    counted = counted_within(client, cluster.dsn("admin", "replica"), last_lsn, timeout_s=CATCH_UP_S)
    worker_cores = (worker.cpu_s() - cpu0) / (time.perf_counter() - started)
    worker_peak_mb = rss.stop()
    if counted.get("counted_after_replay_s") is not None:
        counted["exact_mentions"] = exact_mentions(cluster.dsn("admin", "replica"),
                                                   parse_time(counted["window_start"]),
                                                   parse_time(counted["window_end"]) + timedelta(milliseconds=1))
        counted["complete"] = counted["exact_mentions"] == counted["mentions"]
    out["load"] = {"bulk": bulk, "writer_share": {"docs": share.docs, "mentions": share.mentions,
                                                  "seconds": share.seconds, "errors": share.errors[:5]},
                   "seconds": load_s, "mentions_s": (bulk["mentions"] + share.mentions) / load_s,
                   "worker_cores": worker_cores, "worker_peak_rss_mb": worker_peak_mb, "counted": counted,
                   "last_lsn": last_lsn,
                   "span": [campaign.start.isoformat(), campaign.end.isoformat()]}
    log(f"analytics: loaded in {load_s:.0f} s; counted {counted.get('counted_after_replay_s')} s after replay; "
        "VACUUM ANALYZE")
    started = time.perf_counter()
    with psycopg.connect(cluster.dsn("owner", "primary"), autocommit=True) as conn:
        for name in ("vacuum_documents", "vacuum_entities", "vacuum_keys", "vacuum_rollups"):
            conn.execute(sql[name])
        lsn = conn.execute(sql["wal_lsn"]).fetchone()[0]
    cluster.wait_for_replay(lsn, timeout=900)
    out["load"]["vacuum_s"] = time.perf_counter() - started
    worker.catch_up(CATCH_UP_S)
    out["shape"] = data_shape(cluster.dsn("admin", "replica"))
    out["storage"] = storage(cluster.dsn("admin", "primary"), out["shape"]["mentions"])


def _latency(plan: AnalyticsPlan, cluster, client: StatsClient, out: dict) -> None:
    """Per window: entity-stats through the gateway, then the raw-scan baseline on the replica, with a write
    stream running throughout; rollup lag sampled during the entity-stats calls."""
    log(f"analytics: latency per window with a write stream of {plan.stream_docs_s:g} docs/s")
    stream = WriteStream(cluster.dsn("writer", "primary"), "bench-stream", group=max(1, int(plan.stream_docs_s / 10)),
                         docs_per_s=plan.stream_docs_s)
    stream.start()
    stream.ready.wait(60)
    time.sleep(1.0)
    lag = LagSampler(cluster.dsn("admin", "primary"))
    after, before = {}, {}
    out["latency"] = {"after": after, "before": before, "stream_docs_s": plan.stream_docs_s}
    lag.start()
    try:
        for name, query, window, label, _goal in WINDOWS:
            after[name] = entity_stats_latency(client, query, plan.warmups, plan.calls)
            before[name] = raw_scan_latency(cluster.dsn("analyst", "replica"), window, label, 20,
                                            warmups=min(plan.warmups, 1), calls=plan.raw_calls,
                                            timeout_ms=plan.statement_timeout_ms,
                                            stop_after_timeouts=plan.raw_stop_after_timeouts)
            log(f"analytics: {name}: entity-stats median {after[name]['median_ms']:.1f} ms, raw scan "
                f"{before[name]['median_ms']:.0f} ms ({before[name]['timeouts']} timeouts)")
    finally:
        out["latency"]["rollup_lag"] = lag.stop()
        stream.stop()
        stream.join(30)
        out["latency"]["stream"] = {"docs": stream.docs, "seconds": stream.seconds, "errors": stream.errors[:5]}
