#!/usr/bin/env bash
# System packages the project needs from Debian: Redis (Argilla's job queue), Chromium
# (the annotation UI's browser tests) and PostgreSQL (Argilla's database for teams). Installs only what is missing; needs root for apt.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
# PostgreSQL's server binaries (initdb, postgres, pg_ctl) for `annotation serve --database postgresql`
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
