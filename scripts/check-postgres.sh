#!/usr/bin/env bash
# Make sure PostgreSQL server binaries exist (the local primary + replica need initdb, pg_ctl,
# pg_basebackup, postgres). Installs them on Debian/Ubuntu when run as root; otherwise says what to do.
set -euo pipefail
for dir in "${PG_BIN:-}" /usr/lib/postgresql/15/bin /usr/lib/postgresql/16/bin /usr/lib/postgresql/17/bin; do
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_basebackup" ]; then
    exit 0
  fi
done
if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found: installing postgresql-15 ..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  exit 0
fi
cat >&2 <<'MSG'
PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, postgres) were not found.
Install them, e.g. on Debian/Ubuntu:  sudo apt-get install postgresql-15   (or: postgresql)
or point PG_BIN at their directory:    export PG_BIN=/usr/lib/postgresql/15/bin
MSG
exit 1
