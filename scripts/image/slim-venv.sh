#!/usr/bin/env bash
# Drop from an image's venv what the runtime never imports, and print what the venv holds.
#
#   scripts/image/slim-venv.sh VENV_DIR
#
# Runs at the end of the builder stage only (never on a developer's venv: the test suite needs pip and
# the packages' own files there). What goes, and why it is safe:
# - every package's `tests/` folder: test suites of spaCy, thinc, numpy, srsly, ... (nothing imports them
#   at run time; tests/image checks the model still loads and tags entities inside the image);
# - pip and its vendored libraries: the image never installs anything after the build;
# - type stubs (*.pyi) and the DWARF debug info of compiled extension modules (`strip --strip-debug`:
#   symbols stay, so tracebacks and profilers still name functions).
# Byte-code (`__pycache__`) stays on purpose: the root filesystem is read-only, Python could not
# write it at a cold start and would recompile every module each time.
set -euo pipefail

VENV="${1:?usage: slim-venv.sh VENV_DIR}"
SITE="$(echo "$VENV"/lib/python3*/site-packages)"
[ -d "$SITE" ] || { printf 'slim-venv: no site-packages under %s\n' "$VENV" >&2; exit 1; }

size() { du -sm "$1" | cut -f1; }
before="$(size "$SITE")"

find "$SITE" -depth -type d -name tests -exec rm -rf {} +
rm -rf "$SITE"/pip "$SITE"/pip-*.dist-info "$VENV"/bin/pip "$VENV"/bin/pip3*
find "$VENV" -name '*.pyi' -delete
# Debug info of the packages' own extension modules (the libraries auditwheel grafted into *.libs/ are
# left alone: they are rewritten by patchelf and stripping such files can break them).
if command -v strip >/dev/null 2>&1; then
  find "$SITE" -path '*.libs' -prune -o -type f -name '*.cpython-*.so' -print0 \
    | xargs -0 -r strip --strip-debug
else
  printf 'slim-venv: no strip (binutils): extension modules keep their debug info\n' >&2
fi

after="$(size "$SITE")"
printf 'slim-venv: site-packages %s MB -> %s MB; largest now:\n' "$before" "$after" >&2
du -sm "$SITE"/* | sort -rn | sed -n "1,12s/^/  /p" >&2
