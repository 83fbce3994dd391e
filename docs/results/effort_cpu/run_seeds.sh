#!/usr/bin/env bash
# Issue 21, the ranking goal (mean of 3 seeds): loop, loop-random and loop-sequential on the CT,
# seeds 0..2 (seed s trains with the dock's seed + s; loop-random also draws with it), each run in
# its own process with a fresh cache, seed by seed; then one merged report with the seed-0
# boxes and propagate runs of final/.  The labels before each run's final sweep are kept in
# $OUT/state.  From the repository root:
#   docs/results/effort_cpu/run_seeds.sh
set -euo pipefail
OUT=${OUT:-docs/results/effort_cpu/seeds}
PY=${PY:-.venv/bin/python}
dirs=(docs/results/effort_cpu/final/CT-boxes docs/results/effort_cpu/final/CT-propagate)
for s in ${SEEDS:-0 1 2}; do
  for p in ${POLICIES:-loop loop-random loop-sequential}; do
    cache=$(mktemp -d)
    NAPARI_SYNFOC_CACHE_DIR=$cache "$PY" -m benchmarks.effort --out "$OUT/CT-$p-s$s" --volumes CT \
      --policies "$p" --seeds "$s" --max-minutes "${MAX_MINUTES:-13}" --save-state "$OUT/state" "$@"
    rm -rf "$cache"
    dirs+=("$OUT/CT-$p-s$s")
    "$PY" -m benchmarks.effort --out "$OUT" --merge "${dirs[@]}"  # the report so far
  done
done
