"""A local PostgreSQL primary + streaming read replica for development, tests and benchmarks.

``LocalCluster(base_dir).start()`` builds (once) and starts:

* a **primary** (``initdb``; ``wal_level=replica``; a physical replication slot; fsync on, so a SIGKILL
  loses nothing that was acknowledged),
* a **replica** cloned with ``pg_basebackup -R -S <slot>`` (hot standby, asynchronous streaming),

both listening on 127.0.0.1 only, on free ports, with their unix sockets in a directory of the cluster.
Every TCP connection (replication included) uses scram-sha-256 with generated passwords. It then runs
``sql/roles/bootstrap_roles.sql``, sets the role passwords, applies ``sql/migrations`` as the owner and
writes the DSN secrets of :mod:`functions.runtime.credentials` (``ner-writer-dsn``, ``stats-replica-dsn``,
``stats-primary-dsn``, ``migrations-dsn``) into ``secrets_dir``. Ports and passwords are kept in
``base_dir/cluster.json`` so a second ``start()`` reuses everything (and is a no-op when the servers are
already up).

PostgreSQL refuses to run as root: when euid is 0 every server binary runs as the ``postgres`` system user
(``runuser -u postgres --``) and the server directories are owned by it. If ``base_dir`` is not reachable
by that user (e.g. pytest's 0700 temp dirs), the server files go to ``/tmp/nlp-pg-<hash>`` instead.

Options (kept in ``cluster.json`` once given):

* ``pgbouncer=True``: a real PgBouncer (:mod:`devtools.pgcluster.pgbouncer`) in front of the primary,
  like CloudNativePG's ``Pooler``; the functions' ``ner-writer-dsn`` and ``stats-primary-dsn`` then go
  through it.
* ``synchronous=True``: synchronous replication to the replica while it streams
  (:mod:`devtools.pgcluster.replication`).

Failover: :meth:`LocalCluster.promote_replica` (the primary must be gone, e.g. after
:meth:`LocalCluster.kill_primary`) promotes the replica and swaps the roles (the new primary keeps its
port); :meth:`LocalCluster.rebuild_replica` clones a new replica from it on the old primary's port, so a
multi-host DSN (:meth:`LocalCluster.multihost_dsn`, ``target_session_attrs=read-write``) names the right
two ports before and after.

Modules, one concern each: ``state`` (settings, errors, binaries lookup, cluster.json, lock, layout),
``host`` (processes, ports, running binaries as the server user), ``servers`` (initdb, settings,
start/stop of one server), ``roles`` (roles, passwords, DSN secret files), ``replication`` (slot, clone,
replay, synchronous replication, promotion), ``pgbouncer``, ``cluster`` (the ``LocalCluster`` facade),
``cli`` (``python -m devtools.pgcluster start|stop|status|destroy|failover [--dir DIR] [--pgbouncer]
[--synchronous]``, prints JSON).
"""

from devtools.pgcluster.cli import main
from devtools.pgcluster.cluster import LocalCluster
from devtools.pgcluster.host import alive, server_processes
from devtools.pgcluster.roles import ROLES, ROUTES, SECRETS
from devtools.pgcluster.state import (
    CONNECT_TIMEOUT_S,
    DBNAME,
    DEFAULT_BASE_DIR,
    HOST,
    PGBOUNCER,
    REPLICATION_ROLE,
    SERVERS,
    SLOT_NAME,
    PgBinariesNotFound,
    PgBouncerNotFound,
    PgClusterError,
    find_pg_bin,
    find_pgbouncer,
)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DBNAME",
    "DEFAULT_BASE_DIR",
    "HOST",
    "PGBOUNCER",
    "REPLICATION_ROLE",
    "ROLES",
    "ROUTES",
    "SECRETS",
    "SERVERS",
    "SLOT_NAME",
    "LocalCluster",
    "PgBinariesNotFound",
    "PgBouncerNotFound",
    "PgClusterError",
    "alive",
    "find_pg_bin",
    "find_pgbouncer",
    "main",
    "server_processes",
]
