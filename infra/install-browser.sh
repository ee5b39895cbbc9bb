#!/usr/bin/env bash
# Headless Chromium for the browser tests (the HTML report and the MLflow UI): Debian's `chromium`
# package, driven from Node by playwright-core with this executable. Idempotent.
set -euo pipefail
say() { echo "[layerflow install] $*"; }
if command -v chromium >/dev/null 2>&1; then
  say "chromium: $(chromium --version 2>/dev/null | head -1)"
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo -n"
say "installing Debian's chromium (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
say "chromium: $(chromium --version 2>/dev/null | head -1)"
