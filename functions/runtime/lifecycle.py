"""Shutdown hooks: services register what must be closed (model worker, pools) when the server stops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_hooks: list[Callable[[], None]] = []
_lock = threading.Lock()


def on_shutdown(hook: Callable[[], None]) -> None:
    with _lock:
        _hooks.append(hook)


def run_shutdown_hooks() -> None:
    """Run hooks newest first; a failing hook is logged and the others still run."""
    with _lock:
        hooks = list(reversed(_hooks))
        _hooks.clear()
    for hook in hooks:
        try:
            hook()
        except Exception:
            log.error("shutdown hook failed", exc_info=True, extra={"event": "server.shutdown_hook_failed"})
