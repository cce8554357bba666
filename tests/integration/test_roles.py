"""Least privilege: the writer can only insert (and read the idempotency keys), the analyst can only read
schema analytics, the rollup worker can only read the columns it rolls up and write the rollups, nothing
can write on the replica, and writes replicate."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest
from psycopg import errors

pytestmark = pytest.mark.integration

FORBIDDEN_FOR_WRITER = [
    "SELECT * FROM nlp.entities LIMIT 1",
    "SELECT request_id FROM nlp.entities LIMIT 1",
    "SELECT body FROM nlp.documents LIMIT 1",
    "SELECT metadata FROM nlp.documents LIMIT 1",
    "SELECT * FROM nlp.documents LIMIT 1",
    "UPDATE nlp.documents SET entity_count = 0",
    "UPDATE nlp.entities SET label = 'X'",
    "DELETE FROM nlp.documents",
    "DELETE FROM nlp.entities",
    "TRUNCATE nlp.entities",
    "TRUNCATE nlp.documents CASCADE",
    "DROP TABLE nlp.entities",
    "ALTER TABLE nlp.documents ADD COLUMN sneaky int",
    "ALTER TABLE nlp.entities DISABLE TRIGGER ALL",
    "CREATE TABLE nlp.sneaky (id int)",
    "CREATE TABLE public.sneaky (id int)",
    "CREATE TEMP TABLE sneaky (id int)",
    "CREATE SCHEMA sneaky",
    "CREATE INDEX sneaky ON nlp.documents (source)",
    "ALTER ROLE nlp_writer SUPERUSER",
    "SET ROLE nlp_owner",
    "SELECT * FROM nlp_meta.schema_migrations",
    "DROP SCHEMA nlp CASCADE",
]

FORBIDDEN_FOR_ROLLUP = [
    "SELECT body FROM nlp.documents LIMIT 1",
    "SELECT request_id FROM nlp.entities LIMIT 1",
    "SELECT * FROM nlp.document_keys LIMIT 1",
    "INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char)"
    " VALUES ('x', 0, 'ORG', 'x', 'x', 0, 1)",
    "DELETE FROM nlp.entities",
    "SELECT nextval('nlp.change_id_seq')",
    "DROP TABLE analytics.entity_top",
    "TRUNCATE analytics.entity_top",
    "CREATE TABLE analytics.sneaky (id int)",
]

FORBIDDEN_FOR_ANALYST = [
    "SELECT * FROM nlp.documents LIMIT 1",
    "SELECT * FROM nlp.entities LIMIT 1",
    "INSERT INTO nlp.documents (request_id, model_name, model_version, text_length, text_sha256,"
    " entity_count) VALUES ('x', 'm', '1', 1, repeat('0', 64), 0)",
    "UPDATE nlp.documents SET entity_count = 0",
    "DELETE FROM nlp.entities",
    "TRUNCATE nlp.documents CASCADE",
    "CREATE TABLE analytics.sneaky (id int)",
    "CREATE TABLE public.sneaky (id int)",
    "CREATE TEMP TABLE sneaky (id int)",
    "DROP TABLE nlp.entities",
]


def _doc_params(request_id: str, text: str = "hello") -> dict:
    return {"id": request_id, "sha": hashlib.sha256(text.encode()).hexdigest(), "len": len(text)}


INSERT_KEY = (
    "INSERT INTO nlp.document_keys (request_id, text_sha256, model_name, model_version)"
    " VALUES (%(id)s, %(sha)s, 'm', '1') ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
)
INSERT_DOC = (
    "INSERT INTO nlp.documents (request_id, source, model_name, model_version, text_length, text_sha256,"
    " body, entity_count) VALUES (%(id)s, 'test', 'm', '1', %(len)s, %(sha)s, 'secret body', 1)"
)
INSERT_ENTITY = (
    "INSERT INTO nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char, processed_at)"
    " VALUES (%(id)s, 0, 'ORG', 'Acme', 'acme', 0, 4, now())"
)


def _denied(dsn: str, statement: str, *, read_write: bool = False) -> type[Exception] | None:
    """Run ``statement``; return the class of the error it raised (None if it succeeded: rolled back)."""
    # Analyst sessions default to read-only (a role setting); a connection option overrides it, to prove
    # that the GRANTs alone block the statement.
    options = {"options": "-c default_transaction_read_only=off"} if read_write else {}
    with psycopg.connect(dsn, **options) as conn:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            return type(exc)
        finally:
            conn.rollback()
    return None


@pytest.mark.parametrize("statement", FORBIDDEN_FOR_WRITER)
def test_writer_cannot_read_or_change_anything_beyond_inserting(writer_dsn, statement):
    assert _denied(writer_dsn, statement) is errors.InsufficientPrivilege


def test_writer_inserts_idempotently_and_reads_back_only_the_idempotency_columns(writer_dsn):
    request_id = f"roles-{uuid.uuid4()}"
    with psycopg.connect(writer_dsn) as conn:
        with conn.transaction():
            inserted = conn.execute(INSERT_KEY, _doc_params(request_id)).fetchall()
            conn.execute(INSERT_DOC, _doc_params(request_id))
            conn.execute(INSERT_ENTITY, {"id": request_id})
        assert inserted == [(request_id,)]
        with conn.transaction():
            assert conn.execute(INSERT_KEY, _doc_params(request_id)).fetchall() == []  # duplicate: no row
        row = conn.execute(
            "SELECT request_id, text_sha256, model_name, model_version FROM nlp.document_keys"
            " WHERE request_id = %s",
            (request_id,),
        ).fetchone()
    assert row == (request_id, _doc_params(request_id)["sha"], "m", "1")


def test_writer_can_use_copy_for_bulk_entity_inserts(writer_dsn):
    request_id = f"roles-copy-{uuid.uuid4()}"
    with psycopg.connect(writer_dsn) as conn, conn.transaction():
        conn.execute(INSERT_KEY, _doc_params(request_id))
        conn.execute(INSERT_DOC, _doc_params(request_id))
        with conn.cursor().copy(
            "COPY nlp.entities (request_id, ordinal, label, text, norm, start_char, end_char,"
            " processed_at) FROM STDIN"
        ) as copy:
            for ordinal in range(3):
                copy.write_row((request_id, ordinal, "PERSON", "Ann", "ann", 0, 3, "2024-01-01T00:00:00Z"))


def test_no_application_role_has_cluster_level_powers(admin_dsn):
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls"
            " FROM pg_roles WHERE rolname IN ('nlp_owner', 'nlp_writer', 'nlp_analyst', 'nlp_rollup') ORDER BY 1"
        ).fetchall()
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('nlp', 'analytics', 'nlp_meta')"
        ).fetchall()
    assert rows == [("nlp_analyst", False), ("nlp_owner", False), ("nlp_rollup", False), ("nlp_writer", False)]
    assert owners == [("nlp_owner",)]


@pytest.mark.parametrize("statement", FORBIDDEN_FOR_ROLLUP)
def test_the_rollup_worker_reads_only_what_it_rolls_up_and_writes_only_the_rollups(pg_running, statement):
    assert _denied(pg_running.dsn("rollup", "primary"), statement) is errors.InsufficientPrivilege


@pytest.mark.parametrize("statement", FORBIDDEN_FOR_ANALYST)
def test_analyst_cannot_write_or_read_base_tables_even_in_a_read_write_session(
    analyst_primary_dsn, statement
):
    assert _denied(analyst_primary_dsn, statement, read_write=True) is errors.InsufficientPrivilege


def test_analyst_sessions_are_read_only_by_default(analyst_primary_dsn):
    assert _denied(analyst_primary_dsn, "CREATE TEMP TABLE t (id int)") is errors.ReadOnlySqlTransaction


def test_analyst_can_select_every_analytics_view_on_the_replica(analyst_replica_dsn):
    with psycopg.connect(analyst_replica_dsn) as conn:
        views = [
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', schemaname, viewname) FROM pg_views WHERE schemaname = 'analytics'"
            ).fetchall()
        ]
        if not views:
            pytest.skip("no analytics views yet (added by a later migration)")
        for view in views:
            conn.execute(f"SELECT * FROM {view} LIMIT 1").fetchall()


@pytest.mark.parametrize("role", ["admin", "owner", "writer"])
def test_any_write_on_the_replica_fails_as_read_only(pg_running, role):
    statement = INSERT_KEY.replace("%(id)s", "'replica-write'").replace("%(sha)s", f"'{'0' * 64}'")
    assert _denied(pg_running.dsn(role, "replica"), statement) is errors.ReadOnlySqlTransaction


def test_document_written_on_the_primary_is_on_the_replica_after_wait_for_replay(pg_running, writer_dsn):
    request_id = f"roles-repl-{uuid.uuid4()}"
    with psycopg.connect(writer_dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(INSERT_KEY, _doc_params(request_id))
            conn.execute(INSERT_DOC, _doc_params(request_id))
            conn.execute(INSERT_ENTITY, {"id": request_id})
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    pg_running.wait_for_replay(lsn, timeout=10)
    with psycopg.connect(pg_running.dsn("admin", "replica")) as conn:
        count = conn.execute(
            "SELECT count(*) FROM nlp.entities WHERE request_id = %s", (request_id,)
        ).fetchone()[0]
    assert count == 1
