"""``LocalCluster``: the local primary + streaming replica (+ PgBouncer) as one object.

It composes the concerns of this package, one object each, on a shared :class:`ClusterState`:
:class:`Servers` (processes and data directories), :class:`Roles` (roles, passwords, DSN secrets),
:class:`Replication` (slot, clone, replay, synchronous replication, promotion) and :class:`PgBouncer`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

from devtools.pgcluster.host import Host
from devtools.pgcluster.pgbouncer import PgBouncer
from devtools.pgcluster.replication import Replication
from devtools.pgcluster.roles import USERS, Roles
from devtools.pgcluster.servers import Servers
from devtools.pgcluster.state import (
    DBNAME,
    DEFAULT_BASE_DIR,
    HOST,
    PGBOUNCER,
    SERVERS,
    SLOT_NAME,
    ClusterState,
    PgClusterError,
    find_pg_bin,
    find_pgbouncer,
)
from functions.runtime import migrate
from functions.runtime.queries import sql_dir


class LocalCluster:
    """Primary + streaming replica under ``base_dir`` (see the package docstring).

    Methods raise PgClusterError when a server cannot be started/stopped in time (the message includes
    the tail of the server log), PgBinariesNotFound when PostgreSQL is not installed, TimeoutError from
    ``wait_for_replay``, and psycopg errors when a SQL step fails.
    """

    def __init__(self, base_dir: Path | str = DEFAULT_BASE_DIR, *, pgbouncer: bool | None = None,
                 synchronous: bool | None = None):
        """``pgbouncer`` / ``synchronous``: see the package docstring; None keeps what the cluster in
        ``base_dir`` was last started with (default False). They take effect on :meth:`start`."""
        self.base_dir = Path(base_dir).absolute()
        self.secrets_dir = self.base_dir / "secrets"
        self.host = Host()
        self.state = ClusterState(self.base_dir, self.host)
        self.servers = Servers(self.state)
        self.roles = Roles(self.state, self.secrets_dir)
        self.replication = Replication(self.state, self.servers, self.roles)
        self.bouncer = PgBouncer(self.state, self.roles)
        self._options = {"pgbouncer": pgbouncer, "synchronous": synchronous}

    # ------------------------------------------------------------------------------ life cycle

    def start(self) -> dict:
        """Create (first time) and start both servers, bootstrap roles, migrate, write secrets; then
        wait until the replica has replayed everything the primary has. Idempotent: running servers
        are reused, stopped ones started, leftovers of a crashed run cleaned. Returns ``status()``.

        Raises PgBinariesNotFound, PgBouncerNotFound, PgClusterError (a server did not come up: log tail
        included), migrate.MigrationError, TimeoutError (replica did not catch up within 30 s)."""
        with self.state.locked():
            self.host.bin = find_pg_bin()
            data = self.state.ensure(list(USERS))
            for option, value in self._options.items():
                if value is not None:
                    data[option] = bool(value)
            if data.get("pgbouncer"):
                find_pgbouncer()  # fail before starting anything when it is not installed
            self.servers.prepare_dirs()
            if not self.servers.primary_initialized():
                self.servers.initdb()
            if self.servers.running_pid("primary") is None:
                # A primary starting with synchronous_standby_names set would hold the bootstrap's own
                # commits until the replica (started below) streams: start it asynchronous.
                data["sync_active"] = False
            self.servers.start("primary")
            self.roles.bootstrap()
            self.replication.ensure_slot()
            self.replication.reclone_if_slot_lost()
            if not self.replication.has_replica():
                self.replication.clone_replica()
            self.servers.start("replica")
            migrate.apply(self.dsn("owner", "primary"), sql_dir() / "migrations")
            self.wait_for_replay(self.replication.current_lsn(), timeout=30)
            # Only now: with the names set before the replica streamed, the bootstrap's own commits
            # would wait for a standby that does not exist yet.
            self.replication.apply_synchronous(bool(data.get("synchronous")))
            if data.get("pgbouncer") or self.bouncer.pid() is not None:
                self.bouncer.start()  # (re-)pointed at the primary's current port
            self.write_secrets()
            data["started_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            self.state.save()
            return self.status()

    def stop(self, mode: str = "fast") -> None:
        """Stop both servers (primary first, so the replica receives the shutdown checkpoint). Never
        hangs: pg_ctl has a timeout, then immediate mode, then SIGKILL. Safe on a never-started dir."""
        with self.state.locked():
            self.bouncer.stop()
            for server in SERVERS:
                self.servers.stop(server, mode)

    def destroy(self) -> None:
        """Stop the servers (immediate: the data is going away) and delete data, state and secrets."""
        with self.state.locked():
            self.bouncer.stop()
            for server in SERVERS:
                self.servers.stop(server, "immediate")
            if self.state.data and self.state.data.get("data_root"):
                self.host.rmtree(Path(self.state.data["data_root"]))
            self.host.rmtree(self.secrets_dir)
            self.state.forget()
        with contextlib.suppress(OSError):
            (self.base_dir / ".lock").unlink()
            self.base_dir.rmdir()  # only if empty: never remove files we did not create

    def status(self) -> dict:
        """Where things are and whether each server runs (from postmaster.pid and /proc; no SQL):
        ``base_dir``, ``initialized``, ``data_root``, ``secrets_dir``, ``dbname``, ``host``, per server
        ``{running, pid, port, data_dir, log}``, ``synchronous``, ``synchronous_standby_names`` and
        ``pgbouncer`` ``{enabled, running, pid, port, log}``."""
        data = self.state.data or {}
        ports = data.get("ports", {})
        result = {
            "base_dir": str(self.base_dir),
            "initialized": bool(data) and self.servers.primary_initialized(),
            "data_root": data.get("data_root"),
            "secrets_dir": str(self.secrets_dir),
            "dbname": DBNAME,
            "host": HOST,
        }
        for server in SERVERS:
            info = {"running": False, "pid": None, "port": ports.get(server)}
            if data:
                pid = self.servers.running_pid(server)
                info.update(running=pid is not None, pid=pid, data_dir=str(self.state.data_dir(server)),
                            log=str(self.state.log_path(server)))
            result[server] = info
        result["synchronous"] = bool(data.get("synchronous"))
        result["synchronous_standby_names"] = SLOT_NAME if data.get("sync_active") else ""
        bouncer = {"enabled": bool(data.get("pgbouncer")), "running": False, "pid": None, "port": ports.get(PGBOUNCER)}
        if data.get("data_root"):
            pid = self.bouncer.pid()
            bouncer.update(running=pid is not None, pid=pid, log=str(self.bouncer.directory() / "pgbouncer.log"))
        result[PGBOUNCER] = bouncer
        return result

    def socket_dir(self) -> Path:
        """The directory of the servers' unix sockets. Raises PgClusterError before the first start."""
        return self.state.socket_dir()


    # ------------------------------------------------------------------------------- secrets

    def dsn(self, role: str = "writer", server: str = "primary") -> str:
        """libpq key=value DSN for ``role`` (owner|writer|analyst|admin) on ``server`` (primary|replica,
        or pgbouncer = the primary through PgBouncer). Raises ValueError for an unknown role/server,
        PgClusterError if the cluster was never started (or PgBouncer never was, for ``pgbouncer``)."""
        return self.roles.dsn(role, server)

    def multihost_dsn(self, role: str = "writer", target: str = "read-write") -> str:
        """A DSN naming both servers' ports with libpq's ``target_session_attrs=<target>`` (read-write:
        whichever is the primary; prefer-standby: the replica while there is one). Raises ValueError /
        PgClusterError like :meth:`dsn`."""
        return self.roles.multihost_dsn(role, target)

    def write_secrets(self, directory: Path | str | None = None, route: str | None = None) -> Path:
        """Write the DSN secrets (0600 files in a 0700 dir; default ``secrets_dir``) and return the
        directory; ``route`` (direct|pgbouncer|multihost): see :meth:`Roles.write_secrets`. Raises
        ValueError for another route, PgClusterError before the first start."""
        return self.roles.write_secrets(directory, route)

    # --------------------------------------------------------------------------- replication

    def wait_for_replay(self, lsn: str, timeout: float = 10) -> None:
        """Block until the replica has replayed ``lsn`` (e.g. '0/16B3748'), at most ``timeout`` seconds.
        Raises TimeoutError (with the last replay LSN or error seen)."""
        self.replication.wait_for_replay(lsn, timeout)

    def pause_replay(self, timeout: float = 5) -> None:
        """Pause WAL replay on the replica (lag grows). Raises TimeoutError, psycopg.OperationalError."""
        self.replication.pause_replay(timeout)

    def resume_replay(self) -> None:
        """Resume WAL replay on the replica. Raises psycopg.OperationalError if the replica is down."""
        self.replication.resume_replay()

    def set_synchronous(self, enabled: bool) -> None:
        """Switch synchronous replication on or off on the running primary (reload, no restart); it is
        effective for the next COMMIT. Raises PgClusterError when the primary is not running."""
        with self.state.locked():
            self.state.require()["synchronous"] = bool(enabled)
            self.state.save()
            self.replication.apply_synchronous(bool(enabled))

    # ----------------------------------------------------------------------- fault injection

    def stop_primary(self, mode: str = "fast") -> None:
        """Stop the primary with pg_ctl ``mode`` ('smart'|'fast'|'immediate'; immediate = crash-like,
        recovery on next start). Raises ValueError for another mode."""
        with self.state.locked():
            self.servers.stop("primary", mode)

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend at once (a machine/OOM crash). Nothing
        committed is lost (fsync=on); the next start_primary() does crash recovery. Raises
        PgClusterError if the processes are still alive after 10 s."""
        with self.state.locked():
            self.servers.kill("primary")

    def start_primary(self) -> None:
        """Start the primary (after stop or kill: crash recovery happens here). The replica reconnects
        by itself within ~1 s (wal_retrieve_retry_interval). Raises PgClusterError on failure."""
        with self.state.locked():
            self.state.require()
            self.servers.start("primary")
            self.bouncer.repoint()  # the port may have changed

    def stop_replica(self, mode: str = "fast") -> None:
        """Stop the replica with pg_ctl ``mode``. Raises ValueError for an unknown mode."""
        with self.state.locked():
            self.servers.stop("replica", mode)

    def start_replica(self) -> None:
        """Start the replica; it resumes streaming from its slot. Raises PgClusterError on failure."""
        with self.state.locked():
            self.state.require()
            self.servers.start("replica")

    # ------------------------------------------------------------------------------ failover

    def promote_replica(self, timeout: float = 30) -> float:
        """Make the replica the primary, for when the primary is gone (after :meth:`kill_primary`), within
        ``timeout`` seconds: see :meth:`Replication.promote`; then PgBouncer is re-pointed at it and the
        secrets are rewritten. Returns the seconds promotion took.

        Raises PgClusterError while the old primary still runs (two primaries would both take writes)
        or when the replica is not running."""
        with self.state.locked():
            self.state.require()
            if self.servers.running_pid("primary") is not None:
                raise PgClusterError("the primary is still running: stop or kill it before promoting the "
                                     "replica (two primaries would both accept writes)")
            if self.servers.running_pid("replica") is None:
                raise PgClusterError("no running replica to promote")
            elapsed = self.replication.promote(timeout)
            if self.state.data.get("pgbouncer"):
                self.bouncer.repoint()  # RELOAD: new server address
            self.write_secrets()
            return elapsed

    def rebuild_replica(self, timeout: float = 60) -> None:
        """After :meth:`promote_replica`: clone a new replica from the new primary on the old primary's
        port, wait up to ``timeout`` seconds for it to catch up, restore synchronous replication if used,
        rewrite the secrets. Raises PgClusterError, TimeoutError."""
        with self.state.locked():
            self.state.require()
            self.replication.rebuild_replica(timeout)
            self.write_secrets()

    def failover(self) -> dict:
        """kill -9 the primary if it still runs, promote the replica, rebuild a replica. Returns
        ``status()`` plus ``promote_seconds``."""
        with self.state.locked():
            if self.servers.running_pid("primary") is not None:
                self.kill_primary()
            promote_seconds = self.promote_replica()
            self.rebuild_replica()
            return {**self.status(), "promote_seconds": round(promote_seconds, 3)}

    # ----------------------------------------------------------------------------- PgBouncer

    def start_pgbouncer(self, remember: bool = True) -> int:
        """Start (or keep) PgBouncer in front of the primary; returns its port. ``remember``: also start
        it with the servers from now on and route the default secrets through it (False: just run it,
        e.g. for tests next to the direct path). Raises PgBouncerNotFound, PgClusterError."""
        with self.state.locked():
            data = self.state.require()
            if remember:
                data["pgbouncer"] = True
                self.state.save()
            port = self.bouncer.start()
            if remember:
                self.write_secrets()
            return port

    def stop_pgbouncer(self) -> None:
        """Stop PgBouncer (SIGTERM, then SIGKILL after 10 s); a later start() keeps it off."""
        with self.state.locked():
            self.state.require()["pgbouncer"] = False
            self.state.save()
            self.bouncer.stop()
