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
# targets without the doc tests (the library's unit tests, the one
# integration binary `tests/it` and the two that need a process of their
# own): each mutant then rebuilds and links four test binaries instead of
# compiling some hundred doc tests. A mutant those targets miss is tested
# again against the whole suite (doc tests included) before it counts as
# missed.
#
# Exclusions, each with the reason no test can tell the mutant from the
# code, are in .cargo/mutants.toml. Prints the counts of caught, missed,
# unviable and timed-out mutants; exits non-zero when any was missed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants@27.1.0

common=(--all-features --profile mutants --timeout 60 --copy-target true)
out=target/mutants
mkdir -p "$out"

# The test targets a file's mutants are first run against (cargo test
# target flags): every target but the doc tests.
targets_for() {
  echo "--lib --test=it --test=webhook_server --test=moves_not_copies"
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
