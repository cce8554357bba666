"""Turn one run's results (a JSON-able dict) into the markdown report: one table of absolute figures and
ratios, the goals as met / not met, and the caveats. Pure functions: the smoke test renders fake results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CAVEATS = (
    "The machine has 2 CPU cores in total, shared by the function process, the load-generator process and "
    "PostgreSQL (primary + replica), and by whatever else runs on it; the raw spaCy figures come from a "
    "process that had the CPU to itself. Absolute figures are noisy on a shared machine: compare the ratios, "
    "which come from the same run, the same corpus and the same database.",
    "Throughput is measured from requests completed inside a fixed window after a warm-up; latency "
    "percentiles at fixed loads are open-loop (Poisson arrivals, latency from the scheduled send time).",
)


@dataclass
class Goal:
    name: str
    value: float | None
    limit: float
    higher_is_better: bool
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    @property
    def status(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


def _get(d: dict | None, *keys, default=None):
    cur = d
    for key in keys:
        if not isinstance(cur, dict) or key not in cur:
            return default
        cur = cur[key]
    return cur


def _ratio(a, b) -> float | None:
    if a is None or b is None or not b:
        return None
    if isinstance(a, float) and math.isnan(a):
        return None
    return a / b


def fmt(value, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    else:
        text = f"{value:,}"
    return text + unit


def fmt_ratio(value) -> str:
    return "–" if value is None else f"{value:.2f}×"


def goals(r: dict) -> list[Goal]:
    lim = r.get("limits") or {}
    pipe128 = _get(lim, "ner_pipe128", "docs_s")
    pipe16 = _get(lim, "ner_pipe16", "docs_s")
    closed = _get(r, "function", "closed", default={}) or {}
    batch = _get(r, "function", "batch", default={}) or {}
    seed = _get(r, "seed", "closed", default={}) or {}
    lat50 = _get(r, "function", "latency", "0.5", default={}) or {}
    cold = r.get("cold") or {}
    mem = r.get("memory") or {}
    # The worst p99 of every phase that ran at full write speed (64 clients, batch 256, memory run).
    lag_p99 = [m["e2e_p99_s"] for m in (r.get("lag") or {}).values()
               if m and m.get("samples") and m.get("e2e_p99_s") is not None]
    return [
        Goal("64 clients ≥ 0.85× raw nlp.pipe(batch_size=128)",
             _ratio(_get(closed, "64", "docs_s"), pipe128), 0.85, True),
        Goal("16 clients ≥ 0.85× raw nlp.pipe(batch_size=16)",
             _ratio(_get(closed, "16", "docs_s"), pipe16), 0.85, True),
        Goal("batch requests of 256 docs ≥ 0.9× raw nlp.pipe(batch_size=128)",
             _ratio(_get(batch, "256", "docs_s"), pipe128), 0.9, True),
        Goal("≥ 3× the seed design at 16 clients",
             _ratio(_get(closed, "16", "docs_s"), _get(seed, "16", "docs_s")), 3.0, True),
        Goal("ready (first persisted answer) ≤ 1.3× bare spacy.load()",
             _ratio(cold.get("fn_first_s_median"), cold.get("bare_full_s_median")), 1.3, False),
        Goal(f"RSS after {fmt(mem.get('last_docs'), 0)} docs ≤ 1.10× RSS after {fmt(mem.get('first_docs'), 0)}",
             mem.get("ratio"), 1.10, False),
        Goal("p99 ≤ 4× p50 at 50% of max throughput",
             _ratio(lat50.get("p99_ms"), lat50.get("p50_ms")), 4.0, False),
        Goal("replica lag p99 ≤ 1 s at max write load", max(lag_p99) if lag_p99 else None, 1.0, False),
    ]


def _row(table: list, section: str, what: str, value: str, reference: str = "", ratio: str = "",
         goal: str = "") -> None:
    table.append((section, what, value, reference, ratio, goal))


def _cpu(phase: dict | None) -> str:
    cpu = (phase or {}).get("cpu")
    if not cpu:
        return ""
    return (f"cores: fn {cpu['fn']:.2f} · pg {cpu['pg']:.2f} · client {cpu['client']:.2f} · "
            f"other {cpu['other']:.2f}")


def render(r: dict) -> str:
    meta = r.get("meta", {})
    lim = r.get("limits") or {}
    pipe128 = _get(lim, "ner_pipe128", "docs_s")
    pipe16 = _get(lim, "ner_pipe16", "docs_s")
    closed = _get(r, "function", "closed", default={}) or {}
    batch = _get(r, "function", "batch", default={}) or {}
    latency = _get(r, "function", "latency", default={}) or {}
    seed = _get(r, "seed", "closed", default={}) or {}
    cold = r.get("cold") or {}
    sizes = r.get("sizes") or {}
    mem = r.get("memory") or {}
    db = r.get("db") or {}
    lag = r.get("lag") or {}
    glist = goals(r)
    gstat = {g.name: g for g in glist}
    t: list[tuple] = []

    def g(prefix: str) -> str:
        for name, goal in gstat.items():
            if name.startswith(prefix):
                return f"{goal.status} (goal {'≥' if goal.higher_is_better else '≤'} {goal.limit:g}×)" \
                    if "lag" not in name else f"{goal.status} (goal ≤ 1 s)"
        return ""

    # 1. limits
    for key, label in (("ner_pipe128", "raw NER-only `nlp.pipe(batch_size=128)`"),
                       ("ner_pipe16", "raw NER-only `nlp.pipe(batch_size=16)`"),
                       ("ner_loop", "raw NER-only `nlp(text)` loop"),
                       ("full_loop", "raw full pipeline `nlp(text)` loop (naive handler)")):
        m = lim.get(key)
        if m:
            _row(t, "1 limit", label, f"{fmt(m['docs_s'])} docs/s · {fmt(m['chars_s'] / 1000, 1)}k chars/s",
                 f"{fmt(m.get('cpu_docs_s'))} docs/CPU-s", fmt_ratio(_ratio(m["docs_s"], pipe128)))
    if lim.get("ner_long"):
        _row(t, "1 limit", f"raw NER-only, {lim['ner_long']['docs']} texts of ~20k chars",
             f"{fmt(lim['ner_long']['ms_per_doc'], 0)} ms/doc")
    # 2. function path
    for n, m in sorted(closed.items(), key=lambda kv: int(kv[0])):
        ref, ref_name = (pipe16, "pipe(16)") if n == "16" else (pipe128, "pipe(128)")
        goal = g("64 clients") if n == "64" else g("16 clients") if n == "16" else ""
        _row(t, "2a function", f"{n} closed-loop client(s), single comments",
             f"{fmt(m['docs_s'])} docs/s · p50 {fmt(m['p50_ms'])} ms",
             f"vs raw {ref_name} {fmt(ref)}", fmt_ratio(_ratio(m["docs_s"], ref)), goal)
    for n, m in sorted(batch.items(), key=lambda kv: int(kv[0])):
        _row(t, "2b function", f"batch requests of {n} docs ({m.get('clients', '?')} clients)",
             f"{fmt(m['docs_s'])} docs/s · {fmt(m['chars_s'] / 1000, 1)}k chars/s",
             f"vs raw pipe(128) {fmt(pipe128)}", fmt_ratio(_ratio(m["docs_s"], pipe128)),
             g("batch requests") if n == "256" else "")
    # 3. seed design
    for n, m in sorted(seed.items(), key=lambda kv: int(kv[0])):
        ours = _get(closed, n, "docs_s")
        _row(t, "3 seed design", f"seed design, {n} closed-loop client(s)",
             f"{fmt(m['docs_s'])} docs/s · p50 {fmt(m['p50_ms'])} ms",
             f"function {fmt(ours)} docs/s", fmt_ratio(_ratio(ours, m["docs_s"])) + " (function/seed)",
             g("≥ 3×") if n == "16" else "")
    # 4. latency
    for frac, m in sorted(latency.items(), key=lambda kv: float(kv[0])):
        ratio = _ratio(m.get("p99_ms"), m.get("p50_ms"))
        _row(t, "4 latency", f"open loop at {float(frac):.0%} of max ({fmt(m['offered_rate'])} req/s offered)",
             f"p50 {fmt(m['p50_ms'])} · p95 {fmt(m['p95_ms'])} · p99 {fmt(m['p99_ms'])} ms",
             f"achieved {fmt(m['req_s'])} req/s", fmt_ratio(ratio) + " (p99/p50)",
             g("p99") if frac == "0.5" else "")
    # 5. cold start
    if cold:
        _row(t, "5 cold start", "bare `import spacy; spacy.load(model)` (fresh process, end to end)",
             f"{fmt(cold.get('bare_full_s_median'), 2)} s", f"NER-only load {fmt(cold.get('bare_ner_s_median'), 2)} s")
        _row(t, "5 cold start", "function: process start → listening / ready (readiness 200)",
             f"{fmt(cold.get('fn_listen_s_median'), 2)} s / {fmt(cold.get('fn_ready_s_median'), 2)} s")
        _row(t, "5 cold start", "function: process start → first persisted 200 answer",
             f"{fmt(cold.get('fn_first_s_median'), 2)} s", f"median of {len(cold.get('fn_first_s', []))}",
             fmt_ratio(_ratio(cold.get("fn_first_s_median"), cold.get("bare_full_s_median"))) + " of bare load",
             g("ready"))
    if sizes:
        _row(t, "5 image", "installed size: venv site-packages / model package",
             f"{fmt(sizes.get('site_packages_mb'), 0)} MB / {fmt(sizes.get('model_mb'), 1)} MB")
    # 6. memory
    if mem.get("rss"):
        _row(t, "6 memory", f"RSS after {fmt(mem['first_docs'], 0)} → {fmt(mem['last_docs'], 0)} distinct docs "
             f"(batches of {mem.get('batch')})",
             f"{fmt(mem['first_mb'])} → {fmt(mem['last_mb'])} MB (max {fmt(mem['max_mb'])})",
             f"after start-up {fmt(mem.get('start_mb'))} MB · {fmt(mem.get('docs_s'))} docs/s",
             fmt_ratio(mem.get("ratio")), g("RSS"))
    # 7. database
    bulk, single, seeddb = db.get("bulk"), db.get("single"), db.get("seed")
    for m, label in ((bulk, "EntityWriter group commit ({group} docs/commit)"),
                     (single, "EntityWriter one document per commit"),
                     (seeddb, "seed design: one JSONB row + commit per comment (psycopg2)")):
        if m:
            ms_doc = m["seconds"] * 1000 / m["docs"]
            _row(t, "7 database", label.format(group=m.get("group")),
                 f"{fmt(ms_doc, 3)} ms/doc · {fmt(m['rows'] / m['seconds'], 0)} rows/s",
                 f"{fmt(m['docs'] / m['seconds'], 0)} docs/s",
                 fmt_ratio(_ratio(single["seconds"] / single["docs"], bulk["seconds"] / bulk["docs"]))
                 + " cheaper than 1/commit" if m is bulk and single else "")
    lag_rows = (("closed64", "replica lag, 64 single-comment clients"), ("batch", "replica lag, batch-256 clients"),
                ("max_load", "replica lag, memory run (batches, full speed)"))
    last_lag = [key for key, _ in lag_rows if _get(lag, key, "samples")][-1:] or [None]
    for key, label in lag_rows:
        m = lag.get(key)
        if m and m.get("samples"):
            _row(t, "7 database", f"{label} (end to end / pg_stat_replication.replay_lag)",
                 f"p50 {fmt(m['e2e_p50_s'] * 1000, 1)} · p99 {fmt(m['e2e_p99_s'] * 1000, 1)} ms",
                 f"replay_lag p50 {fmt(m['replay_lag_p50_s'] * 1000, 1)} · p99 "
                 f"{fmt(m['replay_lag_p99_s'] * 1000, 1)} ms · {m['samples']} samples", "",
                 g("replica lag") if key == last_lag[0] else "")

    out = [f"# nlp-enrichment benchmark — {meta.get('timestamp', '?')} ({meta.get('mode', '?')} mode)", ""]
    out.append(f"spaCy {lim.get('spacy', '?')}, model {lim.get('model', '?')} {lim.get('model_version', '')}, "
               f"{meta.get('cores', '?')} cores, load average {meta.get('loadavg_start', '?')} → "
               f"{meta.get('loadavg_end', '?')}, run took {fmt(meta.get('elapsed_s'), 0)} s. "
               f"Corpus: {meta.get('corpus', '?')}. Function settings: {meta.get('fn_env_text', 'defaults')}.")
    out.append("")
    out.append("| # | measure | value | reference | ratio | goal |")
    out.append("|---|---|---|---|---|---|")
    for row in t:
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    out.append("")
    out.append("## Goals")
    out.append("")
    for goal in glist:
        value = "–" if goal.met is None else (f"{goal.value:.3f} s" if "lag" in goal.name else f"{goal.value:.2f}×")
        out.append(f"- **{goal.status}** — {goal.name}: {value}")
    out.append("")
    details = []
    for n, m in sorted(closed.items(), key=lambda kv: int(kv[0])):
        details.append(f"- function, {n} clients: {_cpu(m)}; server-side mean ner_ms {fmt(_get(m, 'server', 'ner_ms_mean'))}"
                       f" · db_ms {fmt(_get(m, 'server', 'db_ms_mean'))} · duration_ms "
                       f"{fmt(_get(m, 'server', 'duration_ms_mean'))}; statuses {m.get('statuses')}; "
                       f"client CPU {fmt(m.get('client_cpu_s'), 2)} s")
    for n, m in sorted(batch.items(), key=lambda kv: int(kv[0])):
        details.append(f"- function, batch {n}: {_cpu(m)}; statuses {m.get('statuses')}")
    for n, m in sorted(seed.items(), key=lambda kv: int(kv[0])):
        details.append(f"- seed design, {n} clients: {_cpu(m)}; statuses {m.get('statuses')}")
    if mem.get("rss"):
        series = ", ".join(f"{s['docs'] // 1000}k: {s['rss_mb']:.0f}" for s in mem["rss"])
        details.append(f"- RSS (MB) by documents processed: {series}")
    for phase, err in (r.get("errors") or {}).items():
        details.append(f"- phase **{phase}** failed: {err}")
    if details:
        out.append("## Details")
        out.append("")
        out.extend(details)
        out.append("")
    out.append("## Caveats")
    out.append("")
    out.extend(f"- {c}" for c in CAVEATS)
    out.append("")
    return "\n".join(out)
