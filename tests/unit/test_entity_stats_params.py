"""entity-stats request validation and the handler edge, without a database."""

from __future__ import annotations

import importlib.util
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from functions.runtime import settings, stats_params
from functions.runtime.analytics import AnalyticsService
from functions.runtime.contract import Context, Event, Headers, Query
from functions.runtime.errors import InvalidField, Unavailable
from functions.runtime.settings import Settings
from functions.runtime.stats_params import parse_query_params

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "entity-stats" / "handler.py"


def params(query_string: str) -> dict:
    return parse_query_params(Query(query_string))


def invalid_field(query_string: str) -> str:
    with pytest.raises(InvalidField) as info:
        params(query_string)
    return info.value.field


def test_defaults_are_last_hour_all_labels_all_sources_top_20_eventual():
    assert params("") == {"window": timedelta(hours=1), "window_text": "1h", "label": None, "limit": 20,
                          "consistency": "eventual", "min_lsn": None, "source": ""}


def test_a_source_names_one_campaign_and_an_overlong_one_is_a_422():
    assert params("source=spring-sale")["source"] == "spring-sale"
    with pytest.raises(InvalidField) as info:
        params("source=" + "x" * 201)
    assert info.value.field == "source"


@pytest.mark.parametrize(("raw", "expected"), [
    ("15m", timedelta(minutes=15)), ("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)), ("30d", timedelta(days=30)), ("2w", timedelta(weeks=2)),
    ("90s", timedelta(seconds=90)), ("1H", timedelta(hours=1)),
])
def test_window_accepts_amount_and_unit(raw, expected):
    assert params(f"window={raw}")["window"] == expected


@pytest.mark.parametrize("raw", ["0m", "31d", "5w", "1y", "h", "-1h", "1.5h", "1 hour", "abc", "99999999h"])
def test_window_rejects_zero_too_long_or_malformed(raw):
    assert invalid_field(f"window={raw}") == "window"


def test_label_is_case_insensitive_and_empty_means_all():
    assert params("label=org")["label"] == "ORG"
    assert params("label=WORK_OF_ART")["label"] == "WORK_OF_ART"
    assert params("label=")["label"] is None


@pytest.mark.parametrize("raw", ["1ORG", "OR G", "ORG;DROP", "_X", "A" * 33, "ÖRG"])
def test_label_rejects_non_label_tokens(raw):
    assert invalid_field(f"label={raw}") == "label"


def test_every_ontonotes_label_is_accepted():
    for label in stats_params.ONTONOTES_LABELS:
        assert params(f"label={label}")["label"] == label


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("100", 100), (" 7 ", 7)])
def test_limit_within_bounds(raw, expected):
    assert params(f"limit={raw}")["limit"] == expected


@pytest.mark.parametrize("raw", ["0", "101", "-1", "ten", "1e2", "2.5"])
def test_limit_out_of_bounds_or_not_integer(raw):
    assert invalid_field(f"limit={raw}") == "limit"


def test_consistency_values():
    assert params("consistency=STRONG")["consistency"] == "strong"
    assert params("consistency=eventual")["consistency"] == "eventual"
    assert invalid_field("consistency=linearizable") == "consistency"


@pytest.mark.parametrize(("raw", "expected"), [("0/16B3748", "0/16B3748"), ("1a/ff", "1A/FF"),
                                               ("FFFFFFFF/FFFFFFFF", "FFFFFFFF/FFFFFFFF")])
def test_min_lsn_is_hex_pair(raw, expected):
    assert params(f"min_lsn={raw}")["min_lsn"] == expected


@pytest.mark.parametrize("raw", ["16B3748", "0/", "/1", "0/XYZ", "100000000/0", "0/1/2", "0x0/1"])
def test_min_lsn_rejects_non_lsn(raw):
    assert invalid_field(f"min_lsn={raw}") == "min_lsn"


def test_first_value_wins_and_unknown_parameters_are_ignored():
    assert params("limit=5&limit=500&_=12345")["limit"] == 5


def test_format_window_uses_the_largest_whole_unit():
    assert stats_params.format_window(timedelta(hours=24)) == "1d"
    assert stats_params.format_window(timedelta(minutes=90)) == "90m"
    assert stats_params.format_window(timedelta(seconds=61)) == "61s"


# -- service without databases ---------------------------------------------------------------------

def test_service_without_dsns_is_not_ready_and_answers_503_at_once():
    service = AnalyticsService.from_dsns(Settings.from_env({"SECRETS_DIR": "/nonexistent"})).open()
    try:
        assert service.ready() is False
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            service.query(timedelta(hours=1))
        assert time.monotonic() - started < 0.5
        assert info.value.status == 503
        assert info.value.code == "database_unavailable"
        assert info.value.headers["Retry-After"] == "2"
        with pytest.raises(Unavailable):
            service.query(timedelta(hours=1), consistency="strong")
    finally:
        service.close()


def test_unreachable_replica_without_fallback_fails_within_the_pool_timeout():
    settings = Settings.from_env({"SECRETS_DIR": "/nonexistent", "DB_POOL_TIMEOUT_S": "0.5",
                                  "STATS_PRIMARY_FALLBACK": "false"})
    # Port 1 on localhost refuses connections at once.
    service = AnalyticsService.from_dsns(settings, replica_dsn="host=127.0.0.1 port=1 user=x dbname=x").open()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            service.query(timedelta(hours=1))
        assert time.monotonic() - started < 1.5
        assert "replica" in info.value.message
        assert "port" not in info.value.message and "127.0.0.1" not in info.value.message
        # The next request only probes the server that just failed.
        started = time.monotonic()
        with pytest.raises(Unavailable):
            service.query(timedelta(hours=1))
        assert time.monotonic() - started < 0.5
    finally:
        service.close()


# -- handler edge ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def handler(monkeypatch_module):
    monkeypatch_module.setenv("SECRETS_DIR", "/nonexistent")
    monkeypatch_module.setenv("ENTITY_STATS_TOKEN", TOKEN)  # the secret's local fallback
    for name in ("STATS_REPLICA_DSN", "STATS_PRIMARY_DSN"):
        monkeypatch_module.delenv(name, raising=False)
    settings.current.cache_clear()  # the process settings are read once: re-read them without DSNs
    spec = importlib.util.spec_from_file_location("entity_stats_handler_under_test", HANDLER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    settings.current.cache_clear()
    module.service.close()
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


TOKEN = "unit-test-token"


def event(method: str = "GET", query: str = "", headers: dict | None = None) -> Event:
    all_headers = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
    return Event(b"", Headers(all_headers.items()), method, Query(query), "/")


def test_handler_import_does_not_wait_for_a_database(handler):
    assert handler.service.ready() is False


def test_handler_rejects_other_methods_with_405_and_allow(handler):
    response = handler.handle(event("POST"), Context())
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "GET"
    assert response["body"]["error"] == "method_not_allowed"


def test_handler_names_the_bad_field_with_422(handler):
    response = handler.handle(event(query="window=1y"), Context())
    assert response["statusCode"] == 422
    assert response["body"]["error"] == "invalid_field"
    assert response["body"]["field"] == "window"
    assert "window" in response["body"]["message"]


def test_handler_without_database_answers_json_503_with_retry_after(handler):
    response = handler.handle(event(headers={"X-Call-Id": "call-1"}), Context())
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "2"
    assert response["body"]["error"] == "database_unavailable"
    assert response["body"]["request_id"] == "call-1"
