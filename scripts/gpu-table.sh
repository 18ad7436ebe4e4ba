#!/usr/bin/env bash
# The GPU table of issue 20 in one run of about five minutes (--budget 300): one layer (naive,
# continuous, reuse, the offline floor) and Hyena models end to end, float32, with peak device
# memory; writes table.md and table.json. See docs/benchmarks.md, "The GPU table".
# Usage: scripts/gpu-table.sh [OUT_DIR] [--backend torch (default) | torch-graphs | cupy | jax]
# [other options of scripts/gpu_table.py]. Needs a CUDA GPU and the libraries; no network.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-table
if [[ $# -gt 0 && $1 != -* ]]; then
    out=$1
    shift
fi
exec python3 scripts/gpu_table.py --out "$out" "$@"
