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
# - caches and build leftovers (`*.dist-info/RECORD` stays: `pip check`/importlib.metadata read it).
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

after="$(size "$SITE")"
printf 'slim-venv: site-packages %s MB -> %s MB; largest now:\n' "$before" "$after" >&2
du -sm "$SITE"/* | sort -rn | sed -n "1,12s/^/  /p" >&2
