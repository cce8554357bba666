"""A real PgBouncer in front of the local primary, like CloudNativePG's ``Pooler``.

The Debian package's binary, ``pool_mode = transaction``, SCRAM auth from the servers' own verifiers,
127.0.0.1 and a free port, its files under ``<data_root>/pgbouncer``. Started and stopped with the
servers and re-pointed (SIGHUP = RELOAD) at a promoted primary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from devtools.pgcluster.host import alive, ensure_free_port, port_free, wait_gone
from devtools.pgcluster.roles import Roles
from devtools.pgcluster.state import (
    CONNECT_TIMEOUT_S,
    DBNAME,
    HOST,
    PGBOUNCER,
    ClusterState,
    PgClusterError,
    find_pgbouncer,
)
from functions.runtime.credentials import ADMIN_ROLE

START_TIMEOUT_S = 10


class PgBouncer:
    """The cluster's PgBouncer process and its files (pgbouncer.ini, userlist.txt, log, pidfile).

    Methods raise PgBouncerNotFound when it is not installed and PgClusterError (with the log's tail)
    when it does not start or stop in time."""

    def __init__(self, state: ClusterState, roles: Roles):
        self.state = state
        self.roles = roles

    def directory(self) -> Path:
        """``<data_root>/pgbouncer``: its ini, auth file, log and pidfile."""
        return self.state.pgbouncer_dir()

    def pid(self) -> int | None:
        """PgBouncer's pid from its pidfile when that process is alive and is pgbouncer."""
        if self.state.data is None or not self.state.data.get("data_root"):
            return None
        try:
            pid = int((self.directory() / "pgbouncer.pid").read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            return None
        return pid if comm == "pgbouncer" and alive(pid) else None

    def write_files(self) -> Path:
        """pgbouncer.ini and its auth_file; returns the ini path.

        auth_file holds the roles' SCRAM verifiers as stored in pg_authid, not passwords: PgBouncer
        checks clients against them and, since each client authenticated with SCRAM, logs into the
        server with the keys that exchange gave it (so nothing here can log in by itself)."""
        directory = self.directory()
        host = self.state.host
        host.make_server_dir(directory)
        userlist = "".join(f'"{user}" "{verifier}"\n' for user, verifier in self.roles.verifiers())
        host.write_server_file(directory / "userlist.txt", userlist)
        ports = self.state.data["ports"]
        settings = {
            "listen_addr": HOST,
            "listen_port": ports[PGBOUNCER],
            "unix_socket_dir": "",  # TCP on 127.0.0.1 only, like the servers
            "auth_type": "scram-sha-256",
            "auth_file": str(directory / "userlist.txt"),
            "admin_users": ADMIN_ROLE,  # SHOW POOLS / SHOW SERVERS on the `pgbouncer` console
            "pool_mode": "transaction",  # what the CloudNativePG Pooler of argocd/data-plane runs
            "max_client_conn": 500,
            "default_pool_size": 20,
            # While the primary is down PgBouncer queues queries for a server connection; the default
            # 120 s would hold a request past the watchdog's timeout. 2 s: a short blip is absorbed
            # (the query runs once the server is back), a real outage becomes a 503 soon.
            "query_wait_timeout": 2,
            "server_connect_timeout": CONNECT_TIMEOUT_S,
            "server_login_retry": 1,  # default 15 s of refusing clients after one failed server login
            "ignore_startup_parameters": "extra_float_digits",
            "logfile": str(directory / "pgbouncer.log"),
            "pidfile": str(directory / "pgbouncer.pid"),
            "log_connections": 0,
            "log_disconnections": 0,
        }
        lines = [
            "; Written by devtools.pgcluster on every start; do not edit.",
            "[databases]",
            f"{DBNAME} = host={HOST} port={ports['primary']} dbname={DBNAME}",
            "[pgbouncer]",
            *(f"{key} = {value}" for key, value in settings.items()),
        ]
        ini = directory / "pgbouncer.ini"
        host.write_server_file(ini, "\n".join(lines) + "\n")
        return ini

    def repoint(self) -> bool:
        """When PgBouncer runs: rewrite its files for the primary's current port and RELOAD (SIGHUP).
        Returns whether it runs."""
        pid = self.pid()
        if pid is None:
            return False
        self.write_files()
        os.kill(pid, signal.SIGHUP)
        return True

    def start(self) -> int:
        """Start PgBouncer (daemon, as the server user) or, when it runs, re-point it at the primary.
        Returns its port."""
        binary = find_pgbouncer()
        ports = self.state.data["ports"]
        if self.repoint():
            return ports[PGBOUNCER]
        log = self.directory() / "pgbouncer.log"
        for _attempt in range(3):
            if ensure_free_port(ports, PGBOUNCER):
                self.state.save()
            ini = self.write_files()
            (self.directory() / "pgbouncer.pid").unlink(missing_ok=True)  # stale: nobody runs
            log_size = log.stat().st_size if log.exists() else 0
            self.state.run(["pgbouncer", "-d", "-q", str(ini)], timeout=30, binary=binary)
            if self._wait_listening(ports[PGBOUNCER]):
                return ports[PGBOUNCER]
            new_log = log.read_text(errors="replace")[log_size:] if log.exists() else ""
            self.stop()
            if "in use" in new_log or "bind" in new_log:
                ports[PGBOUNCER] = None  # lost the race for the port: pick another
                continue
            raise PgClusterError(
                f"pgbouncer did not start within {START_TIMEOUT_S} s\n--- {log} ---\n{new_log[-2000:]}")
        raise PgClusterError("pgbouncer could not bind a port")

    def _wait_listening(self, port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.pid() is not None and not port_free(port):
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1):
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """SIGTERM (PgBouncer's immediate shutdown), then SIGKILL after 10 s."""
        pid = self.pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if wait_gone([pid], wait):
                return
        raise PgClusterError(f"pgbouncer {pid} survived SIGKILL")
