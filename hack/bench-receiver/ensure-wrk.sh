#!/usr/bin/env bash
# Makes sure wrk (the HTTP load generator make bench-receiver drives the saturation phase with) is
# installed. Idempotent and quiet: prints nothing when it is.
set -euo pipefail

command -v wrk >/dev/null 2>&1 && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || {
    echo "wrk not found: install it (apt-get install -y wrk) or run go run ./hack/bench-receiver -load go" >&2
    exit 0 # bench-receiver says so too, unless it runs with -load go
  }
  sudo=sudo
fi
echo "Installing Debian package wrk (load generator for make bench-receiver)..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
command -v wrk >/dev/null 2>&1 || { echo "wrk installed but not on PATH" >&2; exit 1; }
