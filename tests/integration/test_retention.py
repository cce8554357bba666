"""Retention: batched deletion of old documents and their entities, as nlp_owner only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from functions.runtime import retention

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _seed(owner_dsn: str, prefix: str, count: int, age_days: int, entities_each: int = 2) -> None:
    with psycopg.connect(owner_dsn) as conn, conn.transaction():
        for i in range(count):
            request_id = f"{prefix}-{i}"
            conn.execute(
                "INSERT INTO nlp.documents (request_id, model_name, model_version, text_length, text_sha256,"
                " entity_count, processed_at) VALUES (%s, 'm', '1', 1, repeat('a', 64), %s,"
                " now() - make_interval(days => %s))",
                (request_id, entities_each, age_days),
            )
            for ordinal in range(entities_each):
                conn.execute(
                    "INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char,"
                    " processed_at) SELECT request_id, %s, 'ORG', 'Acme', 'acme', 0, 4, processed_at"
                    " FROM nlp.documents WHERE request_id = %s",
                    (ordinal, request_id),
                )


def _counts(dsn: str, prefix: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM nlp.documents WHERE request_id LIKE %(p)s),"
            " (SELECT count(*) FROM nlp.entities WHERE request_id LIKE %(p)s)",
            {"p": f"{prefix}-%"},
        ).fetchone()


def test_purge_deletes_only_old_documents_with_their_entities_in_batches(pg_clean, owner_dsn):
    _seed(owner_dsn, "old", 5, age_days=40)
    _seed(owner_dsn, "new", 2, age_days=1)

    dry = retention.purge(owner_dsn, days=30, dry_run=True)
    assert (dry.documents_deleted, dry.entities_deleted) == (5, 10)
    assert _counts(owner_dsn, "old") == (5, 10)

    report = retention.purge(owner_dsn, days=30, batch_size=2)
    assert (report.documents_deleted, report.entities_deleted, report.batches) == (5, 10, 3)
    assert _counts(owner_dsn, "old") == (0, 0)
    assert _counts(owner_dsn, "new") == (2, 4)


def test_the_writer_role_cannot_run_retention(pg_running, writer_dsn):
    with pytest.raises(errors.InsufficientPrivilege):
        retention.purge(writer_dsn, days=30)


def test_cli_prints_one_json_summary(pg_running):
    env = {**os.environ, "SECRETS_DIR": str(pg_running.secrets_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "functions.runtime.retention", "--days", "3650", "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["event"] == "retention.done" and summary["dry_run"] is True
