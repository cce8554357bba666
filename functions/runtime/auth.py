"""Bearer tokens for functions whose answers are not public (entity-stats: top PERSON entities are
personal data).

The tokens come from an OpenFaaS secret (``/var/openfaas/secrets/<name>``), one per line, so a token is
rotated without downtime: add the new line, move the callers, remove the old line. Kubernetes updates a
mounted secret in place, so the file is read again when it changes (checked at most every
``RELOAD_S`` seconds). Without the secret, every request is refused: the function fails closed.

Comparison is in constant time over SHA-256 digests (equal lengths, no early exit), against every
configured token. A refusal says nothing about which part failed, and no token is ever logged.

Shapes::

    tokens = BearerTokens(settings, "entity-stats-token")
    tokens.check(event.headers)   # raises Unauthorized (401) unless "Authorization: Bearer <a token>"
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time

from functions.runtime.errors import Unauthorized
from functions.runtime.settings import Settings

log = logging.getLogger(__name__)

RELOAD_S = 5.0


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class BearerTokens:
    """The tokens of secret ``secret_name``; :meth:`check` is thread-safe."""

    def __init__(self, settings: Settings, secret_name: str):
        self.settings = settings
        self.secret_name = secret_name
        self._lock = threading.Lock()
        self._digests: tuple[bytes, ...] = ()
        self._raw: str | None = None
        self._checked = float("-inf")
        self._reload()
        if not self._digests:
            log.warning(f"secret {secret_name} holds no token: every request will get 401",
                        extra={"event": "auth.not_configured"})

    def _reload(self) -> None:
        raw = self.settings.secret(self.secret_name)
        if raw != self._raw:
            lines = [line.strip() for line in (raw or "").splitlines()]
            self._digests = tuple(_digest(line) for line in lines if line)
            self._raw = raw
        self._checked = time.monotonic()

    def check(self, headers) -> None:
        """Raise Unauthorized (401 ``unauthorized``, ``WWW-Authenticate: Bearer``) unless ``headers``
        (case-insensitive ``.get``) carry ``Authorization: Bearer <token>`` with a configured token."""
        if time.monotonic() - self._checked > RELOAD_S:
            with self._lock:
                if time.monotonic() - self._checked > RELOAD_S:
                    self._reload()
        value = (headers.get("Authorization") if headers is not None else None) or ""
        scheme, _, given = value.partition(" ")
        presented = _digest(given.strip()) if scheme.lower() == "bearer" and given.strip() else _digest("\x00")
        matched = False
        for digest in self._digests:  # every token is compared: no early exit
            matched |= hmac.compare_digest(presented, digest)
        if not matched:
            raise Unauthorized("a valid bearer token is required")
