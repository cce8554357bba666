"""Phase 1, raw limits: the NER-only pipeline with ``nlp.pipe`` (batch 128 and 16), the ``nlp(text)``
loops (NER-only, timed per document, and the full pipeline), and ~20k-char texts, in a fresh process
on the sample the function sees (bench/limits.py). Also writes the entities the db phase replays."""

from __future__ import annotations

from bench import limits
from bench.common import MODEL, log


def run(ctx) -> dict:
    p = ctx.plan
    log(f"raw spaCy limits on {p.sample_docs} docs ({p.raw_rounds} round(s))")
    return limits.run(
        {
            "texts_path": str(ctx.sample_path),
            "warmup_path": str(ctx.warm_path),
            "warmup_docs": p.warmup_docs,
            "rounds": p.raw_rounds,
            "full_docs": p.full_docs,
            "long_texts_path": str(ctx.long_path),
            "entities_out": str(ctx.entities_path),
            "model": MODEL,
        },
        # Same BLAS/OpenMP thread settings as the function process, if the deployment sets any.
        env={k: v for k, v in ctx.fn_env.items() if k.endswith("_NUM_THREADS")},
    )
