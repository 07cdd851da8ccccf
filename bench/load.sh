#!/usr/bin/env bash
# The load scenarios behind docs/performance.md, one after another, each on a fresh gateway
# started by paygate-loadgen (SQLite temp file, or a throwaway PostgreSQL database when
# PG_ADMIN_URL is set). Writes one JSON report per scenario into $OUT (default ./load-results).
#
# Usage: bench/load.sh [seconds]      (build first: cargo build --release -p paygate-gateway -p paygate-loadgen)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}/release"
seconds="${1:-10}"
out="${OUT:-/tmp/paygate-load-results}"
mkdir -p "$out"

run() { # name, database (sqlite|postgres), loadgen options…
  local name="$1" backend="$2"; shift 2
  local db_args=() database=""
  if [[ "$backend" == postgres ]]; then
    [[ -n "${PG_ADMIN_URL:-}" ]] || return 0
    database="paygate_load_$(date +%s%N)"
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $database"
    db_args=(--database-url "${PG_ADMIN_URL%/*}/$database")
  fi
  echo "== $name ($backend): $*"
  "$bin/paygate-loadgen" --paygate "$bin/paygate" "${db_args[@]}" --duration "$seconds" "$@" \
    --json >"$out/$name-$backend.json"
  jq -r '"  ok/s \(.total.throughput_per_s|floor)  p50 \(.total.latency.p50_ms) ms  p99 \(.total.latency.p99_ms) ms  errors \(.total.errors)  repeated notifies \(.repeated_notifies)  RSS peak \((.gateway.memory.peak_rss_kib/1024)|floor) MiB  gateway CPU \(.gateway.cpu_s) s  client CPU \(.client_cpu_s) s"' \
    "$out/$name-$backend.json"
  if [[ -n "$database" ]]; then
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE $database WITH (FORCE)"
  fi
}

# Notify scenarios prepare 16,000 orders per second of run: SQLite took over 10,000 genuine
# notifies/s on 2026-12-03, and a run that runs out sends duplicates (cheaper) for its tail.
for backend in sqlite postgres; do
  run alipay-app "$backend" --mix alipay_app --concurrency 32 --restarts 3
  run wechat-mini-embedded "$backend" --mix wechat_mini --concurrency 32 --restarts 0
  run wechat-mini "$backend" --mix wechat_mini --concurrency 32 --restarts 0 --external-sandbox --client-threads 2
  run wechat-notify "$backend" --mix wechat_notify --concurrency 32 --restarts 0 --external-sandbox \
    --notify-orders "$((seconds * 16000))"
  run alipay-notify "$backend" --mix alipay_notify --concurrency 32 --restarts 0 --external-sandbox \
    --notify-orders "$((seconds * 16000))"
  run finance-list "$backend" --mix finance_list --concurrency 32 --restarts 0
  run mixed "$backend" --concurrency 32 --restarts 0 --external-sandbox --notify-orders "$((seconds * 1500))"
done
