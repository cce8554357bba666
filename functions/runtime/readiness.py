"""Process-wide readiness registry.

``app.create`` registers each service's named checks here (model loaded, database reachable); the
server answers the watchdog's ``ready_path`` from these checks, so handlers never need a readiness API
of their own and stay within the python3-http contract.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_checks: dict[str, Callable[[], bool]] = {}
_lock = threading.Lock()


def register(name: str, check: Callable[[], bool]) -> None:
    """Add (or replace) the check ``name``; ``check()`` must be quick and must not raise."""
    with _lock:
        _checks[name] = check


def status() -> dict[str, bool]:
    """Run every check; a check that raises counts as not ready."""
    with _lock:
        checks = dict(_checks)
    result: dict[str, bool] = {}
    for name, check in checks.items():
        try:
            result[name] = bool(check())
        except Exception:  # a broken check must not break the probe
            log.warning("readiness check failed", extra={"event": "readiness.check_failed", "check": name},
                        exc_info=True)
            result[name] = False
    return result
