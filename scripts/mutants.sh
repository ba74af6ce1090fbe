#!/usr/bin/env bash
# Mutation testing of the crate with every feature (cargo-mutants from
# crates.io). The servers the tests use must be up, as for `cargo test`
# (DATABASE_URL, REDIS_URL, TEMPORAL_URL, TEMPORAL_PYTHON; see .ci/run).
#
#   scripts/mutants.sh                      # every file of src/, one by one
#   scripts/mutants.sh src/http/serve.rs    # some files
#   scripts/mutants.sh --shard 3/8          # one shard of the crate, whole suite
#
# File by file, each file's mutants are first tested against the test
# targets that exercise that file (the map below): each mutant then
# rebuilds and links a few test binaries instead of thirty, which makes the
# check several times faster on two cores. A mutant those targets miss is
# tested again against the whole suite (doc tests included) before it
# counts as missed. A file not in the map gets the whole suite at once.
#
# Exclusions, each with the reason no test can tell the mutant from the
# code, are in .cargo/mutants.toml. Prints the counts of caught, missed,
# unviable and timed-out mutants; exits non-zero when any was missed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants@27.1.0

common=(--all-features --profile mutants --timeout 60 --copy-target true)
out=target/mutants

# The test targets that exercise a file (cargo test target flags).
targets_for() {
  local http="--test=http_edge --test=http_details --test=bad_inputs --test=envelope --test=signatures --test=wait --test=axum_server --test=hardening --test=schema --test=operations --test=idempotency --test=limits --test=logs --test=rate_limits --test=faults --test=secrets --test=dry_run"
  local core="--lib --test=serde_shapes --test=http_edge --test=bad_inputs --test=start_rules --test=faults --test=http_details --test=operations --test=secrets --test=dry_run --test=conformance --test=properties"
  case "$1" in
    src/store/postgres.rs) echo "--lib --test=postgres" ;;
    src/store/redis.rs) echo "--lib --test=redis --test=idempotency" ;;
    src/store/memory.rs) echo "--lib --test=conformance --test=idempotency --test=limits --test=start_rules --test=faults --test=dry_run --test=operations --test=wait" ;;
    src/store/mod.rs) echo "--lib --test=conformance --test=postgres --test=redis --test=idempotency --test=faults --test=start_rules" ;;
    src/engine/camunda7.rs) echo "--lib --test=camunda7" ;;
    src/engine/camunda8.rs) echo "--lib --test=camunda8" ;;
    src/engine/temporal.rs) echo "--lib --test=temporal" ;;
    src/engine/mod.rs | src/engine/memory.rs | src/engine/http.rs)
      echo "--test=conformance --test=start_rules --test=dry_run --test=wait --test=faults --test=limits --test=camunda7 --test=camunda8 --test=temporal --test=serde_shapes --test=operations" ;;
    src/limit/*) echo "--lib --test=rate_limits --test=limits --test=redis --test=operations" ;;
    src/http/serve.rs) echo "--test=hardening --test=axum_server --test=operations --test=limits --test=wait --test=envelope --test=idempotency --test=conformance" ;;
    src/http/protect.rs) echo "--lib --test=hardening --test=limits --test=axum_server --test=operations --test=logs" ;;
    src/http/axum.rs) echo "--test=axum_server --test=envelope --test=hardening --test=wait --test=operations --test=limits --test=idempotency" ;;
    src/http/starter.rs) echo "$http" ;;
    src/http/mod.rs) echo "--lib --test=properties $http" ;;
    src/bin/webhook_server.rs) echo "--test=webhook_server" ;;
    src/testing.rs) echo "--lib --test=conformance --test=postgres --test=redis" ;;
    src/observe.rs) echo "--lib --test=operations --test=webhook_server" ;;
    src/http/signature.rs) echo "--lib --test=signatures --test=envelope --test=operations" ;;
    src/form.rs) echo "--lib --test=schema --test=start_rules --test=bad_inputs --test=camunda7 --test=properties --test=serde_shapes --test=http_edge" ;;
    src/error.rs | src/id.rs | src/model.rs) echo "$core" ;;
    *) echo "" ;;
  esac
}

# Exact-name regexes (for --re) of the mutants listed in a missed.txt, line
# and column included: the second run follows the first on the same source,
# and another mutant with the same description elsewhere in the file must
# not be run (and counted) again.
missed_patterns() {
  python3 - "$1" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("src/"):
        print("^" + re.escape(line) + "$")
PY
}

runs=()
if [ "${1:-}" = "--shard" ]; then
  cargo mutants "${common[@]}" --shard "$2" -o "$out/shard" || true
  runs+=("$out/shard")
else
  files=("$@")
  [ ${#files[@]} -eq 0 ] && mapfile -t files < <(find src -name '*.rs' | sort)
  for file in "${files[@]}"; do
    slug=${file//\//_}
    read -r -a targets <<<"$(targets_for "$file")"
    args=()
    for t in "${targets[@]}"; do args+=(-C "$t"); done
    echo "==> $file ${targets[*]:-(whole suite)}"
    cargo mutants "${common[@]}" --file "$file" "${args[@]}" -o "$out/$slug" || true
    missed="$out/$slug/mutants.out/missed.txt"
    if [ ${#targets[@]} -gt 0 ] && [ -s "$missed" ]; then
      echo "==> $file: missed by its own tests, again against the whole suite"
      res=()
      while read -r p; do res+=(--re "$p"); done < <(missed_patterns "$missed")
      cargo mutants "${common[@]}" --file "$file" "${res[@]}" -o "$out/$slug.whole" || true
      runs+=("$out/$slug.whole")
      # Only the first run's caught, unviable and timed-out count; the
      # second decides which of its missed stay missed.
      runs+=("$out/$slug:first")
    else
      runs+=("$out/$slug")
    fi
  done
fi

python3 - "${runs[@]}" <<'PY'
import json, sys, collections
total = collections.Counter()
for run in sys.argv[1:]:
    first = run.endswith(":first")
    path = run[: -len(":first")] if first else run
    try:
        doc = json.load(open(f"{path}/mutants.out/outcomes.json"))
    except OSError:
        continue
    for o in doc["outcomes"]:
        if o["scenario"] == "Baseline":
            continue
        if first and o["summary"] == "MissedMutant":
            continue  # counted by the whole-suite run
        if run.endswith(".whole") and o["summary"] == "CaughtMutant":
            total["caught by the whole suite"] += 1
        total[o["summary"]] += 1
print(f"mutants tested: {sum(v for k, v in total.items() if k != 'caught by the whole suite')}, "
      f"caught: {total['CaughtMutant']} ({total['caught by the whole suite']} only by the whole suite), "
      f"missed: {total['MissedMutant']}, unviable: {total['Unviable']}, timeouts: {total['Timeout']}")
sys.exit(1 if total["MissedMutant"] else 0)
PY
