#!/usr/bin/env bash
# System packages the project needs from Debian: Redis (Argilla's job queue), Chromium
# (the annotation UI's browser tests), PostgreSQL (Argilla's database for teams) and bubblewrap with
# Debian's python3 (the RL code reward's sandbox, align/rl/sandbox.py). Installs only what is missing; needs root for apt.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
# PostgreSQL's server binaries (initdb, postgres, pg_ctl) for `annotation serve --database postgresql`
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v setpriv >/dev/null || missing+=(util-linux)  # the sandbox starts bwrap as a slot uid with it
# The sandbox runs programs with the interpreter under /usr (bound read-only), not the venv's.
[ -x /usr/bin/python3 ] || missing+=(python3)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
