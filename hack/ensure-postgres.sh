#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, postgres) exist for tests and benchmarks.
# Idempotent and quiet: prints nothing when they are already installed.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

have_postgres && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL binaries not found. Install them, e.g.: sudo apt-get install -y postgresql" >&2
  echo "(tests that need PostgreSQL are skipped locally and fail when CI=true)" >&2
  exit 0
fi

echo "Installing Debian package postgresql (needed by the receiver's PostgreSQL tests)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
have_postgres || { echo "postgresql installed but initdb still not found" >&2; exit 1; }
