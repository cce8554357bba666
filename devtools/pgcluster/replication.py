"""Streaming replication of the local cluster: the physical slot, cloning the replica, replay,
synchronous replication, and promotion.

The replica is cloned with ``pg_basebackup -R -S <slot>`` (hot standby, asynchronous streaming). With
the ``synchronous`` option the primary names the replica in ``synchronous_standby_names`` (with
``synchronous_commit = on``, a COMMIT returns only once the replica has flushed it), enabled once the
replica streams and dropped while there is no replica (as CloudNativePG with ``minSyncReplicas: 0``):
availability over durability while degraded.
"""

from __future__ import annotations

import time

import psycopg

from devtools.pgcluster.roles import Roles
from devtools.pgcluster.servers import Servers
from devtools.pgcluster.state import CONNECT_TIMEOUT_S, HOST, REPLICATION_ROLE, SLOT_NAME, ClusterState

CREATE_SLOT = (
    "SELECT pg_create_physical_replication_slot(%s) WHERE NOT EXISTS "
    "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)"
)


class Replication:
    """The replica's life cycle relative to the primary.

    Methods raise PgClusterError when a server command fails, TimeoutError when replication does not
    reach the state asked for in time, psycopg errors when a server cannot be reached."""

    def __init__(self, state: ClusterState, servers: Servers, roles: Roles):
        self.state = state
        self.servers = servers
        self.roles = roles

    # ------------------------------------------------------------------------------------- slot

    def ensure_slot(self) -> None:
        """The physical replication slot on the primary (created when missing)."""
        with self.roles.admin() as conn:
            conn.execute(CREATE_SLOT, (SLOT_NAME, SLOT_NAME))

    def slot_lost(self) -> bool:
        """Whether the slot outgrew max_slot_wal_keep_size (the replica must then be cloned again)."""
        with self.roles.admin() as conn:
            row = conn.execute(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (SLOT_NAME,)
            ).fetchone()
        return row is not None and row[0] == "lost"

    def recreate_slot(self) -> None:
        """Drop and create the slot (it then retains WAL from now on)."""
        with self.roles.admin() as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT_NAME,))
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", (SLOT_NAME,))

    def reclone_if_slot_lost(self) -> None:
        """A replica down for long lost its slot: remove it and make a new slot (start() clones anew)."""
        if self.slot_lost():
            self.servers.stop("replica", "immediate")
            self.state.host.rmtree(self.state.data_dir("replica"))
            self.recreate_slot()

    # ------------------------------------------------------------------------------------ clone

    def clone_replica(self) -> None:
        """pg_basebackup into replica.tmp, then rename: a crash mid-copy never leaves a half replica."""
        target = self.state.data_dir("replica")
        tmp = self.state.data_root() / "replica.tmp"
        self.state.host.rmtree(tmp)
        self.state.host.rmtree(target)
        data = self.state.data
        self.state.run(
            ["pg_basebackup", "-h", HOST, "-p", str(data["ports"]["primary"]), "-U", REPLICATION_ROLE,
             "-D", str(tmp), "-X", "stream", "-c", "fast", "-R", "-S", SLOT_NAME, "-w"],
            timeout=300,
            password=data["passwords"][REPLICATION_ROLE],
        )
        tmp.rename(target)

    def has_replica(self) -> bool:
        """Whether a cloned replica exists (running or not)."""
        return (self.state.data_dir("replica") / "standby.signal").exists()

    # ----------------------------------------------------------------------------------- replay

    def current_lsn(self) -> str:
        """The primary's current WAL position, e.g. '0/16B3748'."""
        with self.roles.admin() as conn:
            return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]

    def wait_for_replay(self, lsn: str, timeout: float = 10) -> None:
        """Block until the replica's ``pg_last_wal_replay_lsn()`` >= ``lsn`` (e.g. '0/16B3748'), at most
        ``timeout`` seconds. Retries through replica restarts; raises TimeoutError (with the last replay
        LSN or error seen)."""
        deadline = time.monotonic() + timeout
        last = "never connected"
        conn = None
        try:
            while True:
                try:
                    if conn is None or conn.closed:
                        remaining = max(1, int(deadline - time.monotonic()))
                        conn = psycopg.connect(self.roles.dsn("admin", "replica"), autocommit=True,
                                               connect_timeout=min(CONNECT_TIMEOUT_S, remaining))
                    row = conn.execute(
                        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, pg_last_wal_replay_lsn()::text", (lsn,)
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

    def pause_replay(self, timeout: float = 5) -> None:
        """Pause WAL replay on the replica (it keeps receiving WAL, so lag grows) and wait until the
        pause is effective. Raises TimeoutError, psycopg.OperationalError if the replica is down."""
        with psycopg.connect(self.roles.dsn("admin", "replica"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            deadline = time.monotonic() + timeout
            while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replay not paused within {timeout}s")
                time.sleep(0.02)

    def resume_replay(self) -> None:
        """Resume WAL replay on the replica. Raises psycopg.OperationalError if the replica is down."""
        with psycopg.connect(self.roles.dsn("admin", "replica"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    # ------------------------------------------------------------------------------ synchronous

    def apply_synchronous(self, enabled: bool, timeout: float = 30) -> None:
        """Set synchronous_standby_names on the running primary (reload) to the replica when ``enabled``
        and the replica runs, else to '' (a primary without standby must not block every COMMIT). When
        turning it on, wait until the replica is reported ``sync``, so the next acknowledged COMMIT is on
        both. Raises TimeoutError after ``timeout`` seconds."""
        data = self.state.data
        active = enabled and self.servers.running_pid("replica") is not None
        wanted = SLOT_NAME if active else ""
        if bool(data.get("sync_active")) == active and self._sync_names_live() == wanted:
            return
        data["sync_active"] = active
        self.state.save()
        self.servers.write_conf("primary")
        self.servers.reload("primary")
        deadline = time.monotonic() + timeout
        with self.roles.admin() as conn:
            while True:
                names = conn.execute("SELECT current_setting('synchronous_standby_names')").fetchone()[0]
                states = {row[0] for row in conn.execute("SELECT sync_state FROM pg_stat_replication")}
                if names == wanted and (not active or "sync" in states):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"synchronous_standby_names={names!r}, standbys {states} after {timeout}s")
                time.sleep(0.05)

    def _sync_names_live(self) -> str | None:
        try:
            with self.roles.admin() as conn:
                return conn.execute("SELECT current_setting('synchronous_standby_names')").fetchone()[0]
        except psycopg.Error:
            return None

    # -------------------------------------------------------------------------------- promotion

    def promote(self, timeout: float = 30) -> float:
        """Promote the running replica (the primary must be gone): synchronous replication is dropped
        first (no standby is left to wait for), ``pg_ctl promote`` waits up to ``timeout`` seconds until
        it accepts writes, the roles swap in the state (the new primary keeps its port) and the slot is
        created on it. Returns the seconds promotion took."""
        started = time.monotonic()
        data = self.state.data
        data["sync_active"] = False
        self.servers.write_conf("replica", role="primary")
        self.servers.reload("replica")
        self.state.run(["pg_ctl", "-D", str(self.state.data_dir("replica")), "promote", "-w", "-t",
                        str(int(timeout))], timeout=timeout + 10)
        dirs = self.state.dirs()
        data["dirs"] = {"primary": dirs["replica"], "replica": dirs["primary"]}
        ports = data["ports"]
        ports["primary"], ports["replica"] = ports["replica"], ports["primary"]
        data["promotions"] = data.get("promotions", 0) + 1
        self.state.save()
        elapsed = time.monotonic() - started
        self.ensure_slot()
        return elapsed

    def rebuild_replica(self, timeout: float = 60) -> None:
        """Remove what is left of the old primary, clone a new replica from the primary (on the old
        primary's port), start it, wait up to ``timeout`` seconds until it has replayed everything, then
        turn synchronous replication back on if the cluster uses it."""
        self.servers.stop("replica", "immediate")
        # The killed primary left its postmaster.pid and socket lock (on the port the new replica takes
        # over) behind.
        self.servers.clear_stale_lock("replica")
        self.state.host.rmtree(self.state.data_dir("replica"))
        self.clone_replica()
        self.servers.start("replica")
        self.wait_for_replay(self.current_lsn(), timeout=timeout)
        self.apply_synchronous(bool(self.state.data.get("synchronous")))
