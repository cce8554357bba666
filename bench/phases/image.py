"""Phase 8, container images (bench/image.py): build check and sizes, cold start of the ner-processor
container against a bare ``spacy.load`` on the host, RSS after a warm-up. Without Docker/podman the
phase records why it was skipped instead of failing the run. Alone: ``python -m bench.image``."""

from __future__ import annotations

from bench import image
from bench.common import log


def run(ctx) -> dict:
    from scripts.image import build as image_build

    if image_build.detect_engine() is None:
        log("image phase skipped: no container engine (Docker or podman)")
        return {"skipped": "no container engine (Docker or podman)"}
    # 5 rounds in a full run: a container start is cheap next to the noise of a shared machine.
    rounds = 5 if ctx.plan.cold_rounds >= 3 else ctx.plan.cold_rounds
    log(f"container images: build check, cold start ({rounds} round(s)), RSS")
    return image.measure(
        ctx.cluster.dsn("writer", "primary"), ctx.sample, rounds=rounds, warmup_docs=ctx.plan.warmup_docs, log=log
    )


def section(results: dict) -> str:
    return image.render(results.get("image"), results["errors"].get("image"))
