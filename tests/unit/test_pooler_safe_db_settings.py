"""Database settings that must be safe behind a transaction-pooling PgBouncer: no prepared
statements unless asked for, and no session state set on a pooled connection."""

from __future__ import annotations

import pytest

from functions.runtime.db import make_pool
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


def test_pools_pass_prepare_threshold_through_to_every_connection():
    pool = make_pool("host=127.0.0.1 dbname=x", name="t", min_size=0, max_size=1, timeout=1, connect_timeout=1)
    assert pool.kwargs["prepare_threshold"] is None
    pooled = make_pool("host=127.0.0.1 dbname=x", name="t", min_size=0, max_size=1, timeout=1,
                       connect_timeout=1, prepare_threshold=5)
    assert pooled.kwargs["prepare_threshold"] == 5
    settings = Settings.from_env({"DB_PREPARE_THRESHOLD": "7"})
    assert settings.pool_options()["prepare_threshold"] == 7
