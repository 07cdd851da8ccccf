#!/usr/bin/env bash
# The repo carries byte-identical copies of the team's ground-truth vectors so that
# `cargo test` needs nothing outside the repo. When ../shared/vectors is present (it is in CI),
# fail if a copy drifted from it.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="../shared/vectors"
if [ ! -d "$shared" ]; then
  echo "no $shared beside the repo: nothing to compare (the vendored copies are used as they are)"
  exit 0
fi
status=0
# Each entry is "copy:vector folder". The provider vectors live in their crates (WeChat Pay
# APIv3 in its own); the statement (bill) vectors are read by the WeChat, APIv3, Alipay,
# reconciliation and gateway tests alike, so the workspace holds them once.
for pair in crates/wechat/tests/data/vectors/wechat:wechat \
  crates/alipay/tests/data/vectors/alipay:alipay \
  crates/wechat-v3/tests/data/vectors/wechat-v3:wechat-v3 \
  tests/data/vectors/bills:bills; do
  copy="${pair%%:*}"
  vectors="${pair#*:}"
  if [ ! -d "$copy" ]; then
    echo "missing vendored vectors: $copy" >&2
    status=1
    continue
  fi
  if diff -r -q "$shared/$vectors" "$copy"; then
    echo "$copy is identical to $shared/$vectors"
  else
    echo "$copy differs from $shared/$vectors: copy them again unchanged" >&2
    status=1
  fi
done
exit $status
