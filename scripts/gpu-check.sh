#!/usr/bin/env bash
# The GPU check (torch-CUDA, CuPy and JAX-GPU tests, then a same-run float32 benchmark); it
# fails when a GPU test is skipped or a library does not see the GPU. See docs/backends.md.
# Usage: scripts/gpu-check.sh [OUT_DIR] [--quick (default) | --full] [other options of
# scripts/gpu_check.py]. Needs a CUDA GPU and the libraries installed; no network.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-check
if [[ $# -gt 0 && $1 != -* ]]; then
    out=$1
    shift
fi
exec python3 scripts/gpu_check.py --out "$out" "$@"
