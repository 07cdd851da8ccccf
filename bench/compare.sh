#!/usr/bin/env bash
# Side by side in one run, on this machine: `openssl speed rsa2048` (the physical limit for
# RSA signing and verifying on one core), paygate's Alipay orderString and notify-verify
# criterion benches, the WeChat Pay APIv3 notify verify + decrypt and request-signing benches,
# and the official Node `alipay-sdk` building the same orderString. Every figure is one core
# (criterion runs single-threaded, `openssl speed` without -multi). Prints the ratios the
# performance targets are stated in.
#
# Usage: bench/compare.sh            (from the workspace root; needs cargo, openssl, node, npm)
# Env:   CARGO_TARGET_DIR (default ~/.cache/paygate-target), NODE_ORDERS (default 2000)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/paygate-target}"
keys="$root/crates/alipay/tests/data/vectors/alipay/keys"
work="$(mktemp -d -t paygate-compare.XXXXXX)"
trap 'rm -rf "$work"' EXIT

echo "# paygate compare — $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $(openssl version); node $(node --version); $(rustc --version)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# `openssl speed` divides by CPU time unless told -elapsed, criterion by wall-clock time: on a
# busy machine the first would not slow down and the second would. -elapsed makes both
# wall-clock (on a quiet machine the two agree), and each group of criterion benches is
# compared with an openssl run taken just before it, under the same load.
openssl_rsa() {
  echo "## openssl speed -elapsed -seconds 3 rsa2048 (one core)"
  openssl speed -elapsed -mr -seconds 3 rsa2048 2>/dev/null >"$work/openssl.txt"
  # -mr line (OpenSSL 3.0): +F2:<index>:<bits>:<sign/s>:<verify/s>
  read -r ossl_sign ossl_verify < <(awk -F: '/^\+F2:/ && $3 == 2048 { printf "%.1f %.1f\n", $4, $5 }' "$work/openssl.txt")
  echo "openssl sign/s   $ossl_sign"
  echo "openssl verify/s $ossl_verify"
}
openssl_rsa
alipay_ossl_sign="$ossl_sign"
alipay_ossl_verify="$ossl_verify"

echo "## paygate-alipay criterion benches (median)"
(cd "$root" && cargo bench -q -p paygate-alipay --bench alipay -- \
    --warm-up-time 1 --measurement-time 3 'app_pay_order_string|notify_verify|rsa2048_sign_bare|rsa2048_verify_bare' \
    2>/dev/null) | tee "$work/criterion.txt" | grep -E '^[a-z_0-9]+ +time:|^[a-z_0-9]+$|time:' || true
# criterion prints "name  time: [low median high]"; a long name puts "time:" on the next line.
median_us() {
  awk -v name="$1" '
    $1 == name { found = 1 }
    found && /time:/ {
      sub(/.*\[/, ""); split($0, f, " ");
      v = f[3]; u = f[4];
      if (u == "ns") v /= 1000; else if (u == "ms") v *= 1000; else if (u == "s") v *= 1e6;
      print v; exit
    }' "${2:-$work/criterion.txt}"
}
order_us="$(median_us app_pay_order_string)"
verify_us="$(median_us notify_verify)"
rust_orders="$(awk -v us="$order_us" 'BEGIN { printf "%.1f", 1e6 / us }')"
rust_verifies="$(awk -v us="$verify_us" 'BEGIN { printf "%.1f", 1e6 / us }')"
echo "paygate orderString/s   $rust_orders  (median $order_us µs)"
echo "paygate notify verify/s $rust_verifies  (median $verify_us µs)"

openssl_rsa
echo "## paygate-wechat-v3 criterion benches (median)"
(cd "$root" && cargo bench -q -p paygate-wechat-v3 --bench wechat_v3 -- \
    --warm-up-time 1 --measurement-time 3 'v3_' \
    2>/dev/null) | tee "$work/criterion_v3.txt" | grep -E '^[a-z_0-9]+ +time:|^[a-z_0-9]+$|time:' || true
v3_notify_us="$(median_us v3_notify_verify_decrypt "$work/criterion_v3.txt")"
v3_auth_us="$(median_us v3_request_authorization "$work/criterion_v3.txt")"
v3_notifies="$(awk -v us="$v3_notify_us" 'BEGIN { printf "%.1f", 1e6 / us }')"
v3_signs="$(awk -v us="$v3_auth_us" 'BEGIN { printf "%.1f", 1e6 / us }')"
echo "paygate v3 notify verify+decrypt/s $v3_notifies  (median $v3_notify_us µs)"
echo "paygate v3 Authorization/s         $v3_signs  (median $v3_auth_us µs)"

echo "## official Node alipay-sdk@4.14.0 sdkExecute (same inputs, PKCS#1 app key)"
(cd "$work" && npm init -y >/dev/null 2>&1 && npm install --silent --no-audit --no-fund alipay-sdk@4.14.0 >/dev/null 2>&1)
node "$root/bench/node-order-string.cjs" "$work" "$keys/app_private_pkcs1.pem" "${NODE_ORDERS:-2000}" 5 | tee "$work/node.json"
node_orders="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).median_per_s.toFixed(1))' "$work/node.json")"
echo "node orderString/s      $node_orders"

echo "## ratios (targets: orderString ≥ 0.95× openssl sign, notify ≥ 0.9× openssl verify, ≥ 2.5× node)"
awk -v o="$rust_orders" -v s="$alipay_ossl_sign" -v v="$rust_verifies" -v ov="$alipay_ossl_verify" -v n="$node_orders" 'BEGIN {
  printf "orderString / openssl sign     = %.2f×\n", o / s;
  printf "notify verify / openssl verify = %.2f×\n", v / ov;
  printf "orderString / node alipay-sdk  = %.2f×\n", o / n;
}'
echo "## WeChat Pay APIv3 ratios, per core (targets: notify verify+decrypt ≥ 0.8× openssl verify, request signing ≥ 0.95× openssl sign)"
awk -v n="$v3_notifies" -v ov="$ossl_verify" -v a="$v3_signs" -v s="$ossl_sign" 'BEGIN {
  printf "v3 notify verify+decrypt / openssl verify = %.2f×\n", n / ov;
  printf "v3 Authorization / openssl sign          = %.2f×\n", a / s;
}'
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
