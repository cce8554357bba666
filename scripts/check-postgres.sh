#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (the local primary + replica need initdb, pg_ctl, pg_basebackup,
# postgres) and PgBouncer (the pooled path the tests and `make run PGBOUNCER=1` use) exist. Installs them
# on Debian/Ubuntu when run as root; otherwise says what to do.
set -euo pipefail

have_postgres() {
  for dir in "${PG_BIN:-}" /usr/lib/postgresql/15/bin /usr/lib/postgresql/16/bin /usr/lib/postgresql/17/bin; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_basebackup" ]; then
      return 0
    fi
  done
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]
}

have_pgbouncer() {
  [ -n "${PGBOUNCER_BIN:-}" ] && [ -x "${PGBOUNCER_BIN}" ] && return 0
  [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1
}

apt_install() {
  # policy-rc.d: the pgbouncer package would start (and enable) its own service on port 6432; the local
  # tooling runs its own instance on a free port instead, so nothing may start here. Only if none exists.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || status=$?
  if [ "$created" = 1 ]; then rm -f "$policy"; fi
  return "${status:-0}"
}

missing=()
have_postgres || missing+=(postgres)
have_pgbouncer || missing+=(pgbouncer)
[ "${#missing[@]}" = 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  packages=()
  for item in "${missing[@]}"; do
    case "$item" in
      postgres) packages+=(postgresql-15) ;;
      pgbouncer) packages+=(pgbouncer) ;;
    esac
  done
  echo "installing ${packages[*]} ..." >&2
  if ! apt_install "${packages[@]}"; then
    # Not Debian 12: the distribution's default PostgreSQL major version.
    apt_install "${packages[@]/postgresql-15/postgresql}"
  fi
  exit 0
fi
cat >&2 <<'MSG'
PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, postgres) and/or PgBouncer were not found.
Install them, e.g. on Debian/Ubuntu:  sudo apt-get install postgresql-15 pgbouncer   (or: postgresql)
or point PG_BIN at the PostgreSQL binaries' directory (export PG_BIN=/usr/lib/postgresql/15/bin) and
PGBOUNCER_BIN at the pgbouncer binary.
MSG
exit 1
