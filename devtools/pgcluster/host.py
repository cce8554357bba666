"""This machine as the local cluster sees it: processes in /proc, free ports, libpq/config quoting, and
:class:`Host`, which runs the server binaries and writes their files as the server user.

PostgreSQL refuses to run as root: when euid is 0 every server binary runs as the ``postgres`` system
user (``runuser -u postgres --``) and the files it reads are owned by it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from devtools.pgcluster.state import HOST, SERVER_USER, PgClusterError, find_pg_bin


def proc_state(pid: int) -> str | None:
    """Kernel state letter of ``pid`` (``Z`` = zombie), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs. Zombies count as dead: in containers PID 1 often never reaps the orphaned
    postmaster."""
    state = proc_state(pid)
    return state is not None and state != "Z"


def is_postgres(pid: int) -> bool:
    """Whether ``pid`` is a postgres server process (by its command name)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in {"postgres", "postmaster"}
    except OSError:
        return False


def server_processes(data_dir: Path) -> list[int]:
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
        if alive(pid) and is_postgres(pid):
            found.append(pid)
    return found


def wait_gone(pids: list[int], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds until none of ``pids`` is alive; returns whether they are gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def kill_all(pids: list[int], timeout: float = 10) -> bool:
    """SIGKILL every pid (in order: a postmaster first cannot restart the children), then
    :func:`wait_gone`; returns whether they are gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return wait_gone(pids, timeout)


def port_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option as the postmaster: a TIME_WAIT leftover must not make a port look busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_port(exclude: set[int] = frozenset()) -> int:
    """A port the kernel says is free right now (bind to 0 and release). Racy by nature: the caller
    retries with a new port if the server then fails to bind. Raises PgClusterError."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
    raise PgClusterError("could not find a free TCP port on 127.0.0.1")


def ensure_free_port(ports: dict, key: str) -> bool:
    """Pick a new port for ``ports[key]`` when it has none, it is taken, or another entry has it;
    returns whether it changed (the caller then saves the state)."""
    other = {p for k, p in ports.items() if k != key}
    current = ports.get(key)
    if current and port_free(current) and current not in other:
        return False
    ports[key] = pick_port(exclude=other)
    return True


def conf_quote(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def conninfo(**params: object) -> str:
    """key=value DSN; values are quoted only when needed (generated passwords never need it)."""
    parts = []
    for key, value in params.items():
        text = str(value)
        if not text or any(c in text for c in " '\\"):
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append(f"{key}={text}")
    return " ".join(parts)


class Host:
    """Runs PostgreSQL/PgBouncer binaries and writes the files they read, as the server user when we
    are root (``as_server_user``)."""

    def __init__(self):
        self.as_server_user = os.geteuid() == 0
        self.bin: Path | None = None  # found on first use (find_pg_bin)

    def server_uid_gid(self) -> tuple[int, int]:
        """(uid, gid) the server files belong to. Raises PgClusterError when root has no postgres user."""
        if not self.as_server_user:
            return os.geteuid(), os.getegid()
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PgClusterError(
                f"running as root but there is no {SERVER_USER!r} system user to run PostgreSQL as; "
                "`apt-get install postgresql-15` creates it (or run as a non-root user)"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def server_user_can_write(self, path: Path) -> bool:
        """Whether the server user may create files in directory ``path``."""
        if not self.as_server_user:
            return os.access(path, os.W_OK | os.X_OK)
        probe = subprocess.run(
            ["runuser", "-u", SERVER_USER, "--", "test", "-w", str(path), "-a", "-x", str(path)],
            capture_output=True,
            timeout=10,
        )
        return probe.returncode == 0

    def make_server_dir(self, path: Path) -> None:
        """mkdir owned by the server user, mode 0700. Refuses (PgClusterError) a pre-existing path owned
        by someone else (e.g. a planted /tmp/nlp-pg-* symlink)."""
        uid, gid = self.server_uid_gid()
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            st = path.lstat()
            if path.is_symlink() or not path.is_dir() or st.st_uid not in (uid, os.geteuid()):
                raise PgClusterError(
                    f"{path} exists and is not a directory owned by us or {SERVER_USER}"
                ) from None
        if self.as_server_user:
            os.chown(path, uid, gid)
        path.chmod(0o700)

    @staticmethod
    def rmtree(path: Path) -> None:
        """Remove a directory tree (a symlink itself, never what it points to)."""
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path, ignore_errors=False)

    def write_server_file(self, path: Path, text: str, mode: int = 0o600) -> None:
        """Write a file the server reads, owned by the server user, atomically."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if self.as_server_user:
            uid, gid = self.server_uid_gid()
            os.chown(tmp, uid, gid)
        os.replace(tmp, path)

    @staticmethod
    def env(password: str | None = None) -> dict:
        """The environment for a server binary: none of the caller's PG* variables (PGDATA, PGPORT,
        PGOPTIONS... could redirect a command), C.UTF-8, and ``PGPASSWORD`` when given."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        if password is not None:
            env["PGPASSWORD"] = password  # environment only: never on a command line (visible in ps)
        return env

    def run(self, args: list[str], *, cwd: Path, timeout: float, password: str | None = None,
            binary: Path | None = None) -> subprocess.CompletedProcess:
        """Run a PostgreSQL binary (or ``binary``: args[0] is then only its name in messages) in ``cwd``
        as the server user when root; ``timeout`` in seconds. Raises PgBinariesNotFound, PgClusterError
        on a non-zero exit or timeout, with the command name and its stderr."""
        if binary is None:
            if self.bin is None:
                self.bin = find_pg_bin()
            binary = self.bin / args[0]
        cmd = [str(binary), *args[1:]]
        if self.as_server_user:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        try:
            result = subprocess.run(cmd, cwd=cwd, env=self.env(password), capture_output=True, text=True,
                                    timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(
                f"{args[0]} {args[1] if len(args) > 1 else ''} timed out after {timeout}s"
            ) from exc
        if result.returncode != 0:
            raise PgClusterError(
                f"{args[0]} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )
        return result
