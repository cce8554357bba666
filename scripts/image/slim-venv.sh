#!/usr/bin/env bash
# Drop from an image's venv what the runtime never imports, and print what the venv holds.
#
#   scripts/image/slim-venv.sh VENV_DIR      (INSTALL_MODEL from the environment, as build-venv.sh)
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

# No model in this image (INSTALL_MODEL=false, e.g. entity-stats): the function never imports spaCy
# (tests/image checks it serves without it), so spaCy goes, with every distribution that only spaCy's
# tree required (numpy, thinc, blis, pydantic, typer, rich, ...). Extras are not edges, so psycopg's
# binary/pool extras count as top-level installs and stay.
case "$(printf '%s' "${INSTALL_MODEL:-true}" | tr '[:upper:]' '[:lower:]')" in
  0|false|no|off)
    # shellcheck disable=SC2046 # one distribution name per word
    set -- $("$VENV/bin/python" - <<'PYORPHANS'
import importlib.metadata as md
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon

dependents = {}
names = set()
for dist in md.distributions():
    name = canon(dist.metadata["Name"])
    names.add(name)
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and "extra" in str(req.marker):
            continue
        dependents.setdefault(canon(req.name), set()).add(name)
remove = {"spacy"} & names
changed = True
while changed:
    changed = False
    for name in sorted(names - remove):
        users = dependents.get(name, set()) & names
        if users and users <= remove:
            remove.add(name)
            changed = True
print(" ".join(sorted(remove)))
PYORPHANS
)
    if [ $# -gt 0 ]; then
      printf 'slim-venv: no model in this image: removing spaCy and what only it needs: %s\n' "$*" >&2
      "$VENV/bin/python" -m pip uninstall --quiet --yes "$@" >&2
    fi
    ;;
esac

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
