#!/usr/bin/env bash
# Real-browser end-to-end tests of the Kura web UI: Debian's Chromium driven
# by playwright-core, run by Node's built-in test runner.
#
#   tests/browser/run.sh                       # the whole suite
#   tests/browser/run.sh tests/upload.test.mjs # some files
#
# KURA_BIN   the kura binary (default: ../../target/debug/kura from here)
# SHOTS_DIR  where screenshots go (default: /tmp/kura-browser-shots; old
#            PNGs there are removed first)
# CHROMIUM_BIN  the browser (default: /usr/bin/chromium, installed with
#            apt-get when missing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KURA_BIN="$(realpath -m "${KURA_BIN:-$here/../../target/debug/kura}")"
export KURA_BIN
export SHOTS_DIR="${SHOTS_DIR:-/tmp/kura-browser-shots}"
# Paths given as arguments are relative to the caller's directory.
args=()
for a in "$@"; do
  if [ -e "$a" ]; then args+=("$(realpath "$a")"); else args+=("$a"); fi
done
cd "$here"

if [ ! -x "$KURA_BIN" ]; then
  echo "run.sh: no kura binary at $KURA_BIN (cargo build -p kura, or set KURA_BIN)" >&2
  exit 1
fi

if [ -z "${CHROMIUM_BIN:-}" ] && [ ! -x /usr/bin/chromium ]; then
  echo "run.sh: installing chromium with apt-get"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi

mkdir -p "$SHOTS_DIR"
rm -f "$SHOTS_DIR"/*.png
echo "run.sh: kura binary: $KURA_BIN"
echo "run.sh: screenshots: $SHOTS_DIR"

status=0
if [ "${#args[@]}" -gt 0 ]; then
  node --test --test-concurrency=1 "${args[@]}" || status=$?
else
  npm test || status=$?
fi
echo "run.sh: screenshots: $SHOTS_DIR"
exit "$status"
