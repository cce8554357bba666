#!/usr/bin/env bash
# Copy the application code an image needs (functions/ and sql/) into DEST, byte-compile it, and check
# that the function named by the FUNCTION build argument exists.
#
#   scripts/image/install-app.sh DEST FUNCTION
#
# Runs in the Dockerfile's builder stage and in tests/deploy (CI), so a function that stack.yml builds
# but that has no functions/<FUNCTION>/handler.py fails here, not at the first cold start in the cluster.
#
# Byte-compiling at build time matters because the runtime's root filesystem is read-only: Python
# could not cache .pyc files there and would recompile every module on every cold start.
# unchecked-hash .pyc files are never revalidated against the source (the image is immutable).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${1:?usage: install-app.sh DEST FUNCTION}"
FUNCTION="${2:?usage: install-app.sh DEST FUNCTION (the FUNCTION build argument is empty)}"
PYTHON_BIN="${PYTHON:-python3}"

if [ ! -f "$ROOT/functions/$FUNCTION/handler.py" ]; then
  known=""
  for handler in "$ROOT"/functions/*/handler.py; do
    [ -f "$handler" ] && known="$known $(basename "$(dirname "$handler")")"
  done
  printf 'install-app: no functions/%s/handler.py (functions with a handler:%s)\n' "$FUNCTION" "$known" >&2
  exit 1
fi

mkdir -p "$DEST"
# Only what the runtime reads: the functions package (runtime + every handler, so one image layout
# serves all functions) and sql/ (named queries; migrations for the PreSync migration job).
# Local development tooling, caches and tests stay out.
tar -C "$ROOT" \
    --exclude='__pycache__' --exclude='*.pyc' \
    -cf - functions sql | tar -C "$DEST" -xf -
"$PYTHON_BIN" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$DEST/functions" >/dev/null
printf 'install-app: %s ready for FUNCTION=%s\n' "$DEST" "$FUNCTION" >&2
