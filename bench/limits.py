"""Raw spaCy limits (no HTTP, no database), cold-start references and installed sizes.

``measure(config)`` runs in its own fresh process (``python -m bench.limits`` with a JSON config on
stdin; see :func:`run`): one raw spaCy process against one function process is the comparison the
goals ask for. Measurements are interleaved round by round so a burst of load from elsewhere on the
machine hits every configuration alike; CPU seconds are reported next to wall time because they are
robust to that load.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from bench.common import MODEL, REPO, percentile, run_module_json

BARE_LOAD = "import spacy; spacy.load({model!r})"
BARE_LOAD_NER = "from functions.runtime.nlp import load_pipeline; load_pipeline({model!r}, 'ner')"


def _timed(fn, texts: list[str]) -> dict:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    entities = fn(texts)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "docs": len(texts),
        "chars": sum(map(len, texts)),
        "wall_s": wall,
        "cpu_s": cpu,
        "entities": sum(map(len, entities)),
        "_entities": entities,
    }


def measure(config: dict) -> dict:
    """Raw throughput of the configurations below on ``config["texts_path"]`` (a JSON list).

    Keys: rounds, full_docs (how many docs the slow full-pipeline loop sees), warmup_docs,
    long_texts_path (optional JSON list of very long texts), entities_out (optional path: the
    NER-only entities of every text, reused by the database benchmark), model.
    """
    import spacy

    from functions.runtime.nlp import extract, load_pipeline

    model = config.get("model", MODEL)
    texts: list[str] = json.loads(Path(config["texts_path"]).read_text(encoding="utf-8"))
    warm = (
        json.loads(Path(config["warmup_path"]).read_text(encoding="utf-8"))
        if config.get("warmup_path")
        else []
    )
    ner = load_pipeline(model, "ner")
    full = spacy.load(model)
    # Warm both pipelines on texts outside the measured sample, as the function warms its own.
    for nlp in (ner, full):
        for doc in nlp.pipe(warm[: config.get("warmup_docs", 200)], batch_size=64):
            extract(doc)
    full_n = min(len(texts), config.get("full_docs", 500))
    configs = {
        "ner_pipe128": lambda xs: [extract(d) for d in ner.pipe(xs, batch_size=128)],
        "ner_pipe16": lambda xs: [extract(d) for d in ner.pipe(xs, batch_size=16)],
        "ner_loop": lambda xs: [extract(ner(x)) for x in xs],
        "full_loop": lambda xs: [extract(full(x)) for x in xs],
    }
    sizes = {"ner_pipe128": len(texts), "ner_pipe16": len(texts), "ner_loop": full_n, "full_loop": full_n}
    doc_ms: list[float] = []

    def ner_loop(xs: list[str]) -> list:
        # Timed per document too: the spread of the model's own service time bounds the latency spread
        # any single-worker server can offer (a long comment holds the worker for its whole run).
        out = []
        for x in xs:
            t0 = time.perf_counter()
            out.append(extract(ner(x)))
            doc_ms.append((time.perf_counter() - t0) * 1000.0)
        return out

    configs["ner_loop"] = ner_loop
    totals: dict[str, dict] = {}
    entities_of_sample = None
    for _ in range(max(1, config.get("rounds", 1))):
        for name, fn in configs.items():
            result = _timed(fn, texts[: sizes[name]])
            if name == "ner_pipe128" and entities_of_sample is None:
                entities_of_sample = result["_entities"]
            agg = totals.setdefault(name, {"docs": 0, "chars": 0, "wall_s": 0.0, "cpu_s": 0.0, "runs": []})
            for key in ("docs", "chars", "wall_s", "cpu_s"):
                agg[key] += result[key]
            agg["runs"].append(round(result["docs"] / result["wall_s"], 1))
    out: dict = {
        "spacy": spacy.__version__,
        "model": model,
        "model_version": ner.meta.get("version"),
        "ner_pipes": ner.pipe_names,
        "full_pipes": full.pipe_names,
    }
    for name, agg in totals.items():
        out[name] = {
            "docs_s": agg["docs"] / agg["wall_s"],
            "chars_s": agg["chars"] / agg["wall_s"],
            "cpu_docs_s": agg["docs"] / agg["cpu_s"] if agg["cpu_s"] else None,
            "cores": agg["cpu_s"] / agg["wall_s"],
            "docs": agg["docs"],
            "runs_docs_s": agg["runs"],
        }

    out["ner_loop"].update(
        doc_ms_p50=percentile(doc_ms, 50),
        doc_ms_p95=percentile(doc_ms, 95),
        doc_ms_p99=percentile(doc_ms, 99),
        doc_ms_mean=sum(doc_ms) / max(1, len(doc_ms)),
    )
    if config.get("long_texts_path"):
        long = json.loads(Path(config["long_texts_path"]).read_text(encoding="utf-8"))
        r = _timed(lambda xs: [extract(ner(x)) for x in xs], long)
        out["ner_long"] = {
            "docs": r["docs"],
            "ms_per_doc": r["wall_s"] * 1000 / max(1, r["docs"]),
            "chars": r["chars"],
        }
    if config.get("entities_out") and entities_of_sample is not None:
        Path(config["entities_out"]).write_text(
            json.dumps(entities_of_sample, ensure_ascii=False), encoding="utf-8"
        )
    return out


def run(config: dict, timeout: float = 900, env: dict | None = None) -> dict:
    """:func:`measure` in a fresh process (``env``: e.g. the function's thread settings, like for like)."""
    return run_module_json("bench.limits", config, timeout=timeout, env=env)


def bare_load_seconds(model: str = MODEL, ner_only: bool = False) -> float:
    """Wall time of a fresh ``python -c 'import spacy; spacy.load(model)'``, end to end (interpreter
    start, imports, model load, exit): what a container pays before its first request at best."""
    code = (BARE_LOAD_NER if ner_only else BARE_LOAD).format(model=model)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env, capture_output=True)
    return time.perf_counter() - started


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def installed_sizes(model: str = MODEL) -> dict:
    """Apparent size (MB) of this venv's site-packages and of the model package inside it: the two
    figures that make up most of a fat image's Python layer."""
    site = Path(sysconfig.get_paths()["purelib"])
    spec = importlib.util.find_spec(model)
    locations = list(spec.submodule_search_locations or []) if spec else []
    model_dir = Path(locations[0]) if locations else None
    return {
        "site_packages": str(site),
        "site_packages_mb": _tree_bytes(site) / 1e6,
        "model_dir": str(model_dir) if model_dir else None,
        "model_mb": _tree_bytes(model_dir) / 1e6 if model_dir else None,
    }


def main() -> None:
    config = json.loads(sys.stdin.read())
    print(json.dumps(measure(config)))


if __name__ == "__main__":
    main()
