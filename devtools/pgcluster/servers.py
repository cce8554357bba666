"""One PostgreSQL server of the local cluster: initdb, its settings, start, stop, and what runs.

Both servers listen on 127.0.0.1 only, on free ports, with their unix sockets in a directory of the
cluster; every TCP connection (replication included) uses scram-sha-256. fsync stays on, so a SIGKILL
loses nothing that was acknowledged.
"""

from __future__ import annotations

from devtools.pgcluster.host import (
    alive,
    conf_quote,
    conninfo,
    ensure_free_port,
    is_postgres,
    kill_all,
    server_processes,
)
from devtools.pgcluster.state import (
    CONNECT_TIMEOUT_S,
    HOST,
    PG_CTL_TIMEOUT_S,
    REPLICATION_ROLE,
    SLOT_NAME,
    ClusterState,
    PgClusterError,
)
from functions.runtime.credentials import ADMIN_ROLE

INCLUDE_LINE = "include_if_exists = 'nlp_cluster.conf'"  # our settings, rewritten on every start
SHUTDOWN_MODES = ("smart", "fast", "immediate")
HBA = (
    "# Written by devtools.pgcluster: passwords (SCRAM) everywhere, TCP on\n"
    "# 127.0.0.1 only, replication included.\n"
    "# TYPE  DATABASE     USER  ADDRESS        METHOD\n"
    "local   all          all                  scram-sha-256\n"
    "local   replication  all                  scram-sha-256\n"
    "host    all          all   127.0.0.1/32   scram-sha-256\n"
    "host    replication  all   127.0.0.1/32   scram-sha-256\n"
)


class Servers:
    """The primary and the replica as processes and data directories (``server``: "primary" or
    "replica", by role: after a promotion the directories swap, the roles do not).

    Methods raise PgClusterError when a server cannot be created, started or stopped in time (the
    message includes the tail of the server log) and ValueError for an unknown shutdown mode."""

    def __init__(self, state: ClusterState):
        self.state = state

    # ----------------------------------------------------------------------------------- initdb

    def primary_initialized(self) -> bool:
        """Whether initdb of the primary completed (not PG_VERSION: initdb writes that first, so an
        interrupted initdb would look complete; the include line is the very last step)."""
        try:
            return INCLUDE_LINE in (self.state.data_dir("primary") / "postgresql.conf").read_text()
        except OSError:
            return False

    def prepare_dirs(self) -> None:
        """The data root and the socket directory, owned by the server user."""
        self.state.host.make_server_dir(self.state.data_root())
        self.state.host.make_server_dir(self.state.socket_dir())

    def initdb(self) -> None:
        """A new primary (SCRAM for every connection); removes a half-made one and any old replica."""
        state, host = self.state, self.state.host
        primary = state.data_dir("primary")
        # A half-made primary from a crashed first start, and any replica of an older primary, are junk.
        host.rmtree(primary)
        host.rmtree(state.data_dir("replica"))
        pwfile = state.data_root() / "initdb.pw"
        host.write_server_file(pwfile, state.data["passwords"][ADMIN_ROLE])
        try:
            # --no-sync only here: a fresh, empty cluster is trivially re-creatable; the running servers
            # keep fsync=on (the fault tests SIGKILL the primary and count acknowledged rows).
            state.run(["initdb", "-D", str(primary), "-U", ADMIN_ROLE, f"--pwfile={pwfile}",
                       "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8",
                       "--locale=C.UTF-8", "--no-sync", "--no-instructions"], timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        host.write_server_file(primary / "pg_hba.conf", HBA)
        conf = primary / "postgresql.conf"
        text = conf.read_text()
        if INCLUDE_LINE not in text:
            host.write_server_file(conf, f"{text}\n{INCLUDE_LINE}\n")

    # --------------------------------------------------------------------------------- settings

    def write_conf(self, server: str, role: str | None = None) -> None:
        """Our settings, rewritten on every start (the port may have changed). postgresql.conf includes
        it. ``role``: what the server is about to be (a promotion writes a primary's file into the
        replica's directory just before promoting it)."""
        role = role or server
        data = self.state.data
        # Only on a primary with a streaming replica (Replication.apply_synchronous); a standby ignores it.
        sync_names = SLOT_NAME if role == "primary" and data.get("sync_active") else ""
        settings = {
            "listen_addresses": HOST,
            "port": data["ports"][server],
            "unix_socket_directories": str(self.state.socket_dir()),
            "max_connections": 200,
            "wal_level": "replica",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            # A replica down for long must not fill the disk: past this the slot is lost and start()
            # re-clones the replica.
            "max_slot_wal_keep_size": "2GB",
            "fsync": "on",
            # "on": local flush, plus the standby's flush when synchronous_standby_names names it.
            "synchronous_commit": "on",
            "synchronous_standby_names": sync_names,
            "hot_standby": "on",
            # Analytics queries on the replica should not be cancelled by vacuum on the primary.
            "hot_standby_feedback": "on",
            "wal_receiver_status_interval": "1s",  # fresher lag numbers on the primary
            "wal_retrieve_retry_interval": "1s",  # reconnect fast after a primary restart
            "password_encryption": "scram-sha-256",
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "log_timezone": "UTC",
            "timezone": "UTC",
        }
        lines = ["# Written by devtools.pgcluster on every start; do not edit."]
        for key, value in settings.items():
            rendered = str(value) if isinstance(value, int) else conf_quote(str(value))
            lines.append(f"{key} = {rendered}")
        self.state.host.write_server_file(self.state.data_dir(server) / "nlp_cluster.conf", "\n".join(lines) + "\n")
        if role == "replica":
            self.write_replica_conninfo()

    def write_replica_conninfo(self) -> None:
        """Point the replica at the primary's current port (pg_basebackup -R wrote the original)."""
        data = self.state.data
        primary_conninfo = conninfo(
            host=HOST,
            port=data["ports"]["primary"],
            user=REPLICATION_ROLE,
            password=data["passwords"][REPLICATION_ROLE],
            application_name=SLOT_NAME,
            connect_timeout=CONNECT_TIMEOUT_S,
        )
        auto = self.state.data_dir("replica") / "postgresql.auto.conf"
        keep = [
            line
            for line in (auto.read_text().splitlines() if auto.exists() else [])
            if line.split("=", 1)[0].strip() not in {"primary_conninfo", "primary_slot_name"}
        ]
        keep += [
            f"primary_conninfo = {conf_quote(primary_conninfo)}",
            f"primary_slot_name = {conf_quote(SLOT_NAME)}",
        ]
        self.state.host.write_server_file(auto, "\n".join(keep) + "\n")

    def reload(self, server: str) -> None:
        """``pg_ctl reload``: the server re-reads its settings."""
        self.state.run(["pg_ctl", "-D", str(self.state.data_dir(server)), "reload", "-s"], timeout=30)

    # ------------------------------------------------------------------------------ what runs

    def running_pid(self, server: str) -> int | None:
        """Postmaster pid from postmaster.pid if that process is alive and is postgres."""
        try:
            first = (self.state.data_dir(server) / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first.strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) and is_postgres(pid) else None

    def processes_of(self, server: str) -> list[int]:
        """Every live process of ``server``, its postmaster first."""
        if self.state.data is None or not self.state.data_dir(server).exists():
            return []
        pids = server_processes(self.state.data_dir(server))
        postmaster = self.running_pid(server)
        # Postmaster first, so it cannot restart children we are about to kill.
        return sorted(pids, key=lambda p: p != postmaster)

    def log_tail(self, server: str, lines: int = 15) -> str:
        """The last ``lines`` lines of the server's log, or "(no log)"."""
        try:
            return "\n".join(self.state.log_path(server).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def clear_stale_lock(self, server: str) -> None:
        """After a crash the postmaster.pid (and the socket lock) name a dead or zombie pid; postgres
        refuses to start while that pid "exists". Kill orphaned backends, then remove the stale files."""
        data_dir = self.state.data_dir(server)
        pidfile = data_dir / "postmaster.pid"
        if not pidfile.exists() or self.running_pid(server) is not None:
            return
        leftovers = server_processes(data_dir)
        if not kill_all(leftovers):
            raise PgClusterError(f"orphaned {server} processes {leftovers} do not exit")
        pidfile.unlink(missing_ok=True)
        port = self.state.data["ports"].get(server)
        if port:
            for name in (f".s.PGSQL.{port}", f".s.PGSQL.{port}.lock"):
                (self.state.socket_dir() / name).unlink(missing_ok=True)

    # ---------------------------------------------------------------------------- start / stop

    def start(self, server: str) -> None:
        """Start ``server`` unless it runs (on its port, or a new free one when that is taken)."""
        if self.running_pid(server) is not None:
            return
        self.clear_stale_lock(server)
        ports = self.state.data["ports"]
        last_error = None
        for _attempt in range(3):
            if ensure_free_port(ports, server):
                self.state.save()
            self.write_conf(server)
            if server == "primary" and (self.state.data_dir("replica") / "standby.signal").exists():
                self.write_replica_conninfo()
                if self.running_pid("replica") is not None:
                    self.reload("replica")
            try:
                self.state.run(["pg_ctl", "-D", str(self.state.data_dir(server)), "-l",
                                str(self.state.log_path(server)), "-w", "-t", str(PG_CTL_TIMEOUT_S), "start"],
                               timeout=PG_CTL_TIMEOUT_S + 15)
                return
            except PgClusterError as exc:
                last_error = exc
                tail = self.log_tail(server)
                if "could not bind" in tail or "already in use" in tail:
                    ports[server] = None  # lost the race for the port: pick another
                    self.clear_stale_lock(server)
                    continue
                raise PgClusterError(
                    f"{server} did not start: {exc}\n--- {self.state.log_path(server)} ---\n{tail}"
                ) from exc
        raise PgClusterError(f"{server} could not bind a port: {last_error}")

    def stop(self, server: str, mode: str) -> None:
        """Stop ``server`` with pg_ctl ``mode`` (smart|fast|immediate), then immediate, then SIGKILL: nothing
        of it survives. A no-op for a server that was never created."""
        if mode not in SHUTDOWN_MODES:
            raise ValueError(f"unknown shutdown mode {mode!r}")
        if self.state.data is None or not self.state.data_dir(server).exists():
            return
        if self.running_pid(server) is not None:
            for attempt_mode, wait in ((mode, 30), ("immediate", 15)):
                try:
                    self.state.run(["pg_ctl", "-D", str(self.state.data_dir(server)), "-m", attempt_mode,
                                    "-w", "-t", str(wait), "stop"], timeout=wait + 10)
                    break
                except PgClusterError:
                    if self.running_pid(server) is None:
                        break
        # Last resort (and cleanup after a crash): nothing of this server may survive stop().
        kill_all(self.processes_of(server))

    def kill(self, server: str) -> None:
        """SIGKILL the postmaster and every backend at once (a machine/OOM crash). Raises PgClusterError
        if they are still alive after 10 s."""
        pids = self.processes_of(server)
        if not kill_all(pids):
            raise PgClusterError(f"{server} processes {pids} survived SIGKILL for 10 s")
