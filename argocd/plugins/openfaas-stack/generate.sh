#!/bin/sh
# Argo CD CMP "generate" for the openfaas-stack plugin: stack.yml -> openfaas.com/v1 Function objects.
#
# Runs in the Application's source directory (the repository root) inside the argocd-repo-server
# sidecar (image ghcr.io/openfaas/faas-cli, busybox sh). Contract with Argo CD:
#   - stdout carries ONLY Kubernetes objects, and only when everything succeeded;
#   - anything else (diagnostics, faas-cli's own error text) goes to stderr, shown in the Argo CD UI;
#   - any failure exits non-zero.
# Why so strict: faas-cli prints its errors on STDOUT, and with automated sync + prune an empty or
# garbage manifest set would delete every function. So faas-cli's output is captured first and
# released only after the exit code and the content have been checked (no pipeline, so no exit status
# can be lost; pipefail is on anyway where the shell has it).
#
# Settings (Application `spec.source.plugin.env` arrives with the ARGOCD_ENV_ prefix):
#   STACK_FILE          stack file to render            (default stack.yml)
#   FUNCTION_NAMESPACE  metadata.namespace of Functions (default openfaas-fn)
#   FAAS_CLI            faas-cli executable             (default faas-cli; tests point it at a stand-in)
set -eu
# busybox ash and bash have pipefail (POSIX.1-2024 too); dash, used by the offline tests, does not.
# shellcheck disable=SC3040
if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi

FAAS_CLI="${FAAS_CLI:-faas-cli}"
STACK_FILE="${ARGOCD_ENV_STACK_FILE:-${STACK_FILE:-stack.yml}}"
FUNCTION_NAMESPACE="${ARGOCD_ENV_FUNCTION_NAMESPACE:-${FUNCTION_NAMESPACE:-openfaas-fn}}"

fail() {
  printf 'openfaas-stack: %s\n' "$*" >&2
  exit 1
}

[ -f "$STACK_FILE" ] || fail "stack file '$STACK_FILE' not found in $(pwd)"
command -v "$FAAS_CLI" >/dev/null 2>&1 || fail "faas-cli not found (FAAS_CLI=$FAAS_CLI)"

work="$(mktemp -d)" || fail "mktemp failed"
trap 'rm -rf "$work"' EXIT HUP INT TERM

status=0
"$FAAS_CLI" generate --api openfaas.com/v1 -f "$STACK_FILE" -n "$FUNCTION_NAMESPACE" \
  >"$work/stdout" 2>"$work/stderr" || status=$?

if [ "$status" -ne 0 ]; then
  printf 'openfaas-stack: faas-cli generate -f %s failed (exit %s):\n' "$STACK_FILE" "$status" >&2
  cat "$work/stdout" "$work/stderr" >&2
  exit 1
fi
# Pass faas-cli's warnings on, never onto stdout.
[ ! -s "$work/stderr" ] || cat "$work/stderr" >&2

# Exit 0 is not proof of a usable result: faas-cli accepts a stack without functions and renders a
# function without image as `image: :latest`.
if ! grep -q '^kind: Function$' "$work/stdout"; then
  cat "$work/stdout" >&2
  fail "faas-cli generate produced no Function objects from $STACK_FILE; refusing (prune would delete every function)"
fi
if grep -Eq '^[[:space:]]+image:[[:space:]]*["'\'']?:' "$work/stdout"; then
  cat "$work/stdout" >&2
  fail "a function in $STACK_FILE has no image (faas-cli rendered 'image: :latest')"
fi

cat "$work/stdout"
