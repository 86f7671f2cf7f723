#!/usr/bin/env bash
# Sets up a fresh machine (Node 20 + npm are all it has) for blk:
#   bash scripts/bootstrap.sh           pnpm and the project's npm dependencies
#   bash scripts/bootstrap.sh --peers   also the real peers the interop tests use,
#                                       from Debian's packages (needs root + apt)
# It prints a few lines; what pnpm and the compilers print is in .tmp/bootstrap.log.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=9.15.9
PEERS=(uml-utilities user-mode-linux qemu-utils nbdkit libnbd-bin util-linux time nginx-light gnutls-bin python3-libnbd libqcow-utils nbd-client fuse3 chromium)

if [ "${1:-}" = "--peers" ]; then
  missing=()
  for pkg in "${PEERS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "bootstrap: peers already installed"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing peers: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
      || echo "bootstrap: WARNING: could not install ${missing[*]}; interop tests that need them will be skipped"
  else
    echo "bootstrap: WARNING: not root or no apt-get; interop tests needing ${missing[*]} will be skipped"
  fi
fi

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "bootstrap: installing pnpm $PNPM_VERSION"
  npm install -g --no-fund --no-audit "pnpm@$PNPM_VERSION" >/dev/null
fi
# pnpm's and the native build's output go to a log: the terminal gets one line (and the log's tail on failure).
mkdir -p .tmp
log=.tmp/bootstrap.log
if pnpm install --frozen-lockfile >"$log" 2>&1; then
  native=$(grep -o '@blk/native: [^(]*' "$log" | tail -1 || true)
  echo "bootstrap: dependencies installed${native:+; ${native% }} (log: $log)"
else
  tail -n 30 "$log" >&2
  echo "bootstrap: pnpm install FAILED (full log: $log)" >&2
  exit 1
fi
