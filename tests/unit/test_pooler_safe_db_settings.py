"""Database settings that must be safe behind a transaction-pooling PgBouncer (issue 15): no prepared
statements unless asked for, and the write pool's timeout carried per connection class, not per session."""

from __future__ import annotations

import pytest

from functions.runtime.persistence import make_pool
from functions.runtime.settings import Settings, SettingsError


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("", None), ("none", None), ("None", None),
                                               ("0", 0), ("5", 5)])
def test_prepare_threshold_defaults_to_never_preparing(raw, expected):
    env = {} if raw is None else {"DB_PREPARE_THRESHOLD": raw}
    assert Settings.from_env(env).db_prepare_threshold == expected


@pytest.mark.parametrize("raw", ["-1", "five", "1.5"])
def test_prepare_threshold_rejects_what_psycopg_cannot_use(raw):
    with pytest.raises(SettingsError, match="DB_PREPARE_THRESHOLD"):
        Settings.from_env({"DB_PREPARE_THRESHOLD": raw})


def test_write_pool_passes_prepare_threshold_and_bounds_transactions_without_session_setup():
    pool = make_pool("host=127.0.0.1 dbname=x", name="t", min_size=0, max_size=1, timeout=1,
                     statement_timeout_ms=1234, connect_timeout=1)
    assert pool.kwargs["prepare_threshold"] is None
    assert pool.connection_class.statement_timeout_ms == 1234
    pooled = make_pool("host=127.0.0.1 dbname=x", name="t", min_size=0, max_size=1, timeout=1,
                       statement_timeout_ms=1000, connect_timeout=1, prepare_threshold=5)
    assert pooled.kwargs["prepare_threshold"] == 5
