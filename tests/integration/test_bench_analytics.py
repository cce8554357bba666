"""The analytics bench phase (bench/phases/analytics.py) at tiny sizes on a private cluster: it produces every
figure of its report, entity-stats never answers 5xx, and its section renders them. The real sizes run in
``make bench`` (``python -m bench.run --only analytics``); timings are not checked here."""

from __future__ import annotations

import pytest

from bench.phases import analytics
from tests.fixtures.pg import private_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    from devtools.pgcluster import PgBinariesNotFound, find_pg_bin

    try:
        find_pg_bin()
    except PgBinariesNotFound as exc:
        pytest.skip(str(exc))
    out: dict = {}
    with private_cluster(prefix="a") as cluster:
        analytics.measure(analytics.TINY, cluster, tmp_path_factory.mktemp("analytics"), out, run_id="t")
    return out


def test_every_window_is_answered_by_entity_stats_and_by_the_raw_scan_without_a_5xx(figures):
    after, before = figures["latency"]["after"], figures["latency"]["before"]
    assert set(after) == set(before) == {name for name, *_ in analytics.WINDOWS}
    for name, res in after.items():
        assert res["statuses"] == {"200": analytics.TINY.warmups + analytics.TINY.calls}, name
        assert res["median_ms"] > 0 and res["p95_ms"] >= res["median_ms"] and res["mentions"] > 0
        assert before[name]["calls_done"] == analytics.TINY.raw_calls and before[name]["median_ms"] > 0


def test_the_load_is_counted_completely_and_the_top_20_at_rest_are_exact(figures):
    load = figures["load"]
    assert load["bulk"]["mentions"] > 0 and load["writer_share"]["docs"] > 0 and not load["writer_share"]["errors"]
    assert load["counted"]["counted_after_replay_s"] is not None and load["counted"]["complete"]
    assert load["worker_cores"] > 0 and load["worker_peak_rss_mb"] > 0
    assert figures["shape"]["mentions"] == load["bulk"]["mentions"] + load["writer_share"]["mentions"]
    assert figures["shape"]["labels"] == 18
    rest = figures["at_rest"]  # tiny counts: a bound of a mention or two is far above 0.5 % here
    assert rest["same_entities"] and rest["within_bound"] and rest["entities"] == 20


def test_freshness_covers_every_comment_without_a_5xx(figures):
    fresh = figures["freshness"]
    assert fresh["statuses"] == {"200": analytics.TINY.freshness_comments}
    assert fresh["measured"] == analytics.TINY.freshness_comments and fresh["missed"] == 0
    assert fresh["p99_s"] is not None and fresh["poll_5xx"] == 0
    assert fresh["rollup_lag"]["samples"] > 0 and figures["latency"]["rollup_lag"]["samples"] > 0


def test_writer_rounds_drop_a_day_storage_and_analyst_files_are_measured(figures):
    levels = figures["writers"]["levels"]
    assert set(levels) == {str(n) for n in analytics.TINY.writer_levels}
    for res in levels.values():
        assert res["median_ratio"] > 0 and not res["errors"]
    assert figures["writers"]["locks"]["samples"] > 0 and figures["writers"]["locks"]["error"] is None
    drop = figures["drop_day"]
    assert drop["partitions_left"] == 0 and not drop["errors"] and drop["entities_s"] > 0
    assert figures["storage"]["rollups_mb_per_m"] > 0
    assert figures["analyst"] and all(f["ok"] for f in figures["analyst"].values())


def test_the_section_reports_every_goal(figures):
    text = analytics.section({"analytics": figures, "errors": {}})
    assert "Analytics at campaign volume" in text
    assert "not measured" not in text
    for name in ("5m", "1h", "1h ORG", "24h", "90m"):
        assert f"`{name}` median" in text
