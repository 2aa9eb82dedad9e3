#!/usr/bin/env bash
# Create or reuse the virtual environment, install jaxcomp, and run the main job:
# a small compression sweep on scikit-learn's bundled digits (no download), printing a table.
set -euo pipefail
cd "$(dirname "$0")"
./.ci/setup_venv.sh
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}" TF_CPP_MIN_LOG_LEVEL=3
out="${1:-runs/demo}"
echo "demo: sweeping configs/demo_sweep.py (5 sparsities x 3 seeds, one vmapped program) into $out" >&2
.venv/bin/jaxcomp sweep configs/demo_sweep.py --out "$out"
.venv/bin/jaxcomp report "$out"
