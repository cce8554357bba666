"""The seed-design baseline: its bench-only table, its secret and its function process.

The handler lives in ``bench/seed_function/seed-design/handler.py`` and is served by the project's own
``functions.runtime.server`` (``FUNCTIONS_DIR`` points at ``bench/seed_function``), so both designs sit
behind the same HTTP server and are driven by the same clients. Its table is in schema ``bench_seed``,
created here as the cluster's admin; ``sql/migrations`` is not touched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg

from bench.common import REPO
from devtools.processes import FunctionProcess, start_function

FUNCTION_NAME = "seed-design"
FUNCTIONS_DIR = REPO / "bench" / "seed_function"

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS bench_seed;
CREATE TABLE IF NOT EXISTS bench_seed.comments (
    request_id   text PRIMARY KEY,
    model        text NOT NULL,
    result       jsonb NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
"""


def prepare(admin_dsn: str, secrets_dir: Path) -> Path:
    """Create the bench-only table and a secrets dir holding ``seed-dsn`` (the admin DSN of the bench
    cluster, file mode 0600). Returns the secrets dir."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
    secrets_dir.mkdir(parents=True, exist_ok=True)
    path = secrets_dir / "seed-dsn"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(admin_dsn)
    return secrets_dir


def start(log_dir: Path, secrets_dir: Path, **env: str) -> FunctionProcess:
    """Start the seed design as a function process and wait until it answers a real comment."""
    fn = start_function(
        FUNCTION_NAME, log_dir, secrets_dir=secrets_dir, wait=False, FUNCTIONS_DIR=str(FUNCTIONS_DIR), **env
    )
    fn.wait_ready(timeout=120)
    return fn


def one_row_per_commit(admin_dsn: str, texts: list[str], entities: list[list], id_prefix: str) -> dict:
    """The seed design's persistence alone: psycopg2, one JSONB row + COMMIT per comment, sequential.
    Returns wall seconds and documents written."""
    import psycopg2
    from psycopg2.extras import Json

    sql = (
        "INSERT INTO bench_seed.comments (request_id, model, result) VALUES (%s, %s, %s) "
        "ON CONFLICT (request_id) DO UPDATE SET result = EXCLUDED.result"
    )
    conn = psycopg2.connect(admin_dsn)
    try:
        started = time.perf_counter()
        for i, (text, ents) in enumerate(zip(texts, entities, strict=True)):
            payload = {
                "text": text,
                "entities": [
                    {"text": t, "label": lab, "start_char": s, "end_char": e} for t, lab, s, e in ents
                ],
            }
            with conn.cursor() as cur:
                cur.execute(sql, (f"{id_prefix}-{i}", "en_core_web_sm-3.8.0", Json(payload)))
            conn.commit()
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {"docs": len(texts), "rows": len(texts), "seconds": seconds}
