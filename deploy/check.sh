#!/usr/bin/env bash
# What can be checked of deploy/ without a container engine or a cluster:
#   1. every YAML file parses, and the manifests say what docs/deploy.md promises
#      (node + the `yaml` package pinned in e2e/package-lock.json; see deploy/check-manifests.mjs);
#   2. config/sandbox.toml: `migrate` applies, then `serve` starts and /readyz answers;
#   3. config/production.toml: REFUSED while its key files are missing (exit non-zero, naming the
#      key), and ACCEPTED — `serve` starts, /readyz answers — once throw-away keys are at the
#      same names, with only the secrets directory and the database swapped for temp ones.
# The databases are temp SQLite files; nothing of the host is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}"
PAYGATE="${PAYGATE_BIN:-$CARGO_TARGET_DIR/debug/paygate}"
[ -x "$PAYGATE" ] || cargo build -p paygate-gateway --locked --quiet
[ -d e2e/node_modules/yaml ] || (cd e2e && npm ci --no-audit --no-fund --loglevel=error)

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# serve CONFIG NAME: starts paygate on a free port, waits for /readyz, stops it. Env is inherited.
serve_until_ready() {
  local config="$1" name="$2" out="$work/$2.out" err="$work/$2.err" base="" i
  "$PAYGATE" --config "$config" serve --listen 127.0.0.1:0 >"$out" 2>"$err" &
  server=$!
  for i in $(seq 1 100); do
    base="$(grep -o 'listening on http://[0-9.:]*' "$out" | head -1 | cut -d' ' -f3 || true)"
    if [ -n "$base" ] && curl -fsS "$base/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then break; fi
    sleep 0.2
  done
  if [ -n "$base" ] && curl -fsS "$base/readyz" | grep -q '"ready"' && curl -fsS "$base/healthz" | grep -q '"ok"'; then
    pass "$name: serve starts and /readyz, /healthz answer ($base)"
  else
    fail "$name: serve did not become ready"; cat "$out" "$err" >&2
  fi
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

if CONFIGMAP_TOML_OUT="$work/configmap.toml" node deploy/check-manifests.mjs; then
  pass "deploy/ YAML parses and the manifests are wired"
else
  fail "deploy/ YAML"
fi

if command -v systemd-analyze >/dev/null; then
  # verify wants the binary to exist at ExecStart's path: point it at the one built here.
  sed "s|/usr/local/bin/paygate|$PAYGATE|" deploy/systemd/paygate.service >"$work/paygate.service"
  if systemd-analyze verify "$work/paygate.service"; then pass "systemd unit verifies"; else fail "systemd unit"; fi
else
  echo "skip systemd-analyze (not installed)"
fi

# --- sandbox.toml: only the paths under /var/lib/paygate move to the temp dir.
export PAYGATE__DATABASE_URL="sqlite://$work/sandbox.db"
export PAYGATE__SANDBOX__KEYS_FILE="$work/paygate-sandbox.json"
export PAYGATE__SANDBOX__LISTEN="127.0.0.1:0"
if "$PAYGATE" --config deploy/config/sandbox.toml migrate; then pass "sandbox.toml: migrate"; else fail "sandbox.toml: migrate"; fi
serve_until_ready deploy/config/sandbox.toml sandbox
unset PAYGATE__SANDBOX__KEYS_FILE PAYGATE__SANDBOX__LISTEN

# --- production.toml as written: its secrets directory does not exist here.
export PAYGATE__DATABASE_URL="sqlite://$work/production.db"
if "$PAYGATE" --config deploy/config/production.toml migrate; then
  pass "production.toml: settings valid (migrate does not read key files)"
else
  fail "production.toml: migrate"
fi
if "$PAYGATE" --config deploy/config/production.toml serve --listen 127.0.0.1:0 >"$work/refused.out" 2>"$work/refused.err"; then
  fail "production.toml: serve started without its key files"
elif grep -q 'wechat\.[a-z]*\.api_key_file' "$work/refused.err"; then
  pass "production.toml: refused without key files, naming the key: $(cat "$work/refused.err")"
else
  fail "production.toml: refused for another reason: $(cat "$work/refused.err")"
fi

# --- production.toml with throw-away secrets at the same file names.
secrets="$work/secrets"
mkdir -m 700 "$secrets"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=1900000109" \
  -keyout "$secrets/wechat-apiclient-key.pem" -out "$secrets/wechat-apiclient-cert.pem" 2>/dev/null
openssl genrsa -out "$secrets/alipay-app-private-key.pem" 2048 2>/dev/null
openssl rsa -in "$secrets/alipay-app-private-key.pem" -pubout -out "$secrets/alipay-public-key.pem" 2>/dev/null
openssl rand -hex 16 >"$secrets/wechat-api-key" # 32 characters, like a v2 API key
openssl rand -hex 16 >"$secrets/wechat-app-secret"
openssl rand -hex 16 >"$secrets/wechat-miniapp-secret"
openssl rand -hex 32 >"$secrets/webhook-secret"
sed "s|/run/secrets/paygate/|$secrets/|" deploy/config/production.toml >"$work/production.toml"
serve_until_ready "$work/production.toml" production

# --- the Kubernetes ConfigMap's copy, with the same throw-away secrets.
sed "s|/run/secrets/paygate/|$secrets/|" "$work/configmap.toml" >"$work/configmap-local.toml"
serve_until_ready "$work/configmap-local.toml" configmap

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
