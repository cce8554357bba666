"""The report section of the analytics phase (bench/phases/analytics.py): the issue's goals as met / NOT met,
then the figures behind them. Pure functions over the phase's results (a partial result renders too)."""

from __future__ import annotations

from bench.report import fmt

TITLE = "Analytics at campaign volume"
# (window name, goal: median at most this many ms), as bench/phases/analytics.py WINDOWS
WINDOW_GOALS_MS = {"5m": 150.0, "1h": 150.0, "1h ORG": 150.0, "24h": 150.0, "90m": 500.0}
ANALYST_GOAL_S = 1.0
FRESHNESS_GOAL_S = 2.0
FRESHNESS_MIN_COMMENTS = 1000
COUNTED_GOAL_S = 60.0
WRITER_GOAL = 0.85


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**NOT met**", None: "not measured"}[met]


def _le(value, limit) -> bool | None:
    return None if value is None else value <= limit


def goals(a: dict) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met) for every acceptance item of issue 22 the phase measures."""
    rows: list[tuple[str, str, bool | None]] = []
    after = (a.get("latency") or {}).get("after") or {}
    for name, limit in WINDOW_GOALS_MS.items():
        res = after.get(name)
        if res is None:
            rows.append((f"entity-stats `{name}` median ≤ {limit:g} ms", "–", None))
            continue
        met = _le(res.get("median_ms"), limit)
        if met is not None and res.get("failed"):
            met = False
        rows.append((f"entity-stats `{name}` median ≤ {limit:g} ms, no 5xx",
                     f"{fmt(res.get('median_ms'))} ms (p95 {fmt(res.get('p95_ms'))}), {res.get('errors_5xx', 0)} 5xx",
                     met))
    analyst = a.get("analyst") or {}
    if analyst:
        slowest = max(analyst.items(), key=lambda kv: kv[1].get("median_s") or float("inf"))
        ok = all(f.get("ok") for f in analyst.values())
        worst = slowest[1].get("median_s")
        rows.append((f"each sql/analyst/*.sql ≤ {ANALYST_GOAL_S:g} s on the replica",
                     f"slowest {slowest[0]} {fmt(worst, 3)} s" + ("" if ok else " (a file failed)"),
                     None if worst is None else ok and worst <= ANALYST_GOAL_S))
    rest = a.get("at_rest")
    if rest:
        rows.append(("at rest: top 20 for 1 h = exact top 20 (ties at 20 aside), counts within a bound ≤ 0.5 %",
                     f"same entities {rest.get('same_entities')}, within bound {rest.get('within_bound')}, max "
                     f"stated error {fmt(rest.get('max_error_pct'), 3)} %, exact {rest.get('exact')}", rest.get("ok")))
    fresh = a.get("freshness")
    if fresh:
        enough = (fresh.get("measured") or 0) >= FRESHNESS_MIN_COMMENTS and not fresh.get("missed")
        p99 = fresh.get("p99_s")
        rows.append((f"freshness: watermark passes each commit within {FRESHNESS_GOAL_S:g} s, p99 over ≥ "
                     f"{FRESHNESS_MIN_COMMENTS:,} comments at 100/s",
                     f"p99 {fmt(p99, 2)} s over {fresh.get('measured')} comments ({fresh.get('missed')} never seen)",
                     None if p99 is None else bool(enough and p99 <= FRESHNESS_GOAL_S)))
    counted = (a.get("load") or {}).get("counted")
    if counted:
        secs = counted.get("counted_after_replay_s")
        rows.append((f"a bulk load is counted within {COUNTED_GOAL_S:g} s of the replica replaying it",
                     f"{fmt(secs, 1)} s after replay; label mix complete: {counted.get('complete')}",
                     None if secs is None else secs <= COUNTED_GOAL_S and counted.get("complete") is not False))
    writers = a.get("writers") or {}
    for level, res in (writers.get("levels") or {}).items():
        ratio = res.get("median_ratio")
        rows.append((f"EntityWriter with rollups ≥ {WRITER_GOAL:g}× without, {level} writer(s)",
                     f"{fmt(ratio, 2)}× (median of {len(res.get('ratios') or [])} rounds)",
                     None if ratio is None else ratio >= WRITER_GOAL))
    locks = writers.get("locks")
    if locks:
        rows.append(("no lock wait between writers on rollup rows (pg_locks sampled)",
                     f"{locks.get('writer_waits_on_rollup_tables')} on rollup tables, {locks.get('writer_waits')} "
                     f"writer waits in all, {locks.get('samples'):,} samples",
                     locks.get("writer_waits_on_rollup_tables") == 0 and locks.get("samples", 0) > 0))
    return rows


def _data(a: dict) -> list[str]:
    shape, load, plan = a.get("shape") or {}, a.get("load") or {}, a.get("plan") or {}
    lines = []
    if shape:
        lines.append(f"* Data: {fmt(shape.get('mentions'))} mentions in {fmt(shape.get('documents'))} comments, "
                     f"{fmt(shape.get('distinct_entities'))} distinct (label, norm), {shape.get('labels')} labels, "
                     f"{shape.get('sources')} sources, spread over the {plan.get('hours', 1):g} h before the load "
                     "(writer share: at load time), VACUUM ANALYZE done, replica caught up.")
    if load:
        bulk, share = load.get("bulk") or {}, load.get("writer_share") or {}
        lines.append(f"* Load: {fmt(bulk.get('mentions'))} mentions by bulk SQL in {bulk.get('chunks')} "
                     f"time-ordered transactions + {fmt(share.get('mentions'))} through EntityWriter, "
                     f"{fmt(load.get('seconds'), 0)} s ({fmt(load.get('mentions_s'), 0)} mentions/s) with the "
                     "rollup worker running "
                     f"({fmt(load.get('worker_cores'), 2)} cores incl. its backend, peak RSS "
                     f"{fmt(load.get('worker_peak_rss_mb'), 0)} MB); VACUUM ANALYZE + replay "
                     f"{fmt(load.get('vacuum_s'), 0)} s.")
    return lines


def _latency_table(a: dict) -> list[str]:
    lat = a.get("latency") or {}
    after, before = lat.get("after") or {}, lat.get("before") or {}
    if not after:
        return []
    lines = ["", f"Latency per window, limit 20, with a write stream of {fmt(lat.get('stream_docs_s'), 0)} docs/s "
             "through EntityWriter. *After*: entity-stats through the local gateway (rollups), "
             f"{(a.get('plan') or {}).get('calls')} calls after {(a.get('plan') or {}).get('warmups')} warm-ups. "
             "*Before*: the old raw-scan queries (top + label mix over analytics.entity_mentions, "
             "sql/queries/bench.sql) as nlp_analyst on the replica with the 3 s statement timeout; a timed-out "
             "call counts 3 s, a window stops after 3 timeouts.", "",
             "| window | after: median / p95 ms | statuses | mentions in the answer's window | before: median / p95 ms "
             "| before: timeouts / calls made | goal |", "|---|---|---|---|---|---|---|"]
    for name, res in after.items():
        raw = before.get(name) or {}
        limit = WINDOW_GOALS_MS.get(name)
        met = _le(res.get("median_ms"), limit) if limit else None
        lines.append(f"| `{res.get('query')}` | {fmt(res.get('median_ms'))} / {fmt(res.get('p95_ms'))} | "
                     f"{res.get('statuses')} | {fmt(res.get('mentions'))} | {fmt(raw.get('median_ms'), 0)} / "
                     f"{fmt(raw.get('p95_ms'), 0)} | {raw.get('timeouts')} / {raw.get('calls_made')} | "
                     f"≤ {limit:g} ms: {_verdict(met)} |")
    return lines


def _writer_table(a: dict) -> list[str]:
    writers = a.get("writers") or {}
    levels = writers.get("levels") or {}
    if not levels:
        return []
    lines = ["", f"EntityWriter throughput ({writers.get('group')} documents, ~{5 * (writers.get('group') or 0)} "
             f"mentions per transaction, {fmt(writers.get('seconds'), 1)} s arms), rollup worker running (caught up "
             "at the start of the arm) or stopped, in alternating order:", "",
             "| writers | with rollups docs/s (median) | without docs/s (median) | median ratio | per-round ratios "
             "| worker cores | goal |", "|---|---|---|---|---|---|---|"]
    for level, res in levels.items():
        ratio = res.get("median_ratio")
        lines.append(f"| {level} | {fmt(res.get('on_median_docs_s'), 0)} | {fmt(res.get('off_median_docs_s'), 0)} | "
                     f"{fmt(ratio, 2)}× | {', '.join(f'{r:.2f}' for r in res.get('ratios') or [])} | "
                     f"{fmt(res.get('worker_cores'), 2)} | ≥ {WRITER_GOAL:g}×: "
                     f"{_verdict(None if ratio is None else ratio >= WRITER_GOAL)} |")
    return lines


def _other(a: dict) -> list[str]:
    lines = [""]
    counted = (a.get("load") or {}).get("counted") or {}
    if counted:
        lines.append(f"* Bulk load counted: the replica replayed the load's last commit "
                     f"{fmt(counted.get('replayed_s'), 1)} s after it; entity-stats' watermark passed it "
                     f"{fmt(counted.get('counted_after_replay_s'), 1)} s "
                     f"later (label mix {fmt(counted.get('mentions'))} mentions in its 1 h window, base tables "
                     f"{fmt(counted.get('exact_mentions'))}).")
    fresh = a.get("freshness") or {}
    if fresh:
        lines.append(f"* Freshness at {fmt(fresh.get('rate_sent'), 0)} comments/s through ner-processor "
                     f"({fresh.get('offered')} sent, statuses {fresh.get('statuses')}): watermark passes the commit "
                     f"p50 {fmt(fresh.get('p50_s'), 2)} s, p99 {fmt(fresh.get('p99_s'), 2)} s, max "
                     f"{fmt(fresh.get('max_s'), 2)} s after the answer; polls: {fresh.get('poll_statuses')}, median "
                     f"{fmt(fresh.get('poll_median_ms'))} ms.")
    for key, label in (("latency", "the latency step's write stream"), ("freshness", "the freshness stream")):
        lag = (a.get(key) or {}).get("rollup_lag") or {}
        if lag.get("samples"):
            lines.append(f"* Rollup lag (clock − watermark on the primary, every 100 ms) during {label}: p50 "
                         f"{fmt(lag.get('p50_s'), 2)} s, p99 {fmt(lag.get('p99_s'), 2)} s, "
                         f"max {fmt(lag.get('max_s'), 2)} s.")
    st = a.get("storage") or {}
    if st.get("mentions"):
        lines.append(f"* Storage per million mentions: raw entities {fmt(st.get('raw_entities_mb_per_m'))} MB, raw "
                     f"documents {fmt(st.get('raw_documents_mb_per_m'))} MB (bodies of 40–239 chars), keys "
                     f"{fmt(st.get('keys_mb_per_m'))} MB, rollups {fmt(st.get('rollups_mb_per_m'), 2)} MB "
                     f"({fmt(st.get('rollups_bytes', 0) / 2**20)} MB in all).")
    drop = a.get("drop_day") or {}
    if drop:
        lines.append(f"* Drop a day ({fmt(drop.get('fill_mentions'))} mentions, {fmt(drop.get('fill_documents'))} "
                     f"comments) with {drop.get('writers')} writers running: entities partition "
                     f"{fmt(drop.get('entities_s'), 3)} s, documents partition {fmt(drop.get('documents_s'), 3)} s; "
                     f"longest writer lock wait {fmt(drop.get('longest_writer_wait_s'), 3)} s, "
                     f"{fmt(drop.get('writes_during'))} documents written during the drop, errors "
                     f"{drop.get('errors') or 'none'}.")
    analyst = a.get("analyst") or {}
    if analyst:
        lines.append("* sql/analyst/ with default variables (psql on the replica, median): " + ", ".join(
            f"{name} {fmt(res.get('median_s'), 3)} s" + ("" if res.get("ok") else f" FAILED {res.get('error')}")
            for name, res in analyst.items()) + ".")
    locks = (a.get("writers") or {}).get("locks") or {}
    if locks.get("waits"):
        top = sorted(locks["waits"].items(), key=lambda kv: -kv[1])[:8]
        lines.append("* Lock waits seen during the writer rounds (waiter, lock, relation, mode <- holders: samples): "
                     + "; ".join(f"{k}: {n}" for k, n in top) + ".")
    lines.append(f"* Load average: {a.get('loadavg_start')} at the start of the phase, "
                 f"{a.get('loadavg_end')} at its end.")
    return lines


def render(a: dict | None, error: str | None = None) -> str:
    """The markdown section (empty when the phase did not run; the figures so far when it crashed)."""
    if not a and not error:
        return ""
    text = f"\n\n## {TITLE} (bench/phases/analytics.py)\n\n"
    if error:
        text += f"The analytics phase failed: {error}\n\n"
    if not a:
        return text
    rows = goals(a)
    if rows:
        text += "| goal (issue 22) | measured | |\n|---|---|---|\n"
        text += "".join(f"| {goal} | {value} | {_verdict(met)} |\n" for goal, value, met in rows)
        text += "\n"
    text += "\n".join(_data(a) + _latency_table(a) + _writer_table(a) + _other(a)) + "\n"
    return text
