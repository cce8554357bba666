"""Migrations: ordered, tracked, append-only, one transaction each, safe to run concurrently."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from functions.runtime import migrate
from functions.runtime.migrate import ChecksumMismatch, MigrationError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "sql" / "migrations"


@pytest.fixture
def scratch_db(pg_cluster, admin_dsn):
    """An empty database owned by nlp_owner; yields the owner's DSN for it. Dropped afterwards."""
    name = f"mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER nlp_owner TEMPLATE template0").format(sql.Identifier(name))
        )
    try:
        yield make_conninfo(pg_cluster.dsn("owner"), dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {r[0] for r in rows}


def test_cluster_migrations_are_tracked_with_file_checksums_and_rerun_is_a_noop(pg_cluster, owner_dsn):
    files = migrate.discover(MIGRATIONS)
    assert files and files[0].label == "0001_schema"
    with psycopg.connect(owner_dsn) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum, applied_by FROM nlp_meta.schema_migrations ORDER BY version"
        ).fetchall()
    assert rows == [
        (m.version, m.name, hashlib.sha256(m.path.read_bytes()).hexdigest(), "nlp_owner") for m in files
    ]

    report = migrate.apply(owner_dsn, MIGRATIONS)
    assert report.applied == []
    assert report.already_applied == [m.label for m in files]
    with psycopg.connect(owner_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM nlp_meta.schema_migrations").fetchone()[0] == len(files)


def test_real_migrations_apply_to_an_empty_database_in_order_then_apply_again_as_noop(scratch_db):
    first = migrate.apply(scratch_db, MIGRATIONS)
    assert first.applied == [m.label for m in migrate.discover(MIGRATIONS)]
    assert {"nlp.documents", "nlp.entities", "nlp_meta.schema_migrations"} <= _tables(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'nlp'").fetchall()
    assert owners == [("nlp_owner",)]
    second = migrate.apply(scratch_db, MIGRATIONS)
    assert second.applied == [] and second.already_applied == first.applied


def test_edited_migration_is_rejected_and_nothing_after_it_is_applied(scratch_db, tmp_path):
    first = _write(tmp_path, "0001_first.sql", "CREATE TABLE first_t (id int);\n")
    migrate.apply(scratch_db, tmp_path)
    first.write_text("CREATE TABLE first_t (id bigint);\n")
    _write(tmp_path, "0002_second.sql", "CREATE TABLE second_t (id int);\n")
    with pytest.raises(ChecksumMismatch, match="0001_first was edited"):
        migrate.apply(scratch_db, tmp_path)
    assert "public.second_t" not in _tables(scratch_db)


def test_failing_migration_rolls_back_itself_and_keeps_the_earlier_ones(scratch_db, tmp_path):
    _write(tmp_path, "0001_ok.sql", "CREATE TABLE ok_t (id int);\n")
    _write(tmp_path, "0002_broken.sql", "CREATE TABLE half_t (id int);\nSELECT 1/0;\n")
    with pytest.raises(MigrationError, match="0002_broken failed"):
        migrate.apply(scratch_db, tmp_path)
    tables = _tables(scratch_db)
    assert "public.ok_t" in tables and "public.half_t" not in tables
    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("SELECT array_agg(version) FROM nlp_meta.schema_migrations").fetchone()[0] == [1]


def test_new_file_numbered_below_the_newest_applied_one_is_rejected(scratch_db, tmp_path):
    _write(tmp_path, "0002_b.sql", "SELECT 1;\n")
    migrate.apply(scratch_db, tmp_path)
    _write(tmp_path, "0001_a.sql", "SELECT 1;\n")
    with pytest.raises(MigrationError, match="0001_a numbered below"):
        migrate.apply(scratch_db, tmp_path)


def test_badly_named_sql_file_is_an_error_not_silently_skipped(tmp_path):
    _write(tmp_path, "0001_ok.sql", "SELECT 1;\n")
    _write(tmp_path, "2-views.sql", "SELECT 1;\n")
    with pytest.raises(MigrationError, match="bad migration file name '2-views.sql'"):
        migrate.discover(tmp_path)


def test_dry_run_lists_pending_files_and_changes_nothing(scratch_db, tmp_path):
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a_t (id int);\n")
    report = migrate.apply(scratch_db, tmp_path, dry_run=True)
    assert report.pending == ["0001_a"] and report.applied == []
    assert _tables(scratch_db) == set()


def test_two_concurrent_migrators_apply_each_file_exactly_once(scratch_db, tmp_path):
    # The sleep widens the race window: without the advisory lock the second CREATE TABLE would fail.
    _write(tmp_path, "0001_slow.sql", "SELECT pg_sleep(0.5);\nCREATE TABLE raced_t (id int);\n")
    _write(tmp_path, "0002_next.sql", "CREATE TABLE next_t (id int);\n")
    results, errors = [], []

    def run():
        try:
            results.append(migrate.apply(scratch_db, tmp_path))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    applied = sorted(label for report in results for label in report.applied)
    assert applied == ["0001_slow", "0002_next"]


def test_cli_reads_the_dsn_secret_prints_json_lines_and_never_the_password(pg_cluster, scratch_db, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "migrations-dsn").write_text(scratch_db + "\n")
    env = {**os.environ, "SECRETS_DIR": str(secrets)}
    result = subprocess.run(
        [sys.executable, "-m", "functions.runtime.migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "migrations.done"
    assert [e["migration.name"] for e in events if e["event"] == "migration.applied"] == [
        m.name for m in migrate.discover(MIGRATIONS)
    ]
    password = json.loads((pg_cluster.base_dir / "cluster.json").read_text())["passwords"]["nlp_owner"]
    assert password not in result.stdout + result.stderr

    bad = make_conninfo(scratch_db, password="wrong-password")
    result = subprocess.run(
        [sys.executable, "-m", "functions.runtime.migrate", "--dsn", bad],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "migrations.failed"
    assert "wrong-password" not in result.stdout + result.stderr
