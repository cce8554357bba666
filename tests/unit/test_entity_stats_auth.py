"""entity-stats answers only callers with a bearer token from the secret entity-stats-token (one token per
line, re-read when the file changes): 401 JSON otherwise, with no hint and no query run; no token in logs."""

from __future__ import annotations

import io
import logging
import os
import time

import pytest

from functions.runtime import auth, logs
from functions.runtime.analytics import AnalyticsService
from functions.runtime.contract import Context, Event, Headers, Query
from functions.runtime.db import ServerDown
from functions.runtime.errors import Unauthorized
from functions.runtime.http import handles_errors
from functions.runtime.settings import Settings


class _CountingStore:
    """A StatsStore that only counts reads (the seam the service routes over)."""

    name = "replica"
    configured = False

    def __init__(self):
        self.reads = 0

    def open(self):
        pass

    def close(self, timeout=5.0):
        pass

    def ready(self):
        return False

    def read(self, query, **kwargs):
        self.reads += 1
        raise ServerDown(self.name, None)

    def flush_position(self, replay_lsn, *, probe=False):
        return None, None


@pytest.fixture
def secrets(tmp_path):
    (tmp_path / "entity-stats-token").write_text("old-token\nnew-token\n")
    return tmp_path


@pytest.fixture
def service(secrets):
    replica, primary = _CountingStore(), _CountingStore()
    svc = AnalyticsService(Settings.from_env({"SECRETS_DIR": str(secrets)}), replica, primary)
    yield svc


def call(service, authorization: str | None):
    @handles_errors
    def handle(event, context):
        request = service.parse(event)
        return service.respond(request, service.process(request))

    headers = {"X-Call-Id": "auth-1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return handle(Event(b"", Headers(headers.items()), "GET", Query("window=1h"), "/"), Context())


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Bearer wrong", "Basic old-token",
                                           "bearer old-tokenx", "Bearer old-token\x00", "Token old-token"])
def test_a_missing_or_wrong_credential_is_a_json_401_and_no_query_runs(service, authorization):
    response = call(service, authorization)
    assert response["statusCode"] == 401
    assert response["body"] == {"error": "unauthorized", "message": "a valid bearer token is required",
                                "request_id": "auth-1"}
    assert response["headers"]["WWW-Authenticate"].startswith("Bearer")
    assert service.replica.reads == 0 and service.primary.reads == 0


@pytest.mark.parametrize("token", ["old-token", "new-token"])
def test_any_listed_token_gets_past_the_check(service, token):
    response = call(service, f"Bearer {token}")
    assert response["statusCode"] == 503  # authenticated: then the (absent) databases answer
    assert response["body"]["error"] == "database_unavailable"


def test_the_scheme_is_case_insensitive_as_rfc_9110_says(service):
    assert call(service, "bearer old-token")["statusCode"] == 503


def test_a_rotated_secret_file_is_read_again_without_a_restart(service, secrets, monkeypatch):
    (secrets / "entity-stats-token").write_text("rotated\n")
    monkeypatch.setattr(auth, "RELOAD_S", 0.0)
    time.sleep(0.01)
    assert call(service, "Bearer old-token")["statusCode"] == 401
    assert call(service, "Bearer rotated")["statusCode"] == 503


def test_without_the_secret_every_request_is_refused(tmp_path):
    tokens = auth.BearerTokens(Settings.from_env({"SECRETS_DIR": str(tmp_path)}), "entity-stats-token")
    with pytest.raises(Unauthorized):
        tokens.check(Headers([("Authorization", "Bearer anything")]))


def test_no_token_appears_in_the_log_lines(service):
    buffer = io.StringIO()
    logs.configure("entity-stats", "INFO", stream=buffer)
    try:
        call(service, "Bearer old-token")
        call(service, "Bearer leaked-guess")
    finally:
        logging.getLogger().handlers.clear()
    text = buffer.getvalue()
    assert "request.failed" in text
    assert "old-token" not in text and "leaked-guess" not in text and os.environ.get("X", "") == ""
