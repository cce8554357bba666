"""bench/image.py's table rows and the StartedAt parsing the cold start is timed from (no engine needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from bench import image
from scripts.image.container import parse_started_at

RESULT = {"engine": "podman", "sizes_mb": {"ner-processor": 375.2, "entity-stats": 191.2},
          "bare_s": [1.0, 1.1, 1.2], "bare_s_median": 1.1, "first_s_median": 1.32, "ready_s_median": 1.3,
          "first_cpu_s_median": 1.0, "bare_cpu_s_median": 1.25, "cold_ratio": 1.2, "cold_cpu_ratio": 0.8,
          "loadavg": (1.5, 1.0, 1.0), "rss_start_mb": 145.0, "rss_warm_mb": 155.0, "warmup_docs": 200}


def test_rows_state_sizes_cold_start_ratio_against_the_goal_and_rss():
    rows = image.render(RESULT)
    assert "ner-processor 375 MB / entity-stats 191 MB" in rows
    assert "1.20× of bare load | **met** (goal ≤ 1.3×)" in rows
    assert "145.0 → 155.0 MB" in rows and "0.80×" in rows
    slow = image.render({**RESULT, "cold_ratio": 1.31})
    assert "**NOT met**" in slow


def test_a_skipped_or_crashed_phase_still_gets_a_row_that_says_why():
    assert "not measured: no container engine" in image.render({"skipped": "no container engine"})
    assert "not measured: ImageError: boom" in image.render(None, "ImageError: boom")
    assert image.render(None) == ""


def test_started_at_of_docker_and_podman_parse_to_the_same_instant():
    expected = datetime(2026, 11, 30, 8, 4, 39, 123456, tzinfo=UTC).timestamp()
    assert parse_started_at("2026-11-30T08:04:39.123456789Z") == expected
    assert parse_started_at("2026-11-30T08:04:39.123456789+00:00") == expected
    assert parse_started_at("2026-11-30T08:04:39Z") == datetime(2026, 11, 30, 8, 4, 39, tzinfo=UTC).timestamp()
