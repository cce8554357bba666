"""A local PostgreSQL primary + streaming read replica for development, tests and benchmarks.

``LocalCluster(base_dir).start()`` builds (once) and starts:

* a **primary** (``initdb``; ``wal_level=replica``; a physical replication slot; fsync on, so a SIGKILL
  loses nothing that was acknowledged),
* a **replica** cloned with ``pg_basebackup -R -S <slot>`` (hot standby, asynchronous streaming),

both listening on 127.0.0.1 only, on free ports, with their unix sockets in a directory of the cluster.
Every TCP connection (replication included) uses scram-sha-256 with generated passwords. It then runs
``sql/roles/bootstrap_roles.sql``, sets the role passwords, applies ``sql/migrations`` as ``nlp_owner`` and
writes the function secrets (``ner-writer-dsn``, ``stats-replica-dsn``, ``stats-primary-dsn``,
``migrations-dsn``) into ``secrets_dir``. Ports and passwords are kept in ``base_dir/cluster.json`` so a
second ``start()`` reuses everything (and is a no-op when the servers are already up).

PostgreSQL refuses to run as root: when euid is 0 every server binary runs as the ``postgres`` system user
(``runuser -u postgres --``) and the server directories are owned by it. If ``base_dir`` is not reachable
by that user (e.g. pytest's 0700 temp dirs), the server files go to ``/tmp/nlp-pg-<hash>`` instead.

Options (kept in ``cluster.json`` once given):

* ``pgbouncer=True``: a real **PgBouncer** (the Debian package; ``pool_mode = transaction``, SCRAM auth
  from the servers' own verifiers, 127.0.0.1 and a free port, files under ``<data_root>/pgbouncer``) in
  front of the primary, like CloudNativePG's ``Pooler``; ``ner-writer-dsn`` and ``stats-primary-dsn`` then
  go through it. It is started and stopped with the servers and re-pointed at a promoted primary.
* ``synchronous=True``: the primary names the replica in ``synchronous_standby_names`` (with
  ``synchronous_commit = on``, a COMMIT returns only once the replica has flushed it), enabled once the
  replica streams and dropped while there is no replica (as CloudNativePG with ``minSyncReplicas: 0``):
  availability over durability while degraded.

Failover: :meth:`LocalCluster.promote_replica` (the primary must be gone, e.g. after
:meth:`kill_primary`) promotes the replica and swaps the roles (the new primary keeps its port);
:meth:`rebuild_replica` clones a new replica from it on the old primary's port, so a multi-host DSN
(:meth:`multihost_dsn`, ``target_session_attrs=read-write``) names the right two ports before and after.

CLI: ``python -m devtools.pgcluster start|stop|status|destroy|failover [--dir DIR] [--pgbouncer]
[--synchronous]`` prints JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

from devtools.processes import LOCAL_DIR
from functions.runtime import migrate
from functions.runtime.queries import sql_dir

HOST = "127.0.0.1"
DBNAME = "nlp"
SLOT_NAME = "nlp_replica"
REPLICATION_ROLE = "nlp_replicator"
SERVER_USER = "postgres"  # system user the servers run as when we are root
ROLES = {"owner": "nlp_owner", "writer": "nlp_writer", "analyst": "nlp_analyst", "admin": "postgres"}
SERVERS = ("primary", "replica")
# secret file -> (role, server); names fixed by INTERFACES.md
SECRETS = {
    "ner-writer-dsn": ("writer", "primary"),
    "stats-replica-dsn": ("analyst", "replica"),
    "stats-primary-dsn": ("analyst", "primary"),
    "migrations-dsn": ("owner", "primary"),
}
# Ways to reach the primary that write_secrets() can put into the writer's DSNs.
ROUTES = ("direct", "pgbouncer", "multihost")
PGBOUNCER = "pgbouncer"  # also its key in the state's ports
CONNECT_TIMEOUT_S = 3
PG_CTL_TIMEOUT_S = 60  # pg_ctl -t: start includes crash recovery, so be generous
STATE_FILE = "cluster.json"
STATE_VERSION = 1
DEFAULT_BASE_DIR = LOCAL_DIR / "pg"  # outside what faas-cli build copies (README: local state)
INSTALL_HINT = (
    "PostgreSQL 15 server binaries (initdb, pg_ctl, postgres, pg_basebackup) were not found. "
    "Install them with `apt-get install postgresql-15` (Debian/Ubuntu; on other systems the postgresql "
    "server package), or point PG_BIN at the directory that holds them."
)
DEFAULT_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
PGBOUNCER_INSTALL_HINT = (
    "PgBouncer was not found. Install it with `apt-get install pgbouncer` (Debian/Ubuntu; the package's own "
    "service is not needed: this tool runs its own instance), or point PGBOUNCER_BIN at the binary."
)
DEFAULT_PGBOUNCER_BINS = (Path("/usr/sbin/pgbouncer"), Path("/usr/bin/pgbouncer"))
_INCLUDE_LINE = "include_if_exists = 'nlp_cluster.conf'"  # our settings, rewritten on every start
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin for ".s.PGSQL.NNNNN.lock"


class PgClusterError(RuntimeError):
    """The local cluster could not be created, started, stopped or queried; the message says why."""


class PgBinariesNotFound(PgClusterError):
    """No PostgreSQL server binaries on this machine; the message says what to install."""


class PgBouncerNotFound(PgClusterError):
    """No pgbouncer binary on this machine; the message says what to install."""


def find_pgbouncer() -> Path:
    """The pgbouncer binary: ``$PGBOUNCER_BIN``, /usr/sbin/pgbouncer, then ``$PATH``. Raises
    PgBouncerNotFound (with the install command) when there is none."""
    candidates = [Path(os.environ["PGBOUNCER_BIN"])] if os.environ.get("PGBOUNCER_BIN") else []
    candidates.extend(DEFAULT_PGBOUNCER_BINS)
    found = shutil.which("pgbouncer")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if os.access(candidate, os.X_OK) and candidate.is_file():
            return candidate
    raise PgBouncerNotFound(PGBOUNCER_INSTALL_HINT)


def find_pg_bin() -> Path:
    """Directory with the PostgreSQL server binaries: ``$PG_BIN``, then /usr/lib/postgresql/15/bin, then
    ``pg_config --bindir``. Raises PgBinariesNotFound (with the install command) when none has them."""
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    candidates.extend(DEFAULT_BIN_DIRS)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in _REQUIRED_BINARIES):
            return directory
    raise PgBinariesNotFound(INSTALL_HINT)


# --------------------------------------------------------------------------------------------- processes


def _proc_state(pid: int) -> str | None:
    """Kernel state letter of ``pid`` (``Z`` = zombie), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    # Zombies count as dead: in containers PID 1 often never reaps the orphaned postmaster.
    state = _proc_state(pid)
    return state is not None and state != "Z"


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in {"postgres", "postmaster"}
    except OSError:
        return False


def _server_processes(data_dir: Path) -> list[int]:
    """Live postgres processes whose working directory is ``data_dir``: the postmaster and all its
    children chdir there, so this finds a server's processes even after its postmaster died."""
    target = str(data_dir.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.readlink(entry / "cwd") != target:
                continue
        except OSError:
            continue
        if _alive(pid) and _is_postgres(pid):
            found.append(pid)
    return found


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option as the postmaster: a TIME_WAIT leftover must not make a port look busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_port(exclude: set[int] = frozenset()) -> int:
    """A port the kernel says is free right now (bind to 0 and release). Racy by nature: the caller
    retries with a new port if the server then fails to bind."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
    raise PgClusterError("could not find a free TCP port on 127.0.0.1")


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _conninfo(**params: object) -> str:
    """key=value DSN; values are quoted only when needed (generated passwords never need it)."""
    parts = []
    for key, value in params.items():
        text = str(value)
        if not text or any(c in text for c in " '\\"):
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append(f"{key}={text}")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------ cluster


class LocalCluster:
    """Primary + streaming replica under ``base_dir`` (see the module docstring).

    Methods raise PgClusterError when a server cannot be started/stopped in time (the message includes
    the tail of the server log), PgBinariesNotFound when PostgreSQL is not installed, TimeoutError from
    ``wait_for_replay``, and psycopg errors when a SQL step fails.
    """

    def __init__(self, base_dir: Path | str = DEFAULT_BASE_DIR, *, pgbouncer: bool | None = None,
                 synchronous: bool | None = None):
        """``pgbouncer`` / ``synchronous``: see the module docstring; None keeps what the cluster in
        ``base_dir`` was last started with (default False). They take effect on :meth:`start`."""
        self.base_dir = Path(base_dir).absolute()
        self.secrets_dir = self.base_dir / "secrets"
        self._state_path = self.base_dir / STATE_FILE
        self._state: dict | None = self._load_state()
        self._options = {"pgbouncer": pgbouncer, "synchronous": synchronous}
        self._bin: Path | None = None
        self._as_server_user = os.geteuid() == 0
        self._lock_depth = 0
        self._thread_lock = threading.RLock()
        self._lock_fd: int | None = None

    # ----------------------------------------------------------------------------------- public API

    def start(self) -> dict:
        """Create (first time) and start both servers, bootstrap roles, migrate, write secrets; then
        wait until the replica has replayed everything the primary has. Idempotent: running servers
        are reused, stopped ones started, leftovers of a crashed run cleaned. Returns ``status()``.

        Raises PgBinariesNotFound, PgClusterError (a server did not come up: log tail included),
        migrate.MigrationError, TimeoutError (replica did not catch up within 30 s)."""
        with self._locked():
            self._bin = find_pg_bin()
            state = self._ensure_state()
            for option, value in self._options.items():
                if value is not None:
                    state[option] = bool(value)
            if state.get("pgbouncer"):
                find_pgbouncer()  # fail before starting anything when it is not installed
            self._prepare_dirs()
            if not self._primary_initialized():
                self._initdb()
            if self._running_pid("primary") is None:
                # A primary starting with synchronous_standby_names set would hold the bootstrap's own
                # commits until the replica (started below) streams: start it asynchronous.
                state["sync_active"] = False
            self._start_server("primary")
            self._bootstrap()
            if self._slot_lost():
                # The slot outgrew max_slot_wal_keep_size while the replica was down: re-clone.
                self._stop_server("replica", "immediate")
                self._rmtree(self._data_dir("replica"))
                self._recreate_slot()
            if not (self._data_dir("replica") / "standby.signal").exists():
                self._clone_replica()
            self._start_server("replica")
            migrate.apply(self.dsn("owner", "primary"), sql_dir() / "migrations")
            self.wait_for_replay(self._current_lsn(), timeout=30)
            # Only now: with the names set before the replica streamed, the bootstrap's own commits
            # would wait for a standby that does not exist yet.
            self._apply_synchronous(bool(state.get("synchronous")))
            if state.get("pgbouncer") or self._pgbouncer_pid() is not None:
                self._start_pgbouncer()  # (re-)pointed at the primary's current port
            self.write_secrets()
            state["started_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            self._save_state()
            return self.status()

    def stop(self, mode: str = "fast") -> None:
        """Stop both servers (primary first, so the replica receives the shutdown checkpoint). Never
        hangs: pg_ctl has a timeout, then immediate mode, then SIGKILL. Safe on a never-started dir."""
        with self._locked():
            self._stop_pgbouncer()
            for server in SERVERS:
                self._stop_server(server, mode)

    def status(self) -> dict:
        """Where things are and whether each server runs (from postmaster.pid and /proc; no SQL)."""
        state = self._state or {}
        result = {
            "base_dir": str(self.base_dir),
            "initialized": bool(state) and self._primary_initialized(),
            "data_root": state.get("data_root"),
            "secrets_dir": str(self.secrets_dir),
            "dbname": DBNAME,
            "host": HOST,
        }
        for server in SERVERS:
            info = {"running": False, "pid": None, "port": state.get("ports", {}).get(server)}
            if state:
                data_dir = self._data_dir(server)
                pid = self._running_pid(server)
                info.update(
                    running=pid is not None, pid=pid, data_dir=str(data_dir), log=str(self._log_path(server))
                )
            result[server] = info
        result["synchronous"] = bool(state.get("synchronous"))
        result["synchronous_standby_names"] = SLOT_NAME if state.get("sync_active") else ""
        bouncer = {"enabled": bool(state.get("pgbouncer")), "running": False, "pid": None,
                   "port": state.get("ports", {}).get(PGBOUNCER)}
        if state.get("data_root"):
            pid = self._pgbouncer_pid()
            bouncer.update(running=pid is not None, pid=pid, log=str(self._pgbouncer_dir() / "pgbouncer.log"))
        result[PGBOUNCER] = bouncer
        return result

    def dsn(self, role: str = "writer", server: str = "primary") -> str:
        """libpq key=value DSN for ``role`` (owner|writer|analyst|admin) on ``server`` (primary|replica,
        or pgbouncer = the primary through PgBouncer). Raises ValueError for an unknown role/server,
        PgClusterError if the cluster was never started (or PgBouncer never was, for ``pgbouncer``)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
        if server not in (*SERVERS, PGBOUNCER):
            raise ValueError(f"unknown server {server!r}; expected primary, replica or pgbouncer")
        state = self._require_state()
        if not state["ports"].get(server):
            raise PgClusterError(f"{server} of {self.base_dir} was never started")
        user = ROLES[role]
        return _conninfo(
            host=HOST,
            port=state["ports"][server],
            dbname=DBNAME,
            user=user,
            password=state["passwords"][user],
            connect_timeout=CONNECT_TIMEOUT_S,
        )

    def multihost_dsn(self, role: str = "writer", target: str = "read-write") -> str:
        """A DSN naming both servers' ports with libpq's ``target_session_attrs=<target>``: read-write
        finds whichever is the primary (so it follows a failover without a restart), prefer-standby the
        replica while there is one. Raises ValueError / PgClusterError like :meth:`dsn`."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
        state = self._require_state()
        user = ROLES[role]
        # Primary first for read-write, replica first for the others: the first try usually fits.
        order = SERVERS if target == "read-write" else tuple(reversed(SERVERS))
        ports = [str(state["ports"][server]) for server in order]
        return _conninfo(
            host=",".join([HOST] * len(ports)),
            port=",".join(ports),
            dbname=DBNAME,
            user=user,
            password=state["passwords"][user],
            # Per host: a dead host costs at most this before libpq tries the next.
            connect_timeout=CONNECT_TIMEOUT_S,
            target_session_attrs=target,
        )

    def write_secrets(self, directory: Path | str | None = None, route: str | None = None) -> Path:
        """Write the four DSN secrets (files, 0600, in a 0700 dir; default ``secrets_dir``) and return the
        directory. ``route`` decides how ``ner-writer-dsn`` and ``stats-primary-dsn`` reach the primary:
        ``direct``, ``pgbouncer`` or ``multihost`` (both ports, read-write; the replica DSN then prefers
        the standby among both). Default: pgbouncer when the cluster runs one, else direct. Migrations
        always go direct (DDL and advisory locks need a session). Raises ValueError for another route."""
        state = self._require_state()
        route = route or ("pgbouncer" if state.get("pgbouncer") else "direct")
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")
        directory = Path(directory) if directory is not None else self.secrets_dir
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        for name, (role, server) in SECRETS.items():
            dsn = self.dsn(role, server)
            if name != "migrations-dsn" and route == "pgbouncer" and server == "primary":
                dsn = self.dsn(role, PGBOUNCER)
            elif name != "migrations-dsn" and route == "multihost":
                dsn = self.multihost_dsn(role, "read-write" if server == "primary" else "prefer-standby")
            path = directory / name
            tmp = path.with_name(f".{name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(dsn + "\n")
            os.replace(tmp, path)
        return directory

    def wait_for_replay(self, lsn: str, timeout: float = 10) -> None:
        """Block until the replica's ``pg_last_wal_replay_lsn()`` >= ``lsn`` (e.g. '0/16B3748').
        Retries through replica restarts; raises TimeoutError (with the last replay LSN or error seen)."""
        deadline = time.monotonic() + timeout
        last = "never connected"
        conn = None
        try:
            while True:
                try:
                    if conn is None or conn.closed:
                        remaining = max(1, int(deadline - time.monotonic()))
                        conn = psycopg.connect(
                            self.dsn("admin", "replica"),
                            autocommit=True,
                            connect_timeout=min(CONNECT_TIMEOUT_S, remaining),
                        )
                    row = conn.execute(
                        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, pg_last_wal_replay_lsn()::text",
                        (lsn,),
                    ).fetchone()
                    if row[0]:
                        return
                    last = f"replay_lsn={row[1]}"
                except psycopg.OperationalError as exc:
                    lines = str(exc).strip().splitlines() or [type(exc).__name__]
                    last = f"replica unreachable: {lines[-1]}"
                    if conn is not None:
                        conn.close()
                        conn = None
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"replica did not replay {lsn} within {timeout}s ({last})")
                time.sleep(0.02)
        finally:
            if conn is not None:
                conn.close()

    def stop_primary(self, mode: str = "fast") -> None:
        """Stop the primary with pg_ctl ``mode`` ('smart'|'fast'|'immediate'; immediate = crash-like,
        recovery on next start). Raises ValueError for another mode."""
        with self._locked():
            self._stop_server("primary", mode)

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend at once (a machine/OOM crash). Nothing
        committed is lost (fsync=on); the next start_primary() does crash recovery. Raises
        PgClusterError if the processes are still alive after 10 s."""
        with self._locked():
            pids = self._server_processes_of("primary")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not _wait_gone(pids, 10):
                raise PgClusterError(f"primary processes {pids} survived SIGKILL for 10 s")

    def start_primary(self) -> None:
        """Start the primary (after stop or kill: crash recovery happens here). The replica reconnects
        by itself within ~1 s (wal_retrieve_retry_interval). Raises PgClusterError on failure."""
        with self._locked():
            self._require_state()
            self._start_server("primary")
            if self._pgbouncer_pid() is not None:
                self._start_pgbouncer()  # the port may have changed: re-point it

    def stop_replica(self, mode: str = "fast") -> None:
        with self._locked():
            self._stop_server("replica", mode)

    def start_replica(self) -> None:
        """Start the replica; it resumes streaming from its slot. Raises PgClusterError on failure."""
        with self._locked():
            self._require_state()
            self._start_server("replica")

    def pause_replay(self, timeout: float = 5) -> None:
        """Pause WAL replay on the replica (it keeps receiving WAL, so lag grows) and wait until the
        pause is effective. Raises TimeoutError, psycopg.OperationalError if the replica is down."""
        with psycopg.connect(self.dsn("admin", "replica"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            deadline = time.monotonic() + timeout
            while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replay not paused within {timeout}s")
                time.sleep(0.02)

    def resume_replay(self) -> None:
        """Resume WAL replay on the replica. Raises psycopg.OperationalError if the replica is down."""
        with psycopg.connect(self.dsn("admin", "replica"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    def promote_replica(self, timeout: float = 30) -> float:
        """Make the replica the primary, for when the primary is gone (after :meth:`kill_primary`):
        synchronous replication is dropped first (there is no standby left to wait for), then
        ``pg_ctl promote`` waits until it accepts writes; the roles swap in the state (the new primary
        keeps its port), the physical slot is created on it, PgBouncer is re-pointed at it and the
        secrets are rewritten. Returns the seconds promotion took.

        Raises PgClusterError while the old primary still runs (two primaries would both take writes)
        or when the replica is not running."""
        with self._locked():
            self._require_state()
            if self._running_pid("primary") is not None:
                raise PgClusterError("the primary is still running: stop or kill it before promoting the "
                                     "replica (two primaries would both accept writes)")
            if self._running_pid("replica") is None:
                raise PgClusterError("no running replica to promote")
            started = time.monotonic()
            state = self._state
            state["sync_active"] = False
            self._write_cluster_conf("replica", role="primary")
            self._run(["pg_ctl", "-D", str(self._data_dir("replica")), "reload", "-s"], timeout=30)
            self._run(["pg_ctl", "-D", str(self._data_dir("replica")), "promote", "-w", "-t", str(int(timeout))],
                      timeout=timeout + 10)
            dirs = self._dirs()
            state["dirs"] = {"primary": dirs["replica"], "replica": dirs["primary"]}
            ports = state["ports"]
            ports["primary"], ports["replica"] = ports["replica"], ports["primary"]
            state["promotions"] = state.get("promotions", 0) + 1
            self._save_state()
            elapsed = time.monotonic() - started
            with self._admin() as conn:
                conn.execute(
                    "SELECT pg_create_physical_replication_slot(%s) WHERE NOT EXISTS "
                    "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
                    (SLOT_NAME, SLOT_NAME),
                )
            if state.get("pgbouncer") and self._pgbouncer_pid() is not None:
                self._write_pgbouncer_files()
                os.kill(self._pgbouncer_pid(), signal.SIGHUP)  # RELOAD: new server address
            self.write_secrets()
            return elapsed

    def rebuild_replica(self, timeout: float = 60) -> None:
        """After :meth:`promote_replica`: remove what is left of the old primary, clone a new replica from
        the new primary (on the old primary's port), start it, wait until it has replayed everything and
        then turn synchronous replication back on if the cluster uses it. Raises PgClusterError,
        TimeoutError."""
        with self._locked():
            self._require_state()
            self._stop_server("replica", "immediate")
            # The killed primary left its postmaster.pid and socket lock (on the port the new replica
            # takes over) behind.
            self._clear_stale_lock("replica")
            self._rmtree(self._data_dir("replica"))
            self._clone_replica()
            self._start_server("replica")
            self.wait_for_replay(self._current_lsn(), timeout=timeout)
            self._apply_synchronous(bool(self._state.get("synchronous")))
            self.write_secrets()

    def failover(self) -> dict:
        """kill -9 the primary if it still runs, promote the replica, rebuild a replica. Returns
        ``status()`` plus ``promote_seconds``."""
        with self._locked():
            if self._running_pid("primary") is not None:
                self.kill_primary()
            promote_seconds = self.promote_replica()
            self.rebuild_replica()
            return {**self.status(), "promote_seconds": round(promote_seconds, 3)}

    def set_synchronous(self, enabled: bool) -> None:
        """Switch synchronous replication on or off on the running primary (reload, no restart); it is
        effective for the next COMMIT. Raises PgClusterError when the primary is not running."""
        with self._locked():
            self._require_state()
            self._state["synchronous"] = bool(enabled)
            self._save_state()
            self._apply_synchronous(bool(enabled))

    def start_pgbouncer(self, remember: bool = True) -> int:
        """Start (or keep) PgBouncer in front of the primary; returns its port. ``remember``: also start
        it with the servers from now on and route the default secrets through it (False: just run it,
        e.g. for tests next to the direct path). Raises PgBouncerNotFound, PgClusterError."""
        with self._locked():
            self._require_state()
            if remember:
                self._state["pgbouncer"] = True
                self._save_state()
            port = self._start_pgbouncer()
            if remember:
                self.write_secrets()
            return port

    def stop_pgbouncer(self) -> None:
        """Stop PgBouncer (SIGTERM, then SIGKILL after 10 s); a later start() keeps it off."""
        with self._locked():
            self._require_state()
            self._state["pgbouncer"] = False
            self._save_state()
            self._stop_pgbouncer()

    def destroy(self) -> None:
        """Stop the servers (immediate: the data is going away) and delete data, state and secrets."""
        with self._locked():
            self._stop_pgbouncer()
            for server in SERVERS:
                self._stop_server(server, "immediate")
            if self._state and self._state.get("data_root"):
                self._rmtree(Path(self._state["data_root"]))
            self._rmtree(self.secrets_dir)
            with contextlib.suppress(FileNotFoundError):
                self._state_path.unlink()
            self._state = None
        with contextlib.suppress(OSError):
            (self.base_dir / ".lock").unlink()
            self.base_dir.rmdir()  # only if empty: never remove files we did not create

    # ------------------------------------------------------------------------------------- locking

    @contextlib.contextmanager
    def _locked(self, timeout: float = 300):
        """Inter-process lock on base_dir (two `make run`s, pytest + CLI); re-entrant within a process."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self.base_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.base_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            os.close(fd)
                            raise PgClusterError(f"{self.base_dir} is locked by another process") from None
                        time.sleep(0.1)
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = None

    # --------------------------------------------------------------------------------------- state

    def _load_state(self) -> dict | None:
        try:
            state = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PgClusterError(f"unreadable cluster state {self._state_path}: {exc}") from exc
        if state.get("version") != STATE_VERSION:
            raise PgClusterError(
                f"{self._state_path} has state version {state.get('version')}; "
                "run destroy() (or `... pgcluster destroy --dir`) and start again"
            )
        return state

    def _require_state(self) -> dict:
        if self._state is None:
            self._state = self._load_state()
        if self._state is None:
            raise PgClusterError(f"no cluster in {self.base_dir}: call start() first")
        return self._state

    def _save_state(self) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self._state, fh, indent=2)
        os.replace(tmp, self._state_path)

    def _ensure_state(self) -> dict:
        if self._state is None:
            self._state = self._load_state()
        if self._state is None:
            users = [*ROLES.values(), REPLICATION_ROLE]
            self._state = {
                "version": STATE_VERSION,
                "data_root": None,
                "ports": {},
                # token_urlsafe: [A-Za-z0-9_-] only, so DSNs never need quoting.
                "passwords": {user: secrets.token_urlsafe(24) for user in users},
            }
        if not self._state.get("data_root"):
            self._state["data_root"] = str(self._choose_data_root())
        self._save_state()
        return self._state

    # ------------------------------------------------------------------------------------- layout

    def _data_root(self) -> Path:
        return Path(self._require_state()["data_root"])

    def _dirs(self) -> dict[str, str]:
        """Role -> directory name under data_root. Swapped by promote_replica(): after a failover the
        directory called "replica" holds the primary."""
        return {**{server: server for server in SERVERS}, **self._require_state().get("dirs", {})}

    def _data_dir(self, server: str) -> Path:
        return self._data_root() / self._dirs()[server]

    def _log_path(self, server: str) -> Path:
        return self._data_root() / f"{self._dirs()[server]}.log"

    def _pgbouncer_dir(self) -> Path:
        return self._data_root() / PGBOUNCER

    def _socket_dir(self) -> Path:
        return self._data_root() / "sock"

    def _server_uid_gid(self) -> tuple[int, int]:
        if not self._as_server_user:
            return os.geteuid(), os.getegid()
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PgClusterError(
                f"running as root but there is no {SERVER_USER!r} system user to run PostgreSQL as; "
                "`apt-get install postgresql-15` creates it (or run as a non-root user)"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _choose_data_root(self) -> Path:
        """base_dir/data when the server user can reach it and the socket path fits in sun_path; else a
        private dir under /tmp (pytest's tmp dirs are 0700 root, so postgres cannot traverse them)."""
        preferred = self.base_dir / "data"
        if len(str(preferred / "sock" / ".s.PGSQL.65535.lock")) <= _SOCKET_PATH_MAX:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            self._make_server_dir(preferred)
            if self._server_user_can_write(preferred):
                return preferred
            self._rmtree(preferred)
        digest = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:12]
        # _make_server_dir accepts a pre-existing path only if it is a real dir owned by us or postgres.
        return Path(tempfile.gettempdir()) / f"nlp-pg-{digest}"

    def _server_user_can_write(self, path: Path) -> bool:
        if not self._as_server_user:
            return os.access(path, os.W_OK | os.X_OK)
        probe = subprocess.run(
            ["runuser", "-u", SERVER_USER, "--", "test", "-w", str(path), "-a", "-x", str(path)],
            capture_output=True,
            timeout=10,
        )
        return probe.returncode == 0

    def _make_server_dir(self, path: Path) -> None:
        """mkdir owned by the server user, mode 0700. Refuses a pre-existing path owned by someone else
        (e.g. a planted /tmp/nlp-pg-* symlink)."""
        uid, gid = self._server_uid_gid()
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            st = path.lstat()
            if path.is_symlink() or not path.is_dir() or st.st_uid not in (uid, os.geteuid()):
                raise PgClusterError(
                    f"{path} exists and is not a directory owned by us or {SERVER_USER}"
                ) from None
        if self._as_server_user:
            os.chown(path, uid, gid)
        path.chmod(0o700)

    def _prepare_dirs(self) -> None:
        self._make_server_dir(self._data_root())
        self._make_server_dir(self._socket_dir())

    def _rmtree(self, path: Path) -> None:
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path, ignore_errors=False)

    def _write_server_file(self, path: Path, text: str, mode: int = 0o600) -> None:
        """Write a file inside a data directory, owned by the server user (it must read it)."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if self._as_server_user:
            uid, gid = self._server_uid_gid()
            os.chown(tmp, uid, gid)
        os.replace(tmp, path)

    # ---------------------------------------------------------------------------------- commands

    def _env(self, password: str | None = None) -> dict:
        # Drop the caller's PG* variables (PGDATA, PGPORT, PGOPTIONS...) so they cannot redirect a command.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        if password is not None:
            env["PGPASSWORD"] = password  # environment only: never on a command line (visible in ps)
        return env

    def _run(
        self, args: list[str], *, timeout: float, password: str | None = None, binary: Path | None = None
    ) -> subprocess.CompletedProcess:
        """Run a PostgreSQL binary (or ``binary``: args[0] is then only its name in messages) as the server
        user when root. Raises PgClusterError on a non-zero exit or timeout, with the command name and
        its stderr."""
        if binary is None:
            if self._bin is None:
                self._bin = find_pg_bin()
            binary = self._bin / args[0]
        cmd = [str(binary), *args[1:]]
        if self._as_server_user:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        try:
            result = subprocess.run(
                cmd,
                cwd=self._data_root(),
                env=self._env(password),
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(
                f"{args[0]} {args[1] if len(args) > 1 else ''} timed out after {timeout}s"
            ) from exc
        if result.returncode != 0:
            raise PgClusterError(
                f"{args[0]} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )
        return result

    def _log_tail(self, server: str, lines: int = 15) -> str:
        try:
            return "\n".join(self._log_path(server).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------------------------- initdb

    def _primary_initialized(self) -> bool:
        # Not PG_VERSION: initdb writes that first, so an interrupted initdb would look complete. The
        # include line is appended as the very last step of _initdb.
        try:
            return _INCLUDE_LINE in (self._data_dir("primary") / "postgresql.conf").read_text()
        except OSError:
            return False

    def _initdb(self) -> None:
        primary = self._data_dir("primary")
        # A half-made primary from a crashed first start, and any replica of an older primary, are junk.
        self._rmtree(primary)
        self._rmtree(self._data_dir("replica"))
        pwfile = self._data_root() / "initdb.pw"
        self._write_server_file(pwfile, self._state["passwords"]["postgres"])
        try:
            # --no-sync only here: a fresh, empty cluster is trivially re-creatable; the running servers
            # keep fsync=on (the fault tests SIGKILL the primary and count acknowledged rows).
            self._run(
                [
                    "initdb",
                    "-D",
                    str(primary),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                    "--no-instructions",
                ],
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        hba = (
            "# Written by devtools/pgcluster.py: passwords (SCRAM) everywhere, TCP on\n"
            "# 127.0.0.1 only, replication included.\n"
            "# TYPE  DATABASE     USER  ADDRESS        METHOD\n"
            "local   all          all                  scram-sha-256\n"
            "local   replication  all                  scram-sha-256\n"
            "host    all          all   127.0.0.1/32   scram-sha-256\n"
            "host    replication  all   127.0.0.1/32   scram-sha-256\n"
        )
        self._write_server_file(primary / "pg_hba.conf", hba)
        conf = primary / "postgresql.conf"
        text = conf.read_text()
        if _INCLUDE_LINE not in text:
            self._write_server_file(conf, f"{text}\n{_INCLUDE_LINE}\n")

    def _write_cluster_conf(self, server: str, role: str | None = None) -> None:
        """Our settings, rewritten on every start (the port may have changed). postgresql.conf includes it.
        ``role``: what the server is about to be (promote_replica writes a primary's file into the
        replica's directory just before promoting it)."""
        role = role or server
        port = self._state["ports"][server]
        # Only on a primary with a streaming replica (see _apply_synchronous); a standby ignores it.
        sync_names = SLOT_NAME if role == "primary" and self._state.get("sync_active") else ""
        settings = {
            "listen_addresses": HOST,
            "port": port,
            "unix_socket_directories": str(self._socket_dir()),
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
        lines = ["# Written by devtools/pgcluster.py on every start; do not edit."]
        for key, value in settings.items():
            rendered = str(value) if isinstance(value, int) else _conf_quote(str(value))
            lines.append(f"{key} = {rendered}")
        self._write_server_file(self._data_dir(server) / "nlp_cluster.conf", "\n".join(lines) + "\n")
        if role == "replica":
            self._write_replica_conninfo()

    def _apply_synchronous(self, enabled: bool, timeout: float = 30) -> None:
        """Set synchronous_standby_names on the running primary (reload) to the replica when ``enabled``
        and the replica runs, else to '' (a primary without standby must not block every COMMIT). When
        turning it on, wait until the replica is reported ``sync``, so the next acknowledged COMMIT is on
        both. Raises TimeoutError."""
        active = enabled and self._running_pid("replica") is not None
        if bool(self._state.get("sync_active")) == active and self._sync_names_live() == (SLOT_NAME if active else ""):
            return
        self._state["sync_active"] = active
        self._save_state()
        self._write_cluster_conf("primary")
        self._run(["pg_ctl", "-D", str(self._data_dir("primary")), "reload", "-s"], timeout=30)
        deadline = time.monotonic() + timeout
        with self._admin() as conn:
            while True:
                names = conn.execute("SELECT current_setting('synchronous_standby_names')").fetchone()[0]
                states = {row[0] for row in conn.execute("SELECT sync_state FROM pg_stat_replication")}
                if names == (SLOT_NAME if active else "") and (not active or "sync" in states):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"synchronous_standby_names={names!r}, standbys {states} after {timeout}s")
                time.sleep(0.05)

    def _sync_names_live(self) -> str | None:
        try:
            with self._admin() as conn:
                return conn.execute("SELECT current_setting('synchronous_standby_names')").fetchone()[0]
        except psycopg.Error:
            return None

    def _write_replica_conninfo(self) -> None:
        """Point the replica at the primary's current port (pg_basebackup -R wrote the original)."""
        state = self._state
        conninfo = _conninfo(
            host=HOST,
            port=state["ports"]["primary"],
            user=REPLICATION_ROLE,
            password=state["passwords"][REPLICATION_ROLE],
            application_name=SLOT_NAME,
            connect_timeout=CONNECT_TIMEOUT_S,
        )
        auto = self._data_dir("replica") / "postgresql.auto.conf"
        keep = [
            line
            for line in (auto.read_text().splitlines() if auto.exists() else [])
            if line.split("=", 1)[0].strip() not in {"primary_conninfo", "primary_slot_name"}
        ]
        keep += [
            f"primary_conninfo = {_conf_quote(conninfo)}",
            f"primary_slot_name = {_conf_quote(SLOT_NAME)}",
        ]
        self._write_server_file(auto, "\n".join(keep) + "\n")

    # ------------------------------------------------------------------------------ start / stop

    def _running_pid(self, server: str) -> int | None:
        """Postmaster pid from postmaster.pid if that process is alive and is postgres."""
        try:
            first = (self._data_dir(server) / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first.strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and _is_postgres(pid) else None

    def _server_processes_of(self, server: str) -> list[int]:
        if self._state is None or not self._data_dir(server).exists():
            return []
        pids = _server_processes(self._data_dir(server))
        postmaster = self._running_pid(server)
        # Postmaster first, so it cannot restart children we are about to kill.
        return sorted(pids, key=lambda p: p != postmaster)

    def _clear_stale_lock(self, server: str) -> None:
        """After a crash the postmaster.pid (and the socket lock) name a dead or zombie pid; postgres
        refuses to start while that pid "exists". Kill orphaned backends, then remove the stale files."""
        data_dir = self._data_dir(server)
        pidfile = data_dir / "postmaster.pid"
        if not pidfile.exists() or self._running_pid(server) is not None:
            return
        leftovers = _server_processes(data_dir)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not _wait_gone(leftovers, 10):
            raise PgClusterError(f"orphaned {server} processes {leftovers} do not exit")
        pidfile.unlink(missing_ok=True)
        port = self._state["ports"].get(server)
        if port:
            for name in (f".s.PGSQL.{port}", f".s.PGSQL.{port}.lock"):
                (self._socket_dir() / name).unlink(missing_ok=True)

    def _start_server(self, server: str) -> None:
        if self._running_pid(server) is not None:
            return
        self._clear_stale_lock(server)
        ports = self._state["ports"]
        last_error = None
        for _attempt in range(3):
            other = {p for s, p in ports.items() if s != server}
            if not ports.get(server) or not _port_free(ports[server]) or ports[server] in other:
                ports[server] = _pick_port(exclude=other)
                self._save_state()
            self._write_cluster_conf(server)
            if server == "primary" and (self._data_dir("replica") / "standby.signal").exists():
                self._write_replica_conninfo()
                if self._running_pid("replica") is not None:
                    self._run(["pg_ctl", "-D", str(self._data_dir("replica")), "reload", "-s"], timeout=30)
            try:
                self._run(
                    [
                        "pg_ctl",
                        "-D",
                        str(self._data_dir(server)),
                        "-l",
                        str(self._log_path(server)),
                        "-w",
                        "-t",
                        str(PG_CTL_TIMEOUT_S),
                        "start",
                    ],
                    timeout=PG_CTL_TIMEOUT_S + 15,
                )
                return
            except PgClusterError as exc:
                last_error = exc
                tail = self._log_tail(server)
                if "could not bind" in tail or "already in use" in tail:
                    ports[server] = None  # lost the race for the port: pick another
                    self._clear_stale_lock(server)
                    continue
                raise PgClusterError(
                    f"{server} did not start: {exc}\n--- {self._log_path(server)} ---\n{tail}"
                ) from exc
        raise PgClusterError(f"{server} could not bind a port: {last_error}")

    def _stop_server(self, server: str, mode: str) -> None:
        if mode not in {"smart", "fast", "immediate"}:
            raise ValueError(f"unknown shutdown mode {mode!r}")
        if self._state is None or not self._data_dir(server).exists():
            return
        if self._running_pid(server) is not None:
            for attempt_mode, wait in ((mode, 30), ("immediate", 15)):
                try:
                    self._run(
                        [
                            "pg_ctl",
                            "-D",
                            str(self._data_dir(server)),
                            "-m",
                            attempt_mode,
                            "-w",
                            "-t",
                            str(wait),
                            "stop",
                        ],
                        timeout=wait + 10,
                    )
                    break
                except PgClusterError:
                    if self._running_pid(server) is None:
                        break
        # Last resort (and cleanup after a crash): nothing of this server may survive stop().
        leftovers = self._server_processes_of(server)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(leftovers, 10)

    # ------------------------------------------------------------------------------- PgBouncer

    def _pgbouncer_pid(self) -> int | None:
        """PgBouncer's pid from its pidfile when that process is alive and is pgbouncer."""
        if self._state is None or not self._state.get("data_root"):
            return None
        try:
            pid = int((self._pgbouncer_dir() / "pgbouncer.pid").read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            return None
        return pid if comm == "pgbouncer" and _alive(pid) else None

    def _write_pgbouncer_files(self) -> Path:
        """pgbouncer.ini and its auth_file; returns the ini path.

        auth_file holds the roles' SCRAM verifiers as stored in pg_authid, not passwords: PgBouncer
        checks clients against them and, since each client authenticated with SCRAM, logs into the
        server with the keys that exchange gave it (so nothing here can log in by itself)."""
        directory = self._pgbouncer_dir()
        self._make_server_dir(directory)
        with self._admin() as conn:
            verifiers = conn.execute(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s) ORDER BY rolname",
                (list(ROLES.values()),),
            ).fetchall()
        self._write_server_file(
            directory / "userlist.txt", "".join(f'"{user}" "{verifier}"\n' for user, verifier in verifiers)
        )
        ports = self._state["ports"]
        settings = {
            "listen_addr": HOST,
            "listen_port": ports[PGBOUNCER],
            "unix_socket_dir": "",  # TCP on 127.0.0.1 only, like the servers
            "auth_type": "scram-sha-256",
            "auth_file": str(directory / "userlist.txt"),
            "admin_users": "postgres",  # SHOW POOLS / SHOW SERVERS on the `pgbouncer` console
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
            "; Written by devtools/pgcluster.py on every start; do not edit.",
            "[databases]",
            f"{DBNAME} = host={HOST} port={ports['primary']} dbname={DBNAME}",
            "[pgbouncer]",
            *(f"{key} = {value}" for key, value in settings.items()),
        ]
        ini = directory / "pgbouncer.ini"
        self._write_server_file(ini, "\n".join(lines) + "\n")
        return ini

    def _start_pgbouncer(self) -> int:
        """Start PgBouncer (daemon, as the server user) or, when it runs, re-point it at the primary
        (SIGHUP = RELOAD). Returns its port. Raises PgBouncerNotFound, PgClusterError (log tail)."""
        binary = find_pgbouncer()
        ports = self._state["ports"]
        if self._pgbouncer_pid() is not None:
            self._write_pgbouncer_files()
            os.kill(self._pgbouncer_pid(), signal.SIGHUP)
            return ports[PGBOUNCER]
        log = self._pgbouncer_dir() / "pgbouncer.log"
        for _attempt in range(3):
            other = {p for s, p in ports.items() if s != PGBOUNCER}
            if not ports.get(PGBOUNCER) or not _port_free(ports[PGBOUNCER]) or ports[PGBOUNCER] in other:
                ports[PGBOUNCER] = _pick_port(exclude=other)
                self._save_state()
            ini = self._write_pgbouncer_files()
            (self._pgbouncer_dir() / "pgbouncer.pid").unlink(missing_ok=True)  # stale: nobody runs
            log_size = log.stat().st_size if log.exists() else 0
            self._run(["pgbouncer", "-d", "-q", str(ini)], timeout=30, binary=binary)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pid = self._pgbouncer_pid()
                if pid is not None and not _port_free(ports[PGBOUNCER]):
                    with contextlib.suppress(OSError), socket.create_connection((HOST, ports[PGBOUNCER]), 1):
                        return ports[PGBOUNCER]
                time.sleep(0.05)
            new_log = log.read_text(errors="replace")[log_size:] if log.exists() else ""
            self._stop_pgbouncer()
            if "in use" in new_log or "bind" in new_log:
                ports[PGBOUNCER] = None  # lost the race for the port: pick another
                continue
            raise PgClusterError(f"pgbouncer did not start within 10 s\n--- {log} ---\n{new_log[-2000:]}")
        raise PgClusterError("pgbouncer could not bind a port")

    def _stop_pgbouncer(self) -> None:
        pid = self._pgbouncer_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):  # SIGTERM: immediate shutdown
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_gone([pid], wait):
                return
        raise PgClusterError(f"pgbouncer {pid} survived SIGKILL")

    # ------------------------------------------------------------------------------- SQL steps

    def _admin(self, dbname: str = DBNAME) -> psycopg.Connection:
        state = self._state
        return psycopg.connect(
            _conninfo(
                host=HOST,
                port=state["ports"]["primary"],
                dbname=dbname,
                user="postgres",
                password=state["passwords"]["postgres"],
                connect_timeout=CONNECT_TIMEOUT_S,
            ),
            autocommit=True,
        )

    def _bootstrap(self) -> None:
        """Database, roles (sql/roles/bootstrap_roles.sql), passwords, replication role, slot."""
        with self._admin("postgres") as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                        sql.Identifier(DBNAME)
                    )
                )
        with self._admin() as conn:
            conn.execute((sql_dir() / "roles" / "bootstrap_roles.sql").read_text().encode())
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATION_ROLE,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(sql.Identifier(REPLICATION_ROLE))
                )
            for user in (*ROLES.values(), REPLICATION_ROLE):
                # Send a SCRAM verifier computed client-side (what psql's \password does): the clear
                # password never reaches the server, so it cannot end up in its log.
                verifier = conn.pgconn.encrypt_password(
                    self._state["passwords"][user].encode(), user.encode(), b"scram-sha-256"
                ).decode()
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier))
                )
            conn.execute(
                "SELECT pg_create_physical_replication_slot(%s) WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
                (SLOT_NAME, SLOT_NAME),
            )

    def _slot_lost(self) -> bool:
        with self._admin() as conn:
            row = conn.execute(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (SLOT_NAME,)
            ).fetchone()
        return row is not None and row[0] == "lost"

    def _recreate_slot(self) -> None:
        with self._admin() as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT_NAME,))
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", (SLOT_NAME,))

    def _clone_replica(self) -> None:
        """pg_basebackup into replica.tmp, then rename: a crash mid-copy never leaves a half replica."""
        target = self._data_dir("replica")
        tmp = self._data_root() / "replica.tmp"
        self._rmtree(tmp)
        self._rmtree(target)
        self._run(
            [
                "pg_basebackup",
                "-h",
                HOST,
                "-p",
                str(self._state["ports"]["primary"]),
                "-U",
                REPLICATION_ROLE,
                "-D",
                str(tmp),
                "-X",
                "stream",
                "-c",
                "fast",
                "-R",
                "-S",
                SLOT_NAME,
                "-w",
            ],
            timeout=300,
            password=self._state["passwords"][REPLICATION_ROLE],
        )
        tmp.rename(target)

    def _current_lsn(self) -> str:
        with self._admin() as conn:
            return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]

# -------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.pgcluster",
        description="local PostgreSQL primary + streaming replica",
    )
    parser.add_argument("command", choices=["start", "stop", "status", "destroy", "failover"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_BASE_DIR, help=f"base dir (default {DEFAULT_BASE_DIR})"
    )
    parser.add_argument("--pgbouncer", action=argparse.BooleanOptionalAction, default=None,
                        help="run PgBouncer (transaction pooling) in front of the primary (kept once given)")
    parser.add_argument("--synchronous", action=argparse.BooleanOptionalAction, default=None,
                        help="synchronous replication to the replica (kept once given)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.dir, pgbouncer=args.pgbouncer, synchronous=args.synchronous)
    try:
        if args.command == "failover":
            result = cluster.failover()
        elif args.command == "start":
            started = time.perf_counter()
            result = cluster.start()
            result["start_seconds"] = round(time.perf_counter() - started, 2)
        elif args.command == "stop":
            cluster.stop()
            result = cluster.status()
        elif args.command == "destroy":
            cluster.destroy()
            result = {"destroyed": str(cluster.base_dir)}
        else:
            result = cluster.status()
    except (PgClusterError, migrate.MigrationError, TimeoutError, psycopg.Error) as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
