#!/usr/bin/env bash
# Runs the example merchant backends (examples/python, examples/node) against a freshly started
# `paygate serve`: embedded sandbox, a temp SQLite database, and one webhook endpoint per example
# on every sandbox app. CI runs this (.ci/run), so the examples cannot rot.
#
#   bash examples/run.sh             # both
#   bash examples/run.sh python      # one
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}"
PAYGATE="${PAYGATE_BIN:-$CARGO_TARGET_DIR/debug/paygate}"
[ -x "$PAYGATE" ] || cargo build -p paygate-gateway --locked --quiet
languages=("${@:-python node}")
read -r -a languages <<<"${languages[*]}"

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret="whsec_$(openssl rand -hex 16)"
python_port="$(free_port)"
node_port="$(free_port)"

# Each example's receiver is an endpoint of every app the sandbox configures.
{
  echo "database_url = \"sqlite://$work/paygate.db\""
  echo "[sandbox]"
  echo "enabled = true"
  echo "listen = \"127.0.0.1:0\""
  echo "keys_file = \"$work/paygate-sandbox.json\""
  echo "[webhooks]"
  echo "poll_interval_ms = 100"
  echo "initial_backoff_ms = 500"
  for app in sandbox sandbox-v3; do
    for port in "$python_port" "$node_port"; do
      echo "[[webhooks.endpoints.\"$app\"]]"
      echo "url = \"http://127.0.0.1:$port/paygate/events\""
      echo "secret = \"$secret\""
    done
  done
} >"$work/paygate.toml"

"$PAYGATE" --config "$work/paygate.toml" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 1 150); do
  grep -q 'finance key:' "$work/serve.out" 2>/dev/null && break
  sleep 0.2
done
export PAYGATE_BASE PAYGATE_SANDBOX PAYGATE_KEY PAYGATE_WEBHOOK_SECRET="$secret"
PAYGATE_BASE="$(grep -o 'listening on http://[0-9.:]*' "$work/serve.out" | cut -d' ' -f3)"
PAYGATE_SANDBOX="$(grep -o 'embedded sandbox[^:]*: http://[0-9.:]*' "$work/serve.out" | grep -o 'http://.*')"
PAYGATE_KEY="$(grep -o 'pgm_[A-Za-z0-9]*' "$work/serve.out" | head -1)"
if [ -z "$PAYGATE_BASE" ] || [ -z "$PAYGATE_KEY" ]; then
  echo "paygate did not start:" >&2
  cat "$work/serve.out" "$work/serve.err" >&2
  exit 1
fi

failed=0
for language in "${languages[@]}"; do
  case "$language" in
    python) command=(python3 examples/python/merchant.py) port="$python_port" ;;
    node) command=(node examples/node/merchant.js) port="$node_port" ;;
    *) echo "unknown example $language" >&2; exit 2 ;;
  esac
  if WEBHOOK_LISTEN="127.0.0.1:$port" timeout 120 "${command[@]}"; then
    echo "ok   examples/$language"
  else
    echo "FAIL examples/$language"
    failed=$((failed + 1))
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "--- paygate's log (last 40 lines)" >&2
  tail -40 "$work/serve.err" >&2
fi
[ "$failed" -eq 0 ]
