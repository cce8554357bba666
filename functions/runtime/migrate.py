"""Apply the numbered, append-only migrations in ``sql/migrations`` to a PostgreSQL database.

Usage::

    python -m functions.runtime.migrate                       # DSN from the secret `migrations-dsn`
    python -m functions.runtime.migrate --dsn "host=... user=nlp_owner ..." [--dry-run]

Rules:

* Files are named ``NNNN_name.sql`` (four digits, lower-case name) and applied in numeric order, each in
  its **own transaction**, so a failing migration leaves the database at the previous version.
* Applied files are recorded in ``nlp_meta.schema_migrations`` (version, name, sha256 checksum,
  applied_at, applied_by). Re-running is a no-op.
* Migrations are append-only: if an applied file's checksum (or name) changed on disk, or a new file is
  numbered *below* an already applied one, the run fails before touching anything.
* Two migrators (e.g. two Argo CD PreSync jobs) may run at once: every transaction first takes
  ``pg_advisory_xact_lock(MIGRATION_LOCK_KEY)`` and re-reads the applied set under that lock, so each file
  is applied exactly once.
* The connecting role should be ``nlp_owner`` (it then owns every object). A superuser may pass
  ``--role nlp_owner`` to ``SET ROLE`` inside each transaction.

Output is the project's JSON log lines on stdout (functions/runtime/logs.py: ``@timestamp``,
``event``, ...); the DSN and its password are never printed. SQL: ``sql/queries/migrate.sql``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from functions.runtime import db, ops, queries
from functions.runtime.queries import sql_dir

log = logging.getLogger("functions.runtime.migrate")

# Arbitrary but fixed 64-bit key: every migrator of this project serialises on it.
MIGRATION_LOCK_KEY = 0x6E6C_705F_6D69_67  # "nlp_mig"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.sql$")


class MigrationError(Exception):
    """The migrations cannot be applied: bad file names, changed history, or a failing migration."""


class ChecksumMismatch(MigrationError):
    """An already applied migration file was edited (migrations are append-only)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str  # hex sha256 of the file bytes

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def read_sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)  # labels applied by this run
    already_applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # only filled by a dry run
    unknown: list[int] = field(default_factory=list)  # versions in the database but not on disk
    role: str | None = None
    database: str | None = None

    def as_dict(self) -> dict:
        return {
            "applied": self.applied,
            "already_applied": self.already_applied,
            "pending": self.pending,
            "unknown_versions": self.unknown,
            "role": self.role,
            "database": self.database,
        }


def default_directory() -> Path:
    return sql_dir() / "migrations"


def discover(directory: Path | None = None) -> list[Migration]:
    """Migration files of ``directory`` sorted by version.

    Raises MigrationError for a ``.sql`` file that does not follow ``NNNN_name.sql`` (a silently
    ignored migration is worse than a failed deploy) or for two files with the same number.
    """
    directory = default_directory() if directory is None else Path(directory)
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"bad migration file name {path.name!r}: expected NNNN_lower_case_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations numbered {version:04d}: {found[version].path.name}, {path.name}"
            )
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found[version] = Migration(version, match.group(2), path, checksum)
    return [found[v] for v in sorted(found)]


def _tracking_table_exists(cur: psycopg.Cursor) -> bool:
    cur.execute(_sql()["tracking_table_exists"])
    return bool(cur.fetchone()[0])


def _ensure_tracking_table(cur: psycopg.Cursor) -> None:
    if not _tracking_table_exists(cur):
        cur.execute(_sql()["create_tracking_table"])


def _applied(cur: psycopg.Cursor) -> dict[int, tuple[str, str]]:
    cur.execute(_sql()["applied"])
    return {version: (name, checksum) for version, name, checksum in cur.fetchall()}


def _sql() -> dict[str, str]:
    return queries.load("migrate")


def _verify_history(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> list[int]:
    """Raise if applied history and files disagree; return versions applied but missing on disk.

    Unknown versions are not an error: an older image (rollback) must still be able to run its
    migrations job against a database that a newer release already migrated.
    """
    on_disk = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = on_disk.get(version)
        if migration is None:
            continue
        if migration.name != name:
            raise ChecksumMismatch(
                f"migration {version:04d} was applied as {name!r} but the file is now {migration.path.name!r}"
            )
        if migration.checksum != checksum:
            raise ChecksumMismatch(
                f"migration {migration.label} was edited after it was applied (checksum {checksum[:12]}... "
                f"in the database, {migration.checksum[:12]}... on disk); migrations are append-only: "
                "revert the edit and add a new numbered file"
            )
    if applied:
        newest = max(applied)
        late = [m.label for m in migrations if m.version not in applied and m.version < newest]
        if late:
            raise MigrationError(
                f"{', '.join(late)} numbered below the newest applied migration {newest:04d}; "
                "renumber it after the newest one"
            )
    return sorted(v for v in applied if v not in on_disk)


def apply(
    dsn: str,
    directory: Path | None = None,
    *,
    dry_run: bool = False,
    role: str | None = None,
    lock_timeout_s: float = 60.0,
    on_event: Callable[[dict], None] | None = None,
) -> MigrationReport:
    """Apply pending migrations to ``dsn`` and return what happened.

    Raises MigrationError (bad files, edited history, a migration that fails: its transaction is rolled
    back and the error names the file), psycopg.OperationalError when the database cannot be reached, and
    psycopg.errors.LockNotAvailable when another migrator holds the lock longer than ``lock_timeout_s``.
    """
    migrations = discover(directory)
    emit = on_event or (lambda event: None)
    report = MigrationReport()
    with psycopg.connect(dsn, autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute(_sql()["whoami"])
            report.role, report.database = cur.fetchone()
        conn.rollback()

        if dry_run:
            with conn.cursor() as cur:
                applied = _applied(cur) if _tracking_table_exists(cur) else {}
            conn.rollback()
            report.unknown = _verify_history(migrations, applied)
            report.already_applied = [m.label for m in migrations if m.version in applied]
            report.pending = [m.label for m in migrations if m.version not in applied]
            return report

        first_pass = True
        while True:
            # One transaction per migration; the lock and the applied set are re-read every time because
            # a concurrent migrator may have applied files while we waited.
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(_sql()["lock_timeout"], {"timeout_ms": str(int(lock_timeout_s * 1000))})
                if role:
                    cur.execute(sql.SQL(_sql()["set_role"]).format(role=sql.Identifier(role)))
                cur.execute(_sql()["advisory_lock"], {"key": MIGRATION_LOCK_KEY})
                _ensure_tracking_table(cur)
                applied = _applied(cur)
                unknown = _verify_history(migrations, applied)
                if first_pass:
                    report.unknown = unknown
                    report.already_applied = [m.label for m in migrations if m.version in applied]
                    first_pass = False
                pending = [m for m in migrations if m.version not in applied]
                if not pending:
                    break
                migration = pending[0]
                started = time.perf_counter()
                try:
                    # No parameters: psycopg sends the file with the simple protocol, so a file may hold
                    # many statements (and literal % signs).
                    cur.execute(migration.read_sql().encode("utf-8"))
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.label} failed: {exc}") from exc
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                cur.execute(_sql()["record_applied"], {
                    "version": migration.version, "name": migration.name, "checksum": migration.checksum,
                    "duration_ms": duration_ms})
            report.applied.append(migration.label)
            emit(
                {
                    "event": "migration.applied",
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                    "duration_ms": duration_ms,
                }
            )
    return report


def _log_event(event: dict) -> None:
    """An :func:`apply` event as a log line (``name``/``version`` are LogRecord attributes: prefixed)."""
    fields = {("migration." + k if k in ("name", "version") else k): v for k, v in event.items()}
    log.info(f"migration {event.get('name')} applied", extra=fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions.runtime.migrate", description=__doc__.split("\n")[0]
    )
    ops.add_dsn_arguments(parser)
    parser.add_argument(
        "--dir", type=Path, default=None, help="migrations directory (default sql/migrations)"
    )
    parser.add_argument("--dry-run", action="store_true", help="report pending migrations, change nothing")
    parser.add_argument(
        "--role", default=None, help="SET ROLE to this role in each transaction (superuser runs)"
    )
    parser.add_argument("--lock-timeout", type=float, default=60.0, help="seconds to wait for locks")
    args = parser.parse_args(argv)
    dsn = ops.start("migrate", args, log, "migrations.failed")
    if not dsn:
        return 2
    try:
        report = apply(
            dsn,
            args.dir,
            dry_run=args.dry_run,
            role=args.role,
            lock_timeout_s=args.lock_timeout,
            on_event=_log_event,
        )
    except (MigrationError, psycopg.Error) as exc:
        ops.failed(log, "migrations.failed", type(exc).__name__, db.safe_message(exc))
        return 1
    event = "migrations.dry_run" if args.dry_run else "migrations.done"
    log.info(event.replace(".", " "), extra={"event": event, **report.as_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
