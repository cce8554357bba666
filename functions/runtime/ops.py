"""What the ops commands (``migrate``, ``retention``) share: the DSN arguments, the log contract set-up
and the failure line. They log one JSON object per line like the functions (functions/runtime/logs.py)."""

from __future__ import annotations

import argparse
import logging

from functions.runtime import logs, settings

# The name of a secret (its file), not its value.
DEFAULT_DSN_SECRET = "migrations-dsn"  # noqa: S105


def add_dsn_arguments(parser: argparse.ArgumentParser, default_secret: str = DEFAULT_DSN_SECRET) -> None:
    """``--dsn`` (libpq DSN) or ``--dsn-secret`` (a secret holding it: ``$SECRETS_DIR/<name>`` or env)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dsn", help="libpq DSN of the primary (role nlp_owner)")
    source.add_argument("--dsn-secret", default=default_secret,
                        help=f"secret holding the DSN ($SECRETS_DIR/<name> or env); default {default_secret}")


def start(command: str, args: argparse.Namespace, log: logging.Logger, failed_event: str) -> str | None:
    """Configure JSON logging for ``command`` and return the DSN from ``args``; None (after logging
    ``failed_event`` with ``error.type`` MissingDSN) when there is none. Never logs the DSN."""
    process_settings = settings.current()
    logs.configure(command, process_settings.log_level)
    dsn = args.dsn or process_settings.secret(args.dsn_secret)
    if not dsn:
        failed(log, failed_event, "MissingDSN", f"no DSN: pass --dsn or provide the secret {args.dsn_secret!r}")
    return dsn


def failed(log: logging.Logger, event: str, error_type: str, message: str) -> None:
    """The one failure line of an ops command (``message`` must already be safe: no DSN, no DETAIL)."""
    log.error(event.replace(".", " "), extra={"event": event, "error.type": error_type, "error.message": message})
