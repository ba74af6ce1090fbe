#!/usr/bin/env bash
# Mutation testing of the whole crate with every feature (cargo-mutants from
# crates.io). The servers the tests use must be up, as for `cargo test`
# (DATABASE_URL, REDIS_URL, TEMPORAL_URL, TEMPORAL_PYTHON; see .ci/run).
#
#   scripts/mutants.sh              # everything: 1,400+ mutants, hours on 2 cores
#   scripts/mutants.sh 3/8          # one shard of eight
#   scripts/mutants.sh '' src/trace.rs src/http/health.rs   # some files
#
# Exclusions, each with the reason no test can tell the mutant from the
# code, are in .cargo/mutants.toml. Prints the counts of caught, missed,
# unviable and timed-out mutants; exits non-zero when any was missed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants@27.1.0

shard="${1:-}"
shift || true
args=(--all-features --profile mutants --timeout 300 -o target/mutants)
[ -n "$shard" ] && args+=(--shard "$shard")
for file in "$@"; do args+=(--file "$file"); done

status=0
cargo mutants "${args[@]}" || status=$?
outcomes=target/mutants/mutants.out/outcomes.json
if [ -f "$outcomes" ]; then
  python3 - "$outcomes" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
print(f"mutants tested: {doc.get('total_mutants')}, caught: {doc.get('caught')}, "
      f"missed: {doc.get('missed')}, unviable: {doc.get('unviable')}, timeouts: {doc.get('timeout')}")
PY
fi
exit "$status"
