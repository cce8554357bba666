"""The local primary + streaming replica: start/stop/kill, replication, secrets, authentication."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devtools import pgcluster
from devtools.pgcluster import SECRETS, LocalCluster, PgBinariesNotFound
from devtools.pgcluster import state as pgcluster_state

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _insert_document(dsn: str, request_id: str) -> str:
    """Insert one document as the given role; return the commit LSN (taken after COMMIT)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO nlp.document_keys (request_id, text_sha256, model_name, model_version)"
                         " VALUES (%s, %s, 'm', '1')", (request_id, "0" * 64))
            conn.execute(
                "INSERT INTO nlp.documents (request_id, model_name, model_version, text_length, text_sha256,"
                " entity_count) VALUES (%s, 'm', '1', 1, %s, 0)",
                (request_id, "0" * 64),
            )
        return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def _document_exists(dsn: str, request_id: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM nlp.document_keys WHERE request_id = %s", (request_id,)).fetchone()
            is not None
        )


def test_missing_binaries_error_names_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PG_BIN", str(tmp_path))
    monkeypatch.setattr(pgcluster_state, "DEFAULT_BIN_DIRS", ())
    monkeypatch.setattr(pgcluster_state.shutil, "which", lambda name: None)
    with pytest.raises(PgBinariesNotFound, match="apt-get install postgresql-15"):
        pgcluster.find_pg_bin()


def test_second_start_reuses_running_servers_ports_and_passwords(pg_running):
    before = pg_running.status()
    dsn_before = pg_running.dsn("writer")
    started = time.monotonic()
    after = pg_running.start()
    assert time.monotonic() - started < 5
    for server in ("primary", "replica"):
        assert after[server]["running"]
        assert after[server]["pid"] == before[server]["pid"]
        assert after[server]["port"] == before[server]["port"]
    # A new object on the same dir (another process, a later `make run`) reads the same state.
    assert LocalCluster(pg_running.base_dir).dsn("writer") == dsn_before


def test_secret_files_are_private_and_connect_as_the_right_role_and_server(pg_running):
    expected_user = {"writer": "nlp_writer", "analyst": "nlp_analyst", "owner": "nlp_owner", "rollup": "nlp_rollup"}
    assert stat.S_IMODE(pg_running.secrets_dir.stat().st_mode) == 0o700
    for name, (role, server) in SECRETS.items():
        path = pg_running.secrets_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        dsn = path.read_text().strip()
        params = conninfo_to_dict(dsn)
        assert params["host"] == "127.0.0.1" and "connect_timeout" in params, name
        with psycopg.connect(dsn) as conn:
            user, in_recovery = conn.execute("SELECT current_user, pg_is_in_recovery()").fetchone()
        assert user == expected_user[role], name
        assert in_recovery is (server == "replica"), name
    token = pg_running.secrets_dir / "entity-stats-token"  # a token secret: generated, kept, private
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) >= 32


def test_servers_listen_on_loopback_only_and_demand_scram_passwords(pg_running, admin_dsn):
    with psycopg.connect(admin_dsn) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        socket_dir = conn.execute("SHOW unix_socket_directories").fetchone()[0]
        rules = conn.execute("SELECT type, address, auth_method FROM pg_hba_file_rules").fetchall()
        assert conn.execute("SHOW fsync").fetchone()[0] == "on"
        assert conn.execute("SHOW wal_level").fetchone()[0] == "replica"
    assert socket_dir.startswith(pg_running.status()["data_root"])
    assert rules and all(method == "scram-sha-256" for _, _, method in rules)
    assert {address for kind, address, _ in rules if kind == "host"} == {"127.0.0.1"}
    wrong = make_conninfo(pg_running.dsn("writer"), password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


def test_replica_streams_from_the_physical_slot(pg_running, admin_dsn):
    with psycopg.connect(admin_dsn) as conn:
        streaming = conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
        slot = conn.execute(
            "SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = %s", (pgcluster.SLOT_NAME,)
        ).fetchone()
    assert ("nlp_replica", "streaming") in streaming
    assert slot == ("physical", True)
    with psycopg.connect(pg_running.dsn("admin", "replica")) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True


def test_wait_for_replay_times_out_while_replay_is_paused_and_returns_after_resume(pg_running, writer_dsn):
    replica_admin = pg_running.dsn("admin", "replica")
    request_id = f"pause-{uuid.uuid4()}"
    pg_running.pause_replay()
    try:
        lsn = _insert_document(writer_dsn, request_id)
        with pytest.raises(TimeoutError, match=lsn):
            pg_running.wait_for_replay(lsn, timeout=0.5)
        assert not _document_exists(replica_admin, request_id)
    finally:
        pg_running.resume_replay()
    pg_running.wait_for_replay(lsn, timeout=10)
    assert _document_exists(replica_admin, request_id)


def test_sigkilled_primary_recovers_every_acknowledged_commit_and_the_replica_reconnects(
    pg_running, writer_dsn, admin_dsn
):
    run = f"kill-{uuid.uuid4()}"
    acknowledged = [f"{run}-{i}" for i in range(20)]
    for request_id in acknowledged:
        _insert_document(writer_dsn, request_id)  # autocommit: returned == acknowledged COMMIT
    pg_running.kill_primary()
    try:
        assert not pg_running.status()["primary"]["running"]
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(writer_dsn, connect_timeout=1).close()
    finally:
        pg_running.start_primary()
    with psycopg.connect(admin_dsn) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM nlp.documents WHERE request_id LIKE %s", (f"{run}-%",)
        ).fetchone()[0]
    assert stored == len(acknowledged)
    lsn = _insert_document(writer_dsn, f"{run}-after")
    pg_running.wait_for_replay(lsn, timeout=20)
    assert _document_exists(pg_running.dsn("admin", "replica"), f"{run}-after")


def test_replica_catches_up_after_being_stopped_while_the_primary_takes_writes(pg_running, writer_dsn):
    run = f"replica-down-{uuid.uuid4()}"
    pg_running.stop_replica()
    try:
        assert not pg_running.status()["replica"]["running"]
        lsn = _insert_document(writer_dsn, run)  # the primary does not wait for an async replica
        with pytest.raises(TimeoutError, match="unreachable"):
            pg_running.wait_for_replay(lsn, timeout=0.5)
    finally:
        pg_running.start_replica()
    pg_running.wait_for_replay(lsn, timeout=20)
    assert _document_exists(pg_running.dsn("admin", "replica"), run)


def test_stopped_primary_comes_back_with_start_primary(pg_running, writer_dsn):
    pg_running.stop_primary(mode="fast")
    try:
        assert not pg_running.status()["primary"]["running"]
    finally:
        pg_running.start_primary()
    assert pg_running.status()["primary"]["running"]
    _insert_document(writer_dsn, f"restart-{uuid.uuid4()}")


def test_cli_status_prints_json_without_passwords(pg_running):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.pgcluster",
            "status",
            "--dir",
            str(pg_running.base_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["primary"]["running"] and status["replica"]["running"]
    state = json.loads((pg_running.base_dir / "cluster.json").read_text())
    assert not any(password in result.stdout for password in state["passwords"].values())


@pytest.mark.slow
def test_fresh_cluster_starts_fast_survives_a_crashed_owner_and_destroy_leaves_nothing(tmp_path_factory):
    # A private cluster (the session one must not be destroyed). pytest's tmp dir is 0700, so this also
    # covers the fallback of the server files to /tmp/nlp-pg-<hash>.
    base = tmp_path_factory.mktemp("private-pg")
    cluster = LocalCluster(base)
    try:
        started = time.monotonic()
        status = cluster.start()
        elapsed = time.monotonic() - started
        assert elapsed < 30, f"start from scratch took {elapsed:.1f}s"
        data_root = Path(status["data_root"])
        if os.geteuid() == 0:
            assert data_root.stat().st_uid != 0  # servers run as the postgres user, not root
        # Simulate the owning process dying hard: every server process SIGKILLed, lock files left behind.
        cluster.kill_primary()
        for pid in pgcluster.server_processes(data_root / "replica"):
            os.kill(pid, 9)
        again = LocalCluster(base)  # a new process on the same dir
        status = again.start()
        assert status["primary"]["running"] and status["replica"]["running"]
        assert again.dsn("owner") == cluster.dsn("owner")
        lsn = _insert_document(again.dsn("owner"), "after-crash")
        again.wait_for_replay(lsn, timeout=20)
    finally:
        LocalCluster(base).destroy()
    assert not data_root.exists()
    assert not pgcluster.server_processes(data_root / "primary")
    assert not (base / "cluster.json").exists()


def _show(admin_console_dsn: str, what: str) -> list[dict]:
    with psycopg.connect(admin_console_dsn, autocommit=True) as conn:
        cur = conn.execute(f"SHOW {what}")
        columns = [d.name for d in cur.description]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def test_pgbouncer_pools_transactions_on_loopback_with_scram_and_stores_no_password(
        pg_running, pgbouncer, pgbouncer_admin_dsn, writer_pooled_dsn):
    config = {row["key"]: row["value"] for row in _show(pgbouncer_admin_dsn, "CONFIG")}
    assert config["pool_mode"] == "transaction"
    assert config["auth_type"] == "scram-sha-256"
    assert config["listen_addr"] == "127.0.0.1" and int(config["listen_port"]) == pgbouncer
    assert config["unix_socket_dir"] == ""
    with psycopg.connect(writer_pooled_dsn, prepare_threshold=None) as conn:
        user, port, in_recovery = conn.execute(
            "SELECT current_user, inet_server_port(), pg_is_in_recovery()").fetchone()
    assert (user, port, in_recovery) == ("nlp_writer", pg_running.status()["primary"]["port"], False)
    params = conninfo_to_dict(writer_pooled_dsn)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(make_conninfo(**{**params, "password": "wrong"}))
    # The auth file holds SCRAM verifiers (what pg_authid holds), no password; private to the server user.
    userlist = Path(pg_running.status()["data_root"]) / "pgbouncer" / "userlist.txt"
    assert stat.S_IMODE(userlist.stat().st_mode) == 0o600
    lines = userlist.read_text().splitlines()
    assert lines and all('"SCRAM-SHA-256$' in line for line in lines)
    state = json.loads((pg_running.base_dir / "cluster.json").read_text())
    assert not any(password in userlist.read_text() for password in state["passwords"].values())


@pytest.mark.slow
def test_failover_promotes_the_replica_rebuilds_one_and_every_route_follows_the_primary():
    from tests.fixtures.pg import private_cluster

    with private_cluster(pgbouncer=True, synchronous=True) as cluster:
        status = cluster.status()
        ports = {s: status[s]["port"] for s in ("primary", "replica")}
        assert status["pgbouncer"]["running"] and status["synchronous_standby_names"] == "nlp_replica"
        writer_secret = (cluster.secrets_dir / "ner-writer-dsn").read_text().strip()
        assert conninfo_to_dict(writer_secret)["port"] == str(status["pgbouncer"]["port"])
        multihost = cluster.multihost_dsn("writer")
        _insert_document(multihost, "before-failover")
        with pytest.raises(pgcluster.PgClusterError, match="still running"):
            cluster.promote_replica()  # never two primaries

        cluster.kill_primary()
        promote_s = cluster.promote_replica()
        status = cluster.status()
        assert promote_s < 10
        # Roles swapped: the old replica's port is the primary's; it does not wait for a standby.
        assert status["primary"]["port"] == ports["replica"] and status["primary"]["running"]
        assert status["synchronous_standby_names"] == ""
        for dsn in (multihost, writer_secret):  # libpq's read-write pick, and PgBouncer re-pointed
            with psycopg.connect(dsn, prepare_threshold=None, autocommit=True) as conn:
                port, in_recovery = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
                assert (port, in_recovery) == (ports["replica"], False)
                assert conn.execute("SELECT 1 FROM nlp.document_keys WHERE request_id = 'before-failover'"
                                    ).fetchone()
        _insert_document(writer_secret, "after-promotion")

        cluster.rebuild_replica()
        status = cluster.status()
        assert status["replica"]["port"] == ports["primary"] and status["replica"]["running"]
        assert status["synchronous_standby_names"] == "nlp_replica"
        with psycopg.connect(cluster.dsn("admin", "primary"), autocommit=True) as conn:
            assert conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone()[0] == "sync"
        with psycopg.connect(cluster.multihost_dsn("analyst", "prefer-standby")) as conn:
            assert conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone() == (ports["primary"], True)
        assert _document_exists(cluster.dsn("admin", "replica"), "after-promotion")

        # And back again: the same two ports, so the same multi-host DSN still finds the primary.
        result = cluster.failover()
        assert result["primary"]["port"] == ports["primary"] and result["replica"]["port"] == ports["replica"]
        assert _document_exists(multihost, "after-promotion")
        bouncer_pid = cluster.status()["pgbouncer"]["pid"]
    assert not pgcluster.alive(bouncer_pid), "destroy() must stop PgBouncer"
