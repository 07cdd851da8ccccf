#!/usr/bin/env bash
# Where the box's idle time goes during a notify run (issue 19): starts the load tool on a
# fresh SQLite gateway (release build, external sandbox), waits until the notify phase has
# begun (the first callback row is in the database), records every context switch and wake-up
# of the whole box with kernel call chains for a few seconds (`perf sched record -g -a`), and
# prints bench/idle_attribution.py's report for the gateway's threads.
#
# Usage: bench/idle-profile.sh [mix] [concurrency] [seconds recorded]
#        (defaults: alipay_notify 32 3; build first: cargo build --release -p paygate-gateway
#        -p paygate-loadgen; needs perf, python3 and root or perf_event_paranoid <= -1)
# Env:   CARGO_TARGET_DIR (default ~/.cache/paygate-target), KEEP=1 (keep the trace's directory)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}/release"
mix="${1:-alipay_notify}"
concurrency="${2:-32}"
record_seconds="${3:-3}"

die() { echo "idle-profile: $*" >&2; exit 1; }
for tool in perf python3 jq; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
[[ -x "$bin/paygate" && -x "$bin/paygate-loadgen" ]] || die "build the release binaries first"

work="$(mktemp -d -t paygate-idle-profile.XXXXXX)"
cleanup() { if [[ "${KEEP:-0}" == 1 ]]; then echo "# kept $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT

# Long enough to wait for the notify phase and record through its middle; the orders are
# prepared before the clock starts, 16,000 per second of run as in bench/load.sh.
duration=$((record_seconds + 12))
"$bin/paygate-loadgen" --paygate "$bin/paygate" --external-sandbox --mix "$mix" \
  --duration "$duration" --concurrency "$concurrency" --restarts 0 \
  --notify-orders "$((duration * 16000))" --json >"$work/report.json" 2>"$work/loadgen.log" &
loadgen=$!

gateway=""
for _ in $(seq 600); do
  gateway="$(pgrep -f "^$bin/paygate .*serve" | head -1 || true)"
  [[ -n "$gateway" ]] && break
  kill -0 "$loadgen" 2>/dev/null || { cat "$work/loadgen.log" >&2; die "the load tool exited"; }
  sleep 0.2
done
[[ -n "$gateway" ]] || die "no gateway started within 120 s"
database="$(readlink "/proc/$gateway/cwd")/paygate.db"
callbacks() {
  python3 - "$database" <<'EOF' 2>/dev/null || echo 0
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=1)
print(db.execute("SELECT count(*) FROM callbacks").fetchone()[0])
EOF
}
for _ in $(seq 3000); do
  [[ "$(callbacks)" -gt 0 ]] && break
  kill -0 "$loadgen" 2>/dev/null || die "the load tool ended before any notify was stored"
  sleep 0.1
done
sleep 2 # past the notify phase's first second, when the connections are still ramping up

echo "# $mix at $concurrency in flight; gateway pid $gateway; $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%Y-%m-%d %H:%M UTC')"
perf sched record -g -a -o "$work/sched.data" -- sleep "$record_seconds" 2>"$work/perf.log"
wait "$loadgen" || die "the load tool failed: $(tail -3 "$work/loadgen.log")"
jq -r '"# whole run: \(.total.throughput_per_s|floor) ok/s, p99 \(.total.latency.p99_ms) ms, errors \(.total.errors)"' "$work/report.json"

perf script -i "$work/sched.data" -F comm,tid,cpu,time,event,trace,ip,sym 2>/dev/null >"$work/sched.txt"
python3 "$root/bench/idle_attribution.py" "$work/sched.txt" \
  paygate-store-w "actix-server wo" paygate-store-c
