#!/usr/bin/env bash
# paygate against the hand-glued peer (../shared/perf/peer-node: Fastify + alipay-sdk +
# better-sqlite3, 2 cluster workers), side by side in one command on this box (issue 19):
#
#   1. installs the peer's pinned npm packages into a temp dir (better-sqlite3 is compiled from
#      source against the local Node headers: its prebuilt binaries and nodejs.org's header
#      tarball are downloads this box cannot make);
#   2. starts `paygate serve` (release build, temp SQLite, embedded sandbox) and the peer,
#      giving the peer the sandbox's Alipay keys, app id and seller id and paygate's merchant
#      key as its token, so one request body is valid for both and one notify body verifies on
#      both;
#   3. checks one create and one notify on each, then alternates the systems (the first one
#      swaps every repetition) over REPS repetitions of SECONDS s per scenario, with one load
#      client for both: wrk, 1 thread × CONNECTIONS connections, the peer's create.lua and
#      notify.lua. Notify orders are created and their notifies signed before the clock starts
#      (bench/side-by-side-prep.cjs), each notify is sent once;
#   4. prints per system and scenario the medians of ok/s, p50/p99, server CPU per operation
#      (utime+stime of the server processes, Node workers included, from /proc/<pid>/stat),
#      box idle time (/proc/stat), peak RSS (VmHWM, summed over processes) and the ratios
#      paygate/peer; and `openssl speed rsa2048` once, with the RSA-bound create limit
#      (cores × sign/s) and each system's fraction of it.
#
# Exits non-zero if a system does not start, the check fails, or any request failed.
#
# Usage: bench/side-by-side.sh [reps] [seconds]
#        (build first: cargo build --release -p paygate-gateway; needs wrk, node, npm, openssl,
#        jq, curl and a C++ toolchain for better-sqlite3)
# Env:   CARGO_TARGET_DIR (default ~/.cache/paygate-target), CONNECTIONS (32),
#        PEER_SRC (default ../shared/perf/peer-node beside the workspace),
#        PEER_MODULES (an existing node_modules of the peer's package.json, to skip npm install),
#        NOTIFY_GUESS (12000: ok/s a system is assumed to reach before its first notify run; only
#        sizes how many orders are seeded), RSA_SECONDS (3), KEEP=1 (keep the temp dir).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}/release/paygate"
reps="${1:-${REPS:-5}}"
seconds="${2:-${SECONDS_PER_RUN:-10}}"
connections="${CONNECTIONS:-32}"
peer_src="${PEER_SRC:-$root/../shared/perf/peer-node}"
notify_guess="${NOTIFY_GUESS:-12000}"
prep="$root/bench/side-by-side-prep.cjs"
hz="$(getconf CLK_TCK)"

die() { echo "side-by-side: $*" >&2; exit 1; }
for tool in wrk node npm openssl jq curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed (wrk: apt-get install wrk)"
done
[[ -x "$bin" ]] || die "no $bin (cargo build --release -p paygate-gateway)"
[[ -f "$peer_src/server.js" ]] || die "no peer in $peer_src (set PEER_SRC)"
[[ "$reps" =~ ^[1-9][0-9]*$ && "$seconds" =~ ^[1-9][0-9]*$ ]] || die "reps and seconds are positive integers"

work="$(mktemp -d -t paygate-side-by-side.XXXXXX)"
pids=()
cleanup() {
  # The peer's primary stops its workers on SIGTERM; paygate drains and exits.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP:-0}" == 1 ]]; then echo "# kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_ready() { # url, pid, log
  for _ in $(seq 600); do
    curl -sf -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "$1: the server exited"; }
    sleep 0.1
  done
  cat "$3" >&2; die "$1 did not answer within 60 s"
}

echo "# paygate side by side with the Node peer — $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $(openssl version); node $(node --version); $("$bin" --version 2>/dev/null || echo paygate); wrk -t1 -c$connections, $reps × ${seconds} s per system and scenario"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- the peer's packages -------------------------------------------------------------------
mkdir -p "$work/peer"
cp "$peer_src"/server.js "$peer_src"/package.json "$peer_src"/*.lua "$work/peer/"
chmod u+w "$work/peer"/*
if [[ -n "${PEER_MODULES:-}" ]]; then
  ln -s "$(cd "$PEER_MODULES" && pwd)" "$work/peer/node_modules"
else
  # node-gyp wants the headers of the running Node: the Debian/NodeSource package ships them
  # under <prefix>/include/node, so point it there instead of at nodejs.org.
  node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  [[ -f "$node_prefix/include/node/node.h" ]] || die "no Node headers in $node_prefix/include/node"
  echo "# npm install (better-sqlite3 from source against $node_prefix/include/node; takes minutes)"
  (cd "$work/peer" && npm_config_nodedir="$node_prefix" npm_config_build_from_source=true \
      npm install --no-audit --no-fund --omit=dev >"$work/npm-install.log" 2>&1) \
    || { tail -30 "$work/npm-install.log" >&2; die "npm install failed"; }
fi
(cd "$work/peer" && node -e 'new (require("better-sqlite3"))(":memory:").close(); require("alipay-sdk"); require("fastify")') \
  || die "the peer's packages do not load"

# --- paygate -----------------------------------------------------------------------------
mkdir -p "$work/paygate"
export PAYGATE__DATABASE_URL="sqlite://$work/paygate/paygate.db"
export PAYGATE__SANDBOX__KEYS_FILE="$work/paygate/sandbox-keys.json"
export RUST_LOG="${RUST_LOG:-warn}"
token="$(cd "$work/paygate" && "$bin" keys create --role merchant --name side-by-side 2>/dev/null)" \
  || die "paygate keys create failed"
pg_port="$(free_port)"
(cd "$work/paygate" && exec "$bin" serve --listen "127.0.0.1:$pg_port" </dev/null >/dev/null 2>"$work/paygate.log") &
pg_pid=$!
pids+=("$pg_pid")
wait_ready "http://127.0.0.1:$pg_port/readyz" "$pg_pid" "$work/paygate.log"

# The sandbox's keys (PKCS#8, base64 DER) as the PEM files the peer reads.
keys="$work/keys"
mkdir -p "$keys"
sandbox_field() { jq -er ".$1" "$PAYGATE__SANDBOX__KEYS_FILE" || die "no $1 in the sandbox's keys file"; }
pem() { local der; der="$(sandbox_field "$1")"; printf -- '-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n' "$(fold -w 64 <<<"$der")"; }
pem alipay_platform_private_key >"$keys/alipay_private_pkcs8.pem"
pem alipay_app_private_key >"$keys/app_private_pkcs8.pem"
openssl rsa -in "$keys/app_private_pkcs8.pem" -traditional -out "$keys/app_private_pkcs1.pem" 2>/dev/null \
  && openssl rsa -in "$keys/alipay_private_pkcs8.pem" -pubout -out "$keys/alipay_public.pem" 2>/dev/null \
  || die "the sandbox's Alipay keys are not PKCS#8 RSA keys"
app_id="$(sandbox_field alipay_app_id)"
seller_id="$(sandbox_field alipay_seller_id)"

# --- the peer ------------------------------------------------------------------------------
peer_port="$(free_port)"
(cd "$work/peer" && KEYS_DIR="$keys" ALIPAY_APP_ID="$app_id" ALIPAY_SELLER_ID="$seller_id" \
   MERCHANT_TOKEN="$token" PORT="$peer_port" DB_PATH="$work/peer/peer.db" \
   exec node server.js </dev/null >"$work/peer.log" 2>&1) &
peer_pid=$!
pids+=("$peer_pid")
wait_ready "http://127.0.0.1:$peer_port/healthz" "$peer_pid" "$work/peer.log"
for _ in $(seq 100); do grep -q 'peer listening' "$work/peer.log" && break; sleep 0.1; done
grep -q 'peer listening' "$work/peer.log" || { cat "$work/peer.log" >&2; die "the peer's workers did not all start"; }

declare -A url=([paygate]="http://127.0.0.1:$pg_port" [peer]="http://127.0.0.1:$peer_port")
declare -A npath=([paygate]="/notify/alipay/sandbox" [peer]="/notify/alipay")

# The server processes of a system: paygate is one process (its threads are in its stat);
# the peer is the cluster primary and its workers.
server_pids() {
  if [[ "$1" == paygate ]]; then echo "$pg_pid"; else echo "$peer_pid" $(pgrep -P "$peer_pid" || true); fi
}
cpu_ticks() { # utime + stime (fields 14, 15), summed; the name is cut off first, it may hold spaces
  local total=0 pid rest
  for pid in $(server_pids "$1"); do
    rest="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$rest")))
  done
  echo "$total"
}
peak_rss_kib() {
  local total=0 pid
  for pid in $(server_pids "$1"); do
    total=$((total + $(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
box_ticks() { awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

# --- one create and one notify on each, before any figure is taken ------------------------
bodies="$work/notifies.txt"
: >"$bodies"
signed=0
declare -A seeded=([paygate]=0 [peer]=0) offset=([paygate]=0 [peer]=0) guess=([paygate]="$notify_guess" [peer]="$notify_guess")
ensure_orders() { # system, count: orders notify_0 … notify_{count-1} exist there and their notifies are signed
  if ((signed < $2)); then
    node "$prep" sign "$keys/alipay_private_pkcs8.pem" "$app_id" "$seller_id" notify_ "$signed" "$2" >>"$bodies" \
      || die "signing notifies failed"
    signed=$2
  fi
  if ((seeded[$1] < $2)); then
    node "$prep" seed "${url[$1]}" "$token" notify_ "${seeded[$1]}" "$2" || die "$1: seeding orders failed"
    seeded[$1]=$2
  fi
}
ensure_orders paygate 1
ensure_orders peer 1
for sys in paygate peer; do
  answer="$(curl -s -X POST "${url[$sys]}${npath[$sys]}" \
    -H 'Content-Type: application/x-www-form-urlencoded; charset=utf-8' --data-binary "$(head -1 "$bodies")")"
  [[ "$answer" == success ]] || die "$sys refused the check notify: $answer"
  offset[$sys]=1
done

# --- the alternating runs ------------------------------------------------------------------
runs="$work/runs.tsv"
echo -e "rep\tscenario\tsystem\tok_s\tp50_ms\tp99_ms\tcpu_us_per_op\tidle_pct\tfailed\trepeats" >"$runs"
failed_total=0
repeated_total=0
declare -A acknowledged=([paygate]=1 [peer]=1) # the check notify
run() { # rep, scenario, system
  local rep="$1" scenario="$2" sys="$3" out="$work/wrk-$1-$2-$3.txt" cpu0 cpu1 idle0 all0 idle1 all1
  local -a env_args script_args
  local target="${url[$sys]}"
  if [[ "$scenario" == create ]]; then
    env_args=(TOKEN="$token" PREFIX="create${rep}_")
    script_args=(-s "$work/peer/create.lua")
    target="$target/v1/orders" # create.lua sends to the URL's path
  else
    # Enough orders that no notify repeats: 1.3 × the best rate seen so far, plus a margin.
    local need=$((offset[$sys] + (guess[$sys] * seconds * 13) / 10 + 1000))
    ensure_orders "$sys" "$need"
    env_args=(BODIES="$bodies" OFFSET="${offset[$sys]}" NPATH="${npath[$sys]}")
    script_args=(-s "$work/peer/notify.lua")
  fi
  sleep 1 # let the seeding's writes (WAL checkpoints) settle before the clock starts
  cpu0="$(cpu_ticks "$sys")"
  read -r idle0 all0 < <(box_ticks)
  env "${env_args[@]}" wrk -t1 -c"$connections" -d"${seconds}s" "${script_args[@]}" "$target" >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk failed on $sys"; }
  read -r idle1 all1 < <(box_ticks)
  cpu1="$(cpu_ticks "$sys")"
  local result
  result="$(sed -n 's/^RESULT //p' "$out")"
  [[ -n "$result" ]] || { cat "$out" >&2; die "no RESULT line from wrk on $sys"; }
  local ok failed repeats
  ok="$(jq .ok <<<"$result")"
  failed="$(jq '.bad + .err_connect + .err_read + .err_write + .err_status + .err_timeout' <<<"$result")"
  repeats="$(jq '.exhausted // 0' <<<"$result")"
  failed_total=$((failed_total + failed))
  repeated_total=$((repeated_total + repeats))
  ((failed == 0)) || { echo "side-by-side: $sys $scenario rep $rep: $failed failed requests" >&2; grep -i unexpected "$out" | head -3 >&2 || true; }
  if [[ "$scenario" == notify ]]; then
    offset[$sys]=$((offset[$sys] + $(jq .sent <<<"$result")))
    acknowledged[$sys]=$((acknowledged[$sys] + ok))
    local rate=$((ok / seconds))
    ((rate <= guess[$sys])) || guess[$sys]=$rate
  fi
  jq -r --arg rep "$rep" --arg scenario "$scenario" --arg sys "$sys" \
     --argjson cpu "$((cpu1 - cpu0))" --argjson hz "$hz" \
     --argjson idle "$((idle1 - idle0))" --argjson all "$((all1 - all0))" \
     --argjson failed "$failed" --argjson repeats "$repeats" '
    [$rep, $scenario, $sys,
     (.ok / (.duration_us / 1e6) | round),
     (.p50_us / 1000 * 100 | round / 100), (.p99_us / 1000 * 100 | round / 100),
     (if .ok > 0 then ($cpu * 1e6 / $hz / .ok | round) else 0 end),
     (if $all > 0 then ($idle * 1000 / $all | round / 10) else 0 end),
     $failed, $repeats] | @tsv' <<<"$result" >>"$runs"
  tail -1 "$runs" | awk -F'\t' '{ printf "  rep %s %-6s %-7s %6d ok/s  p50 %6.2f ms  p99 %6.2f ms  CPU %5d µs/op  idle %5.1f %%  failed %d\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
}

for ((rep = 1; rep <= reps; rep++)); do
  if ((rep % 2)); then order=(paygate peer); else order=(peer paygate); fi
  for scenario in create notify; do
    for sys in "${order[@]}"; do run "$rep" "$scenario" "$sys"; done
  done
done

# --- every acknowledged notify paid its order: a "success" that stored nothing would be a cheap lie
paid_count() { # database file: orders paid through this script's notifies
  (cd "$work/peer" && node -e '
    const db = new (require("better-sqlite3"))(process.argv[1], { readonly: true });
    console.log(db.prepare("SELECT count(*) AS n FROM orders WHERE status = ? AND substr(out_trade_no, 1, 7) = ?").get("paid", "notify_").n);
  ' "$1")
}
declare -A db_file=([paygate]="$work/paygate/paygate.db" [peer]="$work/peer/peer.db")
for sys in paygate peer; do
  paid="$(paid_count "${db_file[$sys]}")" || die "$sys: cannot count paid orders in ${db_file[$sys]}"
  echo "# $sys: ${acknowledged[$sys]} notifies acknowledged, $paid orders paid (the difference is notifies still in flight when wrk stopped)"
  ((paid >= acknowledged[$sys] && paid <= offset[$sys])) || die "$sys: $paid paid orders for ${acknowledged[$sys]} acknowledged notifies"
done

# --- openssl: the RSA-bound create limit (one sign per create, every core signing) ---------
openssl speed -elapsed -mr -seconds "${RSA_SECONDS:-3}" rsa2048 2>/dev/null >"$work/openssl.txt"
# -mr line (OpenSSL 3.0): +F2:<index>:<bits>:<sign/s>:<verify/s>
sign_s="$(awk -F: '/^\+F2:/ && $3 == 2048 { printf "%.0f", $4 }' "$work/openssl.txt")"
[[ -n "$sign_s" ]] || die "could not read openssl speed's rsa2048 sign/s"
cores="$(nproc)"

# --- summary -------------------------------------------------------------------------------
echo
echo "## medians over $reps repetitions (wrk -t1 -c$connections, ${seconds} s each; SQLite; $(date -u '+%H:%M UTC'))"
echo
echo "| scenario | system | ok/s | p50 ms | p99 ms | server CPU / op | box idle | peak RSS |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
declare -A rss=([paygate]="$(peak_rss_kib paygate)" [peer]="$(peak_rss_kib peer)")
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v s="$1" -v y="$2" -v c="$3" '$2 == s && $3 == y { print $c }' "$runs" | median; }
declare -A m
for scenario in create notify; do
  for sys in paygate peer; do
    for c in 4 5 6 7 8; do m[$scenario,$sys,$c]="$(col "$scenario" "$sys" "$c")"; done
    printf "| %s | %s | %.0f | %.2f | %.2f | %.0f µs | %.1f %% | %.0f MiB |\n" "$scenario" "$sys" \
      "${m[$scenario,$sys,4]}" "${m[$scenario,$sys,5]}" "${m[$scenario,$sys,6]}" "${m[$scenario,$sys,7]}" \
      "${m[$scenario,$sys,8]}" "$((rss[$sys] / 1024))"
  done
done
echo
echo "Peak RSS is VmHWM at the end, summed over the server processes (paygate: 1 with its embedded sandbox; peer: primary + $(($(server_pids peer | wc -w) - 1)) workers)."
echo
echo "## ratios paygate / peer"
for scenario in create notify; do
  awk -v s="$scenario" -v a="${m[$scenario,paygate,4]}" -v b="${m[$scenario,peer,4]}" \
      -v ca="${m[$scenario,paygate,7]}" -v cb="${m[$scenario,peer,7]}" 'BEGIN {
    printf "%-6s ok/s %.2f×   server CPU per op %.2f× (peer needs %.2f× paygate'"'"'s CPU)\n", s,
      (b > 0 ? a / b : 0), (cb > 0 ? ca / cb : 0), (ca > 0 ? cb / ca : 0) }'
done
awk -v a="${rss[paygate]}" -v b="${rss[peer]}" 'BEGIN { printf "peak RSS %.2f×\n", (b > 0 ? a / b : 0) }'
echo
echo "## RSA-bound create limit: openssl speed -elapsed -seconds ${RSA_SECONDS:-3} rsa2048 = $sign_s sign/s on one core"
awk -v s="$sign_s" -v n="$cores" -v a="${m[create,paygate,4]}" -v b="${m[create,peer,4]}" 'BEGIN {
  printf "limit %d creates/s (%d cores × sign/s); paygate %.2f× of it, peer %.2f×\n", n * s, n, a / (n * s), b / (n * s) }'
echo
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if ((repeated_total > 0)); then
  echo "# WARNING: $repeated_total notifies repeated an already-sent body (too few seeded orders; raise NOTIFY_GUESS)"
fi
if ((failed_total > 0)); then
  die "$failed_total requests failed (per-run counts above; KEEP=1 keeps the wrk outputs)"
fi
