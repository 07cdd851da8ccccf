#!/usr/bin/env bash
# Prints the JSON reports bench/load.sh wrote as the markdown rows of docs/performance.md §3.
#
# Usage: bench/table.sh [dir]      (default: $OUT or /tmp/paygate-load-results)
set -euo pipefail

out="${1:-${OUT:-/tmp/paygate-load-results}}"
for backend in sqlite postgres; do
  echo
  echo "| scenario ($backend) | ok/s | p50 ms | p90 ms | p99 ms | max ms | errors | peak RSS | gateway CPU / request | client CPU |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for name in alipay-app wechat-mini-embedded wechat-mini wechat-notify alipay-notify finance-list mixed; do
    file="$out/$name-$backend.json"
    [[ -f "$file" ]] || continue
    jq -r --arg name "$name" '
      def r(x): (x * 10 | round) / 10;
      "| `\($name)` | \(.total.throughput_per_s | round) | \(r(.total.latency.p50_ms)) | \(r(.total.latency.p90_ms)) | \(r(.total.latency.p99_ms)) | \(r(.total.latency.max_ms)) | \(.total.errors) | \((.gateway.memory.peak_rss_kib / 1024) | round) MiB | \((.gateway.cpu_s * 1e6 / .total.requests) | round) µs | \((.client_cpu_s * 100 | round) / 100) s |"
    ' "$file"
  done
done
