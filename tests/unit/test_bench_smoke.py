"""The benchmark's quick-mode pieces work on tiny sizes (the real benchmark is `make bench`, not a test).

The load generators run against a stub HTTP server (no model, no database), the report renders a
results dict shaped like a real run's, and the profile summariser reads py-spy's collapsed format.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import clients, report
from bench.common import percentile
from bench.context import QUICK, Plan
from bench.profile import parse_collapsed, summarize


class _Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append(body)
        payload = json.dumps({"request_id": body.get("request_id"), "entities": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def stub(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(["Tim Cook visited Berlin.", "Zoë flew Delta to Reykjavík — 5★", "short"]))
    _Stub.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}", str(texts)
    server.shutdown()
    server.server_close()


def test_closed_loop_counts_completed_requests_with_unique_ids(stub):
    url, texts = stub
    result = clients.run_inline(
        {
            "url": url,
            "texts_path": texts,
            "mode": "closed",
            "clients": 3,
            "warmup_s": 0.1,
            "duration_s": 0.4,
            "id_prefix": "t",
        }
    )
    assert result["requests"] > 0 and result["statuses"] == {"200": result["requests"]}
    assert result["docs_s"] > 0 and result["p50_ms"] <= result["p99_ms"]
    ids = [body["request_id"] for body in _Stub.seen]
    assert len(ids) == len(set(ids))
    assert {body["text"] for body in _Stub.seen} <= {
        "Tim Cook visited Berlin.",
        "Zoë flew Delta to Reykjavík — 5★",
        "short",
    }


def test_open_loop_offers_the_requested_rate(stub):
    url, texts = stub
    result = clients.run_inline(
        {
            "url": url,
            "texts_path": texts,
            "mode": "open",
            "rate": 80,
            "warmup_s": 0.1,
            "duration_s": 0.8,
            "id_prefix": "o",
            "seed": 3,
            "preopen": 4,
        }
    )
    assert result["offered_rate"] == 80
    assert 20 <= result["requests"] <= 200  # Poisson around 64 requests
    assert result["dropped"] == 0 and not result["errors"]


def test_count_mode_sends_batches_and_samples_rss(stub):
    url, texts = stub
    result = clients.run_inline(
        {
            "url": url,
            "texts_path": texts,
            "mode": "count",
            "clients": 2,
            "docs_per_request": 5,
            "total_docs": 40,
            "rss_pid": os.getpid(),
            "rss_every_docs": 10,
            "id_prefix": "m",
        }
    )
    assert result["docs"] == 40
    assert [s["docs"] for s in result["rss"]] == [10, 20, 30, 40]
    assert all(s["rss_mb"] > 0 for s in result["rss"])
    batch = _Stub.seen[0]
    assert len(batch["documents"]) == 5 and len({d["id"] for d in batch["documents"]}) == 5


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([], 50) != percentile([], 50)  # NaN


def test_quick_plan_is_smaller_than_the_full_plan():
    full = Plan()
    assert QUICK.memory_docs < full.memory_docs and QUICK.closed_duration_s < full.closed_duration_s
    assert QUICK.closed_levels == full.closed_levels == (1, 4, 16, 64)


def _fake_results() -> dict:
    phase = {
        "docs_s": 300.0,
        "req_s": 300.0,
        "chars_s": 9e4,
        "p50_ms": 50.0,
        "p95_ms": 90.0,
        "p99_ms": 120.0,
        "statuses": {"200": 10},
        "cpu": {"fn": 0.9, "pg": 0.1, "client": 0.05, "other": 0.0, "wall_s": 5},
    }
    lag = {
        "samples": 10,
        "e2e_p50_s": 0.002,
        "e2e_p99_s": 0.01,
        "replay_lag_p50_s": 0.0,
        "replay_lag_p99_s": 0.004,
    }
    return {
        "meta": {"timestamp": "now", "mode": "quick"},
        "limits": {
            "ner_pipe128": {"docs_s": 330.0, "chars_s": 1e5, "cpu_docs_s": 340.0},
            "ner_pipe16": {"docs_s": 320.0, "chars_s": 1e5, "cpu_docs_s": 330.0},
            "ner_loop": {
                "docs_s": 240.0,
                "chars_s": 7e4,
                "doc_ms_p50": 3.0,
                "doc_ms_p95": 9.0,
                "doc_ms_p99": 60.0,
            },
        },
        "function": {
            "closed": {"16": phase, "64": phase},
            "batch": {"256": phase | {"clients": 2}},
            "latency": {"0.5": phase | {"offered_rate": 150.0, "short_p50_ms": 40.0}},
        },
        "seed": {"closed": {"16": phase | {"docs_s": 60.0}}},
        "cold": {"bare_full_s_median": 2.0, "fn_first_s_median": 2.2, "fn_first_s": [2.2]},
        "memory": {
            "rss": [{"docs": 5000, "rss_mb": 200.0}, {"docs": 100000, "rss_mb": 230.0}],
            "first_docs": 5000,
            "last_docs": 100000,
            "first_mb": 200.0,
            "last_mb": 230.0,
            "max_mb": 231.0,
            "ratio": 1.15,
        },
        "db": {
            "bulk": {"docs": 100, "rows": 300, "seconds": 0.1, "group": 128},
            "single": {"docs": 10, "rows": 30, "seconds": 0.05},
        },
        "lag": {"closed64": lag},
        "errors": {},
    }


def test_report_states_each_goal_as_met_or_not():
    text = report.render(_fake_results())
    assert "| # | measure | value | reference | ratio | goal |" in text
    assert "**met** — 64 clients ≥ 0.85× raw nlp.pipe(batch_size=128): 0.91×" in text
    assert "**met** — ≥ 3× the seed design's docs/s at 16 clients: 5.00×" in text
    assert "**NOT met** — RSS after 100,000 docs ≤ 1.10× RSS after 5,000: 1.15×" in text
    assert "**met** — replica lag p99 ≤ 1 s at max write load: 0.010 s" in text
    assert "2 CPU cores" in text


def test_report_survives_a_crashed_phase():
    results = {"meta": {}, "errors": {"function": "RuntimeError: boom"}}
    text = report.render(results)
    assert "not measured" in text and "phase **function** failed: RuntimeError: boom" in text


def test_profile_summary_splits_threads_and_waiting(tmp_path):
    from bench.profile import ENGINE_IDLE

    engine_idle = sorted(ENGINE_IDLE)[0]
    raw = tmp_path / "stacks.txt"
    handler = ("_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:83);"
               "run (concurrent/futures/thread.py:58)")
    raw.write_text(
        "_bootstrap (threading.py:1);NerEngine._run (functions/runtime/nlp.py:1);_pipe (spacy/util.py:1) 65\n"
        f"{handler};EdgeApp._call (functions/runtime/server.py:1);Condition.wait (threading.py:331) 15\n"
        f"{handler};EdgeApp._call (functions/runtime/server.py:1);dumps (json/__init__.py:1) 5\n"
        "_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:81) 4\n"
        "<module> (server.py:1);run (asyncio/runners.py:1);run_until_complete (asyncio/base_events.py:1);"
        "_run_once (asyncio/base_events.py:1);data_received (uvicorn/protocols/http/httptools_impl.py:1) 6\n"
        "<module> (server.py:1);load_handler (functions/runtime/server.py:48);load (spacy/util.py:1) 50\n"
        # the model process loading and warming up its model: start-up too
        "<module> (model_process.py:1);child_main (functions/runtime/model_process.py:1);"
        "load_pipeline (functions/runtime/nlp.py:1);load (spacy/util.py:1) 30\n"
        "<module> (model_process.py:1);child_main (functions/runtime/model_process.py:1);"
        "NerEngine.__init__ (functions/runtime/nlp.py:1);_pipe (spacy/util.py:1) 5\n"
        # the model worker blocked on its queue (a C call: the leaf is the line that made it)
        f"_bootstrap (threading.py:1);NerEngine._run {engine_idle} 3\n"
        # the event loop writing to a socket is running, although its module is selector_events
        "<module> (server.py:1);run (asyncio/runners.py:118);"
        "_SelectorSocketTransport.write (asyncio/selector_events.py:1) 2\n"
    )
    summary = summarize(parse_collapsed(raw))
    assert summary["samples"] == 100  # start-up samples are not the request path
    assert summary["threads"]["ner-worker (model process)"] == 65.0
    threads = "handler threads (handle(event, context))"
    assert summary["waiting"][threads] == 19.0  # 4 of them idle in the pool's queue: waiting, not CPU
    assert summary["categories"][threads]["JSON encode/decode"] == 5.0
    assert summary["categories"]["uvicorn event loop"]["HTTP: uvicorn / asyncio / socket I/O"] == 8.0
    assert summary["waiting"]["ner-worker (model process)"] == 3.0


def test_engine_stats_turn_two_metric_scrapes_into_batching_figures():
    from bench.metering import engine_stats

    before = {
        "nlp_model_batch_documents_sum": 100.0,
        "nlp_model_batch_documents_count": 10.0,
        "nlp_model_batch_seconds_sum": 1.0,
        "nlp_db_write_seconds_sum": 0.5,
        "nlp_db_write_seconds_count": 5.0,
    }
    after = {
        "nlp_model_batch_documents_sum": 900.0,
        "nlp_model_batch_documents_count": 60.0,
        "nlp_model_batch_seconds_sum": 10.0,
        "nlp_db_write_seconds_sum": 0.9,
        "nlp_db_write_seconds_count": 25.0,
    }
    stats = engine_stats(before, after, wall_s=10.0)
    assert stats["model_busy"] == 0.9 and stats["batch_docs_mean"] == 16.0
    assert stats["docs_per_commit"] == 40.0 and round(stats["commit_ms_mean"], 6) == 20.0
    assert engine_stats({}, after, 10.0) == {}


def test_edge_table_separates_model_busy_from_the_cpu_the_model_process_got():
    from bench.edge import table

    function = {"docs_s": 230.0, "p99_ms": 100.0, "docs_per_cpu_s": 190.0, "server_cores": 0.34,
                "model_cores": 0.87, "model_busy": 0.97, "mean_batch": 7.5, "ratios": [0.6, 0.7, 0.65],
                "ratio": 0.65, "raw_batch": 16, "ratio_same_batch": 0.8, "goal": 0.85, "met": False}
    result = {"rounds": 3, "round_s": 3.0, "loadavg_before": "0", "loadavg_after": "1", "quick": True,
              "corpora": {"short": {"median_chars": 104, "raw": {"16": {"docs_s": 356.0}},
                                    "function": {"16": function}}}}
    row = table(result).splitlines()[-1]
    assert "| 0.34 + 0.87 | 0.97 | 7.5 |" in row and "NOT met" in row
    # A result file written before the column existed still renders.
    del function["model_busy"]
    assert "| 0.34 + 0.87 | - | 7.5 |" in table(result).splitlines()[-1]


def test_every_listed_phase_is_a_module_with_a_run_function():
    from bench import phases

    assert phases.PHASES[:3] == ("limits", "cold", "function")
    for name in phases.PHASES:
        assert callable(phases.load(name).run), name


def test_only_selection_adds_the_phases_a_phase_reads_and_refuses_unknown_names():
    from bench import phases
    from bench.run import selected

    assert selected("db") == {"db", "limits"}
    assert selected("") == set(phases.PHASES)
    with pytest.raises(ValueError, match="nope"):
        selected("edge,nope")


def test_the_report_appends_each_phase_section_after_the_main_table():
    from bench.run import render

    results = _fake_results() | {"errors": {"edge": "RuntimeError: boom"}}
    text = render(results)
    assert text.index("## Caveats") < text.index("The edge phase failed: RuntimeError: boom")


def test_edge_cost_table_compares_cpu_per_comment_with_raw_at_the_matching_call_and_the_one_client_p50():
    from bench.edge import CALL, cpu_table

    def function(level, raw_batch, ratio, goal, p50=None):
        return {"docs_per_cpu_s": 280.0, "cpu_ratios": [ratio], "cpu_ratio": ratio, "cpu_goal": goal,
                "http_cpu_ms": 0.8, "model_cpu_ms": 2.7, "raw_batch": raw_batch, "p50_ms": p50}

    result = {"corpora": {"short": {
        "raw": {str(CALL): {"docs_per_cpu_s": 320.0, "p50_ms": 6.0}, "16": {"docs_per_cpu_s": 480.0}},
        "function": {"1": function(1, CALL, 0.52, None, p50=7.5), "16": function(16, 16, 0.60, 0.75)}}}}
    result["corpora"]["short"]["function"]["16"].update(mean_batch=7.6, raw_cpu_ms_same_batch=2.41)
    result["corpora"]["short"]["function"]["1"]["raw_idle_p50_ms"] = 6.8
    one, sixteen = cpu_table(result).splitlines()[-2:]
    assert "nlp(text) 320" in one and "7.5 vs 6.0 + 2 ms: met (raw after idling: 6.8)" in one
    assert "pipe(16) 480" in sixteen and ">= 0.75 NOT met" in sixteen and "| 0.80 + 2.70 |" in sixteen
    # The model process's own yardstick: raw at the batch the model formed.
    assert "| 2.41 (pipe(8)) |" in sixteen and "| - |" in one
    # A result file written before these figures existed renders no table.
    assert cpu_table({"corpora": {"short": {"raw": {}, "function": {"16": {"ratio": 0.7}}}}}) == ""


def test_raw_nlp_text_paced_with_idle_time_sleeps_after_each_comment_and_times_only_the_model():
    from bench.edge import raw_call

    class Doc:
        ents = ()

    def nlp(text):
        return Doc()

    back_to_back = raw_call(nlp, ["a", "b"], budget=0.05)
    paced = raw_call(nlp, ["a", "b"], budget=0.05, idle_ms=5.0)
    assert paced["docs_s"] <= 1000.0 / 5.0  # one comment per idle gap at most
    assert back_to_back["docs_s"] > 4 * paced["docs_s"]
    assert paced["p50_ms"] < 1.0  # the sleep is not part of the comment's time
