#!/usr/bin/env bash
# Runs every ```sh block of README.md, docs/sandbox.md, docs/integrate.md, docs/operations.md,
# docs/security.md and docs/deploy.md, in order, in one shell per document, against a freshly
# started sandbox gateway on a temp SQLite database and, for the PostgreSQL backup commands,
# two scratch databases on the local PostgreSQL (dropped afterwards). Blocks fenced as ```text
# are shown to readers but not run (kubectl, systemctl…). Then it runs the start banner's
# walkthrough exactly as `paygate serve` printed it.
# Translated pages (X.zh-CN.md) must show X.md's commands (deploy/check-doc-translations.py), and
# those of the documents above then run too, with `--lang zh-CN`: a second run of this script on a
# gateway of their own, since they create the same order numbers as the English pages.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

# The documents whose commands run, in order; with `--lang L`, their translations X.L.md instead.
docs=(README.md docs/sandbox.md docs/integrate.md docs/operations.md docs/security.md docs/deploy.md)
translations=(zh-CN)
lang=""
if [ "${1:-}" = "--lang" ]; then lang="${2:?--lang needs a language, e.g. zh-CN}"; fi
# The translated documents of one language that exist (the others have no commands to run).
translated_docs() {
  for doc in "${docs[@]}"; do
    if [ -f "${doc%.md}.$1.md" ]; then echo "${doc%.md}.$1.md"; fi
  done
}
if [ -n "$lang" ]; then
  mapfile -t docs < <(translated_docs "$lang")
  if [ "${#docs[@]}" -eq 0 ]; then echo "--   no $lang page of a document with commands"; exit 0; fi
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}"
PAYGATE="${PAYGATE_BIN:-$CARGO_TARGET_DIR/debug/paygate}"
[ -x "$PAYGATE" ] || cargo build -p paygate-gateway --locked --quiet

work="$(mktemp -d)"
server=""
pg_admin="${PAYGATE_CI_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_source="paygate_doccheck_src_$$"
pg_target="paygate_doccheck_dst_$$"
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $pg_source" -c "DROP DATABASE IF EXISTS $pg_target" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# `paygate` on PATH, as the docs write it; the docs' relative paths (deploy/…) resolve in $work.
mkdir -p "$work/bin"
ln -s "$PAYGATE" "$work/bin/paygate"
ln -s "$repo/deploy" "$work/deploy"
export PATH="$work/bin:$PATH"

export SQLITE_DB="$work/paygate.db"
export PAYGATE__DATABASE_URL="sqlite://$SQLITE_DB"
(cd "$work" && exec paygate serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err") &
server=$!
for _ in $(seq 1 100); do
  grep -q 'finance key:' "$work/serve.out" 2>/dev/null && break
  sleep 0.2
done
BASE="$(grep -o 'listening on http://[0-9.:]*' "$work/serve.out" | cut -d' ' -f3)"
SANDBOX="$(grep -o 'embedded sandbox[^:]*: http://[0-9.:]*' "$work/serve.out" | grep -o 'http://.*')"
export SANDBOX
M="$(grep -o 'pgm_[A-Za-z0-9]*' "$work/serve.out" | head -1)"
F="$(grep -o 'pgf_[A-Za-z0-9]*' "$work/serve.out" | head -1)"
export BASE M F
export PAYGATE_LOG="$work/serve.err"
[ -n "$BASE" ] && [ -n "$F" ] || { cat "$work/serve.out" "$work/serve.err" >&2; exit 1; }

# One paid order, so the anomalies, callbacks and events commands have something to show.
ORDER_ID="$(curl -fsS -H "Authorization: Bearer $M" -H 'Content-Type: application/json' \
  -d '{"provider":"wechat","channel":"native","out_trade_no":"docs_1","amount":1,"subject":"docs","client_ip":"203.0.113.7"}' \
  "$BASE/v1/orders" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
export ORDER_ID
curl -fsS -H 'Content-Type: application/json' -d '{"provider":"wechat","out_trade_no":"docs_1"}' "$SANDBOX/sandbox/pay" >/dev/null
for _ in $(seq 1 100); do
  curl -fsS -H "Authorization: Bearer $F" "$BASE/v1/orders/$ORDER_ID" | grep -q '"status":"paid"' && break
  sleep 0.2
done

# A certificate for the expiry commands.
export CERT="$work/apiclient_cert.pem"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=1900000109" \
  -keyout "$work/apiclient_key.pem" -out "$CERT" 2>/dev/null

# PostgreSQL: a migrated source database and an empty target for the restore.
psql "$pg_admin" -qc "CREATE DATABASE $pg_source" -c "CREATE DATABASE $pg_target" >/dev/null
export PG_URL="${pg_admin%/*}/$pg_source" RESTORE_URL="${pg_admin%/*}/$pg_target"
PAYGATE__DATABASE_URL="$PG_URL" paygate migrate >/dev/null

passed=0
failed=0
for doc in "${docs[@]}"; do
  [ -f "$doc" ] || { echo "FAIL $doc is missing"; failed=$((failed + 1)); continue; }
  script="$work/$(basename "$doc" .md).sh"
  awk '/^```sh$/ { inside = 1; next } /^```/ { inside = 0 } inside' "$doc" >"$script"
  blocks="$(grep -c '^```sh$' "$doc" || true)"
  if [ "$blocks" -eq 0 ]; then echo "--   $doc has no runnable blocks"; continue; fi
  echo "==   $doc: $blocks block(s)"
  if (cd "$work" && bash -euo pipefail -x "$script") >"$work/out.txt" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $doc"
    if [ -n "${VERBOSE:-}" ]; then sed 's/^/     /' "$work/out.txt"; fi
  else
    failed=$((failed + 1))
    echo "FAIL $doc"
    tail -30 "$work/out.txt" | sed 's/^/     /'
  fi
done
if [ -n "$lang" ]; then
  # A translated run ends here: the start banner speaks English only, and the English run (the
  # caller) checks the translations.
  echo "$passed passed, $failed failed"
  exit $((failed > 0))
fi
# The start banner's walkthrough, as printed (real keys and URLs): it must run as shown. It reuses
# the README's order numbers, so it runs after README.md; its APIv3 order must end up paid.
banner="$work/banner.sh"
sed -n '/^Try it/,/^The sandbox/p' "$work/serve.out" | grep '^  ' | sed 's/^  //' >"$banner"
if (cd "$work" && bash -euo pipefail -x "$banner") >"$work/out.txt" 2>&1 &&
  for _ in $(seq 1 50); do
    curl -fsS -H "Authorization: Bearer $M" "$BASE/v1/orders?out_trade_no=demo_v3_1" | grep -q '"status":"paid"' && break
    sleep 0.2
  done && curl -fsS -H "Authorization: Bearer $M" "$BASE/v1/orders?out_trade_no=demo_v3_1" | grep -q '"status":"paid"'; then
  passed=$((passed + 1))
  echo "ok   the start banner's walkthrough"
else
  failed=$((failed + 1))
  echo "FAIL the start banner's walkthrough"
  tail -30 "$work/out.txt" | sed 's/^/     /'
fi
# The translations: the same commands as their English page, then run like it.
if ! python3 deploy/check-doc-translations.test.py >"$work/out.txt" 2>&1; then
  failed=$((failed + 1))
  echo "FAIL deploy/check-doc-translations.test.py (the translation check's own tests)"
  tail -30 "$work/out.txt" | sed 's/^/     /'
elif python3 deploy/check-doc-translations.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi
for translation in "${translations[@]}"; do
  [ -n "$(translated_docs "$translation")" ] || continue
  echo "==   the $translation pages, on a fresh gateway"
  if bash "$0" --lang "$translation"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
