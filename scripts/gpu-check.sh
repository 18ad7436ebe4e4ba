#!/usr/bin/env bash
# The GPU check (torch-CUDA, CuPy and JAX-GPU tests, then a same-run float32 benchmark).
# Usage: scripts/gpu-check.sh [OUT_DIR] [--quick] [other options of scripts/gpu_check.py]
# Needs a CUDA GPU with torch, cupy, jax, pytest and futurefill installed; no network.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
shift || true
exec python3 scripts/gpu_check.py --out "$out" "$@"
