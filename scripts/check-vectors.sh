#!/usr/bin/env bash
# The provider crates carry byte-identical copies of the team's ground-truth vectors so that
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
# Each entry is "crate folder:vector folder"; WeChat Pay APIv3 lives in its own crate, and the
# statement (bill) vectors are read by both provider crates and matched by reconciliation.
for pair in wechat:wechat alipay:alipay wechat-v3:wechat-v3 \
  wechat:bills alipay:bills reconciliation:bills; do
  crate="${pair%%:*}"
  vectors="${pair#*:}"
  copy="crates/$crate/tests/data/vectors/$vectors"
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
