"""The pack's roles on the local cluster, their passwords, and the DSN secret files for the functions.

Role names and which secret file holds a DSN of which role on which server come from
:mod:`functions.runtime.credentials` (the one declaration); this module adds the superuser and the
replication role a local cluster needs, and the connections to reach them.
"""

from __future__ import annotations

import os
from pathlib import Path
from secrets import token_urlsafe

import psycopg
from psycopg import sql

from devtools.pgcluster.host import conninfo
from devtools.pgcluster.state import (
    CONNECT_TIMEOUT_S,
    DBNAME,
    HOST,
    PGBOUNCER,
    REPLICATION_ROLE,
    SERVERS,
    ClusterState,
    PgClusterError,
)
from functions.runtime import credentials
from functions.runtime.queries import sql_dir

# Role key -> PostgreSQL role name: the pack's roles, plus "admin" for the cluster's superuser.
ROLES: dict[str, str] = {
    **{key: role.name for key, role in credentials.ROLES.items()},
    "admin": credentials.ADMIN_ROLE,
}
# DSN secret file -> (role key, server), e.g. "stats-replica-dsn" -> ("analyst", "replica").
SECRETS: dict[str, tuple[str, str]] = {
    name: (secret.role, secret.server) for name, secret in credentials.dsn_secrets().items()
}
# Every role the cluster keeps a password for.
USERS: tuple[str, ...] = (*ROLES.values(), REPLICATION_ROLE)
# Ways to reach the primary that write_secrets() can put into the functions' DSNs.
ROUTES = ("direct", "pgbouncer", "multihost")


class Roles:
    """Roles and passwords on the primary, and the DSNs that log in as them.

    Methods raise ValueError for an unknown role, server or route, PgClusterError when the cluster (or
    the server asked for) was never started, and psycopg errors when a SQL step fails."""

    def __init__(self, state: ClusterState, secrets_dir: Path):
        self.state = state
        self.secrets_dir = secrets_dir

    def admin(self, dbname: str = DBNAME) -> psycopg.Connection:
        """An autocommit connection to the primary as the superuser."""
        data = self.state.data
        return psycopg.connect(
            conninfo(
                host=HOST,
                port=data["ports"]["primary"],
                dbname=dbname,
                user=credentials.ADMIN_ROLE,
                password=data["passwords"][credentials.ADMIN_ROLE],
                connect_timeout=CONNECT_TIMEOUT_S,
            ),
            autocommit=True,
        )

    def bootstrap(self) -> None:
        """Database, roles (sql/roles/bootstrap_roles.sql), their passwords, the replication role."""
        with self.admin("postgres") as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(DBNAME))
                )
        with self.admin() as conn:
            conn.execute((sql_dir() / "roles" / "bootstrap_roles.sql").read_text().encode())
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATION_ROLE,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(sql.Identifier(REPLICATION_ROLE)))
            for user in USERS:
                # Send a SCRAM verifier computed client-side (what psql's \password does): the clear
                # password never reaches the server, so it cannot end up in its log.
                verifier = conn.pgconn.encrypt_password(
                    self.state.data["passwords"][user].encode(), user.encode(), b"scram-sha-256"
                ).decode()
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier)))

    def verifiers(self) -> list[tuple[str, str]]:
        """(role name, SCRAM verifier as stored in pg_authid) of every role in :data:`ROLES`."""
        with self.admin() as conn:
            return conn.execute(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s) ORDER BY rolname",
                (list(ROLES.values()),),
            ).fetchall()

    def dsn(self, role: str = "writer", server: str = "primary") -> str:
        """libpq key=value DSN for ``role`` (owner|writer|analyst|admin) on ``server`` (primary|replica,
        or pgbouncer = the primary through PgBouncer)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
        if server not in (*SERVERS, PGBOUNCER):
            raise ValueError(f"unknown server {server!r}; expected primary, replica or pgbouncer")
        data = self.state.require()
        if not data["ports"].get(server):
            raise PgClusterError(f"{server} of {self.state.base_dir} was never started")
        user = ROLES[role]
        return conninfo(
            host=HOST,
            port=data["ports"][server],
            dbname=DBNAME,
            user=user,
            password=data["passwords"][user],
            connect_timeout=CONNECT_TIMEOUT_S,
        )

    def multihost_dsn(self, role: str = "writer", target: str = "read-write") -> str:
        """A DSN naming both servers' ports with libpq's ``target_session_attrs=<target>``: read-write
        finds whichever is the primary (so it follows a failover without a restart), prefer-standby the
        replica while there is one."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
        data = self.state.require()
        user = ROLES[role]
        # Primary first for read-write, replica first for the others: the first try usually fits.
        order = SERVERS if target == "read-write" else tuple(reversed(SERVERS))
        ports = [str(data["ports"][server]) for server in order]
        return conninfo(
            host=",".join([HOST] * len(ports)),
            port=",".join(ports),
            dbname=DBNAME,
            user=user,
            password=data["passwords"][user],
            # Per host: a dead host costs at most this before libpq tries the next.
            connect_timeout=CONNECT_TIMEOUT_S,
            target_session_attrs=target,
        )

    def write_secrets(self, directory: Path | str | None = None, route: str | None = None) -> Path:
        """Write every DSN secret of :data:`SECRETS` and every token secret of the credentials (a token
        generated once, kept for the cluster's life) as files (0600, in a 0700 dir; default
        ``secrets_dir``) and return the directory. ``route`` decides how the functions' secrets reach
        the primary: ``direct``, ``pgbouncer`` or ``multihost`` (both ports, read-write; the replica DSN
        then prefers the standby among both). Default: pgbouncer when the cluster runs one, else direct.
        The Jobs' secrets (migrations, rollups) always go direct: DDL and advisory locks need a session."""
        data = self.state.require()
        route = route or ("pgbouncer" if data.get("pgbouncer") else "direct")
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")
        directory = Path(directory) if directory is not None else self.secrets_dir
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        for name, secret in credentials.dsn_secrets().items():
            dsn = self.dsn(secret.role, secret.server)
            if secret.functions and route == "pgbouncer" and secret.server == "primary":
                dsn = self.dsn(secret.role, PGBOUNCER)
            elif secret.functions and route == "multihost":
                dsn = self.multihost_dsn(secret.role, "read-write" if secret.server == "primary" else "prefer-standby")
            _write_secret(directory / name, dsn)
        tokens = data.setdefault("tokens", {})
        for name, secret in credentials.SECRETS.items():
            if secret.kind == "token":
                if name not in tokens:
                    tokens[name] = token_urlsafe(32)
                    self.state.save()
                _write_secret(directory / name, tokens[name])
        return directory


def _write_secret(path: Path, value: str) -> None:
    """``value`` and a newline into ``path`` (mode 0600), replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
