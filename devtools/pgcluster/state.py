"""The local cluster's settings, errors, PostgreSQL/PgBouncer binaries lookup and its state file.

:class:`ClusterState` owns ``<base_dir>/cluster.json`` (ports, passwords, where the server files are,
options), the inter-process lock on ``base_dir`` and the directory layout under the data root. Every
other part of the cluster reads and writes the state through one shared instance.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from devtools.processes import LOCAL_DIR

HOST = "127.0.0.1"
DBNAME = "nlp"
SLOT_NAME = "nlp_replica"
REPLICATION_ROLE = "nlp_replicator"
SERVER_USER = "postgres"  # system user the servers run as when we are root
SERVERS = ("primary", "replica")
PGBOUNCER = "pgbouncer"  # also its key in the state's ports
CONNECT_TIMEOUT_S = 3
PG_CTL_TIMEOUT_S = 60  # pg_ctl -t: start includes crash recovery, so be generous
STATE_FILE = "cluster.json"
STATE_VERSION = 1
DEFAULT_BASE_DIR = LOCAL_DIR / "pg"  # outside what faas-cli build copies (docs/operations.md: Local state)
INSTALL_HINT = (
    "PostgreSQL 15 server binaries (initdb, pg_ctl, postgres, pg_basebackup) were not found. "
    "Install them with `apt-get install postgresql-15` (Debian/Ubuntu; on other systems the postgresql "
    "server package), or point PG_BIN at the directory that holds them."
)
DEFAULT_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
PGBOUNCER_INSTALL_HINT = (
    "PgBouncer was not found. Install it with `apt-get install pgbouncer` (Debian/Ubuntu; the package's own "
    "service is not needed: this tool runs its own instance), or point PGBOUNCER_BIN at the binary."
)
DEFAULT_PGBOUNCER_BINS = (Path("/usr/sbin/pgbouncer"), Path("/usr/bin/pgbouncer"))
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin for ".s.PGSQL.NNNNN.lock"


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
        if all(os.access(directory / name, os.X_OK) for name in REQUIRED_BINARIES):
            return directory
    raise PgBinariesNotFound(INSTALL_HINT)


class ClusterState:
    """``<base_dir>/cluster.json`` and the layout it implies.

    ``data`` is the parsed state (None before the first start): ``version``, ``data_root`` (where the
    server files are), ``ports`` (server or ``pgbouncer`` -> TCP port), ``passwords`` (role name ->
    password), ``dirs`` (server -> directory name, swapped by a promotion) and the options
    (``pgbouncer``, ``synchronous``, ``sync_active``, ``promotions``, ``started_at``).

    Raises PgClusterError for an unreadable state file or one of another version.
    """

    def __init__(self, base_dir: Path, host):
        """``host``: the :class:`devtools.pgcluster.host.Host` that makes directories as the server
        user (used to pick the data root)."""
        self.base_dir = base_dir
        self.path = base_dir / STATE_FILE
        self.host = host
        self.data: dict | None = self.load()
        self._lock_depth = 0
        self._thread_lock = threading.RLock()
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------------------------ file

    def load(self) -> dict | None:
        """The state file's content, or None when there is none. Raises PgClusterError."""
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PgClusterError(f"unreadable cluster state {self.path}: {exc}") from exc
        if state.get("version") != STATE_VERSION:
            raise PgClusterError(
                f"{self.path} has state version {state.get('version')}; "
                "run destroy() (or `... pgcluster destroy --dir`) and start again"
            )
        return state

    def require(self) -> dict:
        """The state; raises PgClusterError when the cluster was never started."""
        if self.data is None:
            self.data = self.load()
        if self.data is None:
            raise PgClusterError(f"no cluster in {self.base_dir}: call start() first")
        return self.data

    def save(self) -> None:
        """Write the state (0600, atomically)."""
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh, indent=2)
        os.replace(tmp, self.path)

    def ensure(self, users: list[str]) -> dict:
        """The state, created on first use with a generated password for each of ``users`` and a data
        root chosen (and made) for the server user; saved."""
        if self.data is None:
            self.data = self.load()
        if self.data is None:
            self.data = {
                "version": STATE_VERSION,
                "data_root": None,
                "ports": {},
                # token_urlsafe: [A-Za-z0-9_-] only, so DSNs never need quoting.
                "passwords": {user: secrets.token_urlsafe(24) for user in users},
            }
        # A role declared after this cluster was created gets its password on the next start.
        for user in users:
            self.data["passwords"].setdefault(user, secrets.token_urlsafe(24))
        if not self.data.get("data_root"):
            self.data["data_root"] = str(self._choose_data_root())
        self.save()
        return self.data

    def forget(self) -> None:
        """Delete the state file and drop the state."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.data = None

    # ------------------------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def locked(self, timeout: float = 300):
        """Inter-process lock on base_dir (two `make run`s, pytest + CLI); re-entrant within a process.
        Raises PgClusterError when another process holds it for ``timeout`` seconds."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self._lock_fd = self._acquire(timeout)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = None

    def _acquire(self, timeout: float) -> int:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.base_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise PgClusterError(f"{self.base_dir} is locked by another process") from None
                time.sleep(0.1)

    # ---------------------------------------------------------------------------------- layout

    def data_root(self) -> Path:
        """Where the server files are (base_dir/data or /tmp/nlp-pg-<hash>). Raises PgClusterError
        before the first start, like every layout method."""
        return Path(self.require()["data_root"])

    def dirs(self) -> dict[str, str]:
        """Role -> directory name under data_root. Swapped by a promotion: after a failover the
        directory called "replica" holds the primary."""
        return {**{server: server for server in SERVERS}, **self.require().get("dirs", {})}

    def data_dir(self, server: str) -> Path:
        """The data directory of ``server`` ("primary" | "replica")."""
        return self.data_root() / self.dirs()[server]

    def log_path(self, server: str) -> Path:
        """The server log of ``server``."""
        return self.data_root() / f"{self.dirs()[server]}.log"

    def pgbouncer_dir(self) -> Path:
        """PgBouncer's files."""
        return self.data_root() / PGBOUNCER

    def socket_dir(self) -> Path:
        """The servers' unix sockets."""
        return self.data_root() / "sock"

    def run(self, args: list[str], **options):
        """``Host.run`` in the data root (``options``: timeout, password, binary)."""
        return self.host.run(args, cwd=self.data_root(), **options)

    def _choose_data_root(self) -> Path:
        """base_dir/data when the server user can reach it and the socket path fits in sun_path; else a
        private dir under /tmp (pytest's tmp dirs are 0700 root, so postgres cannot traverse them)."""
        preferred = self.base_dir / "data"
        if len(str(preferred / "sock" / ".s.PGSQL.65535.lock")) <= SOCKET_PATH_MAX:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            self.host.make_server_dir(preferred)
            if self.host.server_user_can_write(preferred):
                return preferred
            self.host.rmtree(preferred)
        digest = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:12]
        # make_server_dir accepts a pre-existing path only if it is a real dir owned by us or postgres.
        return Path(tempfile.gettempdir()) / f"nlp-pg-{digest}"
