#!/usr/bin/env bash
# The replica scenarios behind docs/performance.md §5 (issue 17): N `paygate serve` replicas on
# one throwaway PostgreSQL database and the load tool's external sandbox, requests round robin
# over them, the default mix and a notify-heavy mix, closed loop and then at a fixed rate.
# Writes one JSON report per scenario into $OUT and prints a markdown row for each.
#
# Usage: PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres bench/replicas.sh [seconds] [replicas]
#   RATE_DEFAULT / RATE_NOTIFY: the offered rates of the open-loop runs (requests/s); set them a
#   little below what the closed-loop runs of the same mix reach. Without them only the
#   closed-loop runs are made; CLOSED_LOOP=0 leaves the closed-loop runs out.
# Build first: cargo build --release -p paygate-gateway -p paygate-loadgen
set -euo pipefail

bin="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}/release"
seconds="${1:-10}"
replicas="${2:-3}"
out="${OUT:-/tmp/paygate-replica-results}"
: "${PG_ADMIN_URL:?set PG_ADMIN_URL to a PostgreSQL URL that may create databases}"
mkdir -p "$out"

default_mix="alipay_app=1,wechat_mini=1,wechat_notify=1,alipay_notify=1,finance_list=1"
notify_mix="wechat_notify=3,alipay_notify=3,alipay_app=1,wechat_mini=1"

run() { # name, loadgen options…
  local name="$1"; shift
  local database
  database="paygate_replicas_$(date +%s%N)"
  psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $database"
  echo "== $name: --replicas $replicas $*" >&2
  local status=0
  "$bin/paygate-loadgen" --paygate "$bin/paygate" --database-url "${PG_ADMIN_URL%/*}/$database" \
    --replicas "$replicas" --external-sandbox --client-threads 2 --restarts 0 \
    --duration "$seconds" "$@" --json >"$out/$name.json" || status=$?
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE $database WITH (FORCE)"
  jq -r --arg name "$name" '
    def r(x): (x * 10 | round) / 10;
    "| `\($name)` | \(.pace) | \(.total.throughput_per_s | round) | \(r(.total.latency.p50_ms)) | \(r(.total.latency.p99_ms)) | \(r(.total.latency.max_ms)) | \(.total.errors) | \(.dropped) | \(.paid_check | if . == null then "—" else "\(.notifies.acknowledged) ack / \(.paid) paid / \(.notifies.sent) sent: \(if .holds then "holds" else "VIOLATED" end)" end) | \([.replicas[]? | .requests] | map(tostring) | join(" / ")) | \([.replicas[]? | (.gateway.cpu_s * 10 | round) / 10] | map(tostring) | join(" / ")) s (Σ \(r(.gateway.cpu_s)) s) | \([.replicas[]? | (.gateway.memory.peak_rss_kib / 1024 | round)] | map(tostring) | join(" / ")) MiB | \(r(.client_cpu_s)) s |"
  ' "$out/$name.json"
  return "$status"
}

echo "| scenario | pace | ok/s | p50 ms | p99 ms | max ms | errors | dropped | exactly once (acknowledged / paid / sent) | requests per replica | CPU per replica (sum) | peak RSS per replica | load tool CPU |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|"
if [[ "${CLOSED_LOOP:-1}" != 0 ]]; then
  run default-c32 --mix "$default_mix" --concurrency 32 --notify-orders "$((seconds * 1500))"
  run notify-c32 --mix "$notify_mix" --concurrency 32 --notify-orders "$((seconds * 2500))"
fi
if [[ -n "${RATE_DEFAULT:-}" ]]; then
  run default-rate --mix "$default_mix" --rate "$RATE_DEFAULT" --notify-orders "$((seconds * 1500))"
fi
if [[ -n "${RATE_NOTIFY:-}" ]]; then
  run notify-rate --mix "$notify_mix" --rate "$RATE_NOTIFY" --notify-orders "$((seconds * 2500))"
fi
