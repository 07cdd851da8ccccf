#!/usr/bin/env bash
# Browser test of the finance console: Debian Chromium + playwright-core against a freshly
# started `paygate` (embedded sandbox, temp SQLite), in English and in Chinese. Saves
# docs/img/console-*.png.
# Exits non-zero on failure; the last line is "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

# 1. The browser comes from Debian (a test tool's own browser download cannot work offline).
if [ ! -x "$CHROMIUM" ]; then
  echo "installing Debian's chromium (needs root, as in CI)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
"$CHROMIUM" --version
# Chinese glyphs for the zh-CN screenshots (the checks read text, not pixels, and pass without).
if command -v fc-list >/dev/null && [ -z "$(fc-list :lang=zh)" ]; then
  echo "installing a Chinese font (fonts-wqy-microhei, 1.6 MB)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq fonts-wqy-microhei >/dev/null
fi

# 2. playwright-core only: it drives a browser but never downloads one.
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi

# 3. The binary under test; a no-op when the test step before has built it.
cargo build -p paygate-gateway --locked --quiet
export PAYGATE_BIN="$CARGO_TARGET_DIR/debug/paygate"
export CHROMIUM

# 4–6. Orders, sign-in, filters, order detail, CSV, chart, anomalies, reconciliation, screenshots.
node console.test.mjs
