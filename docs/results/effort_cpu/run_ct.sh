#!/bin/sh
# The CT effort run (issue 21), from the repository root; writes docs/results/effort_cpu/.
# A fresh embedding cache, so the first training run pays for its encoding as a user's would.
export NAPARI_SYNFOC_CACHE_DIR="$(mktemp -d)"
exec .venv/bin/python -m benchmarks.effort --out docs/results/effort_cpu --volumes CT \
  --policies loop,boxes,propagate --seeds 0 --max-minutes "${MAX_MINUTES:-15}" "$@"
