#!/usr/bin/env bash
# Issue 21, final runs: each policy in its own process with a fresh cache, as a new user's first
# session (the encoder export and every slice's encoding are inside the measured time), then one
# merged report.  From the repository root:
#   docs/results/effort_cpu/run_final.sh                      # CT, five policies, seed 0
#   VOL=S200 POLICIES="boxes loop" OUT=DIR docs/results/effort_cpu/run_final.sh
set -euo pipefail
OUT=${OUT:-docs/results/effort_cpu/final}
VOL=${VOL:-CT}
PY=${PY:-.venv/bin/python}
dirs=()
for p in ${POLICIES:-boxes propagate loop loop-random loop-sequential}; do
  cache=$(mktemp -d)
  NAPARI_SYNFOC_CACHE_DIR=$cache "$PY" -m benchmarks.effort --out "$OUT/$VOL-$p" --volumes "$VOL" \
    --policies "$p" --max-minutes "${MAX_MINUTES:-13}" "$@"
  rm -rf "$cache"
  dirs+=("$OUT/$VOL-$p")
done
"$PY" -m benchmarks.effort --out "$OUT" --merge "${dirs[@]}"
