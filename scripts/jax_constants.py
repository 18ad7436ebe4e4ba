"""Measurements behind the JAX executor's constants: ``python scripts/jax_constants.py``.

Prints, from one process (compare ratios, the machine is shared and noisy; best of
``--repeat``):

* D=1, L=65536: compiled rollout vs step-by-step, microseconds per token;
* D=64, L=32768: naive and continuous rollouts vs the offline FFT convolution (the floor);
* the ``direct_below`` crossover for the rollout and for step-by-step.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import futurefill


def _feedback(y: jax.Array) -> jax.Array:
    return 0.9 * jnp.tanh(y) + 0.1


def _filters(channels: int, taps: int) -> np.ndarray:
    return 0.5 * futurefill.decaying_random_filters(
        channels, taps, seed=0, decay=50.0, normalize=True
    )


def _best(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, time.perf_counter() - start)
    return best


def rollout_us(length: int, channels: int, repeat: int, **plan: Any) -> float:
    """Microseconds per token of a whole compiled rollout (compilation excluded)."""
    conv = futurefill.OnlineConv(_filters(channels, length), length, backend="jax", **plan)
    u0 = jnp.ones((1, channels))

    def run() -> jax.Array:
        conv.reset()
        return conv.rollout(u0, _feedback)

    run()  # compile
    return _best(run, repeat) / length * 1e6


def steps_us(length: int, channels: int, steps: int, repeat: int, **plan: Any) -> float:
    """Microseconds per token of ``steps`` jitted steps (emit + advance), warm."""
    conv = futurefill.OnlineConv(_filters(channels, length), length, backend="jax", **plan)
    u = jnp.ones((1, channels))

    def run() -> jax.Array:
        conv.reset()
        y = u
        for _ in range(steps):
            y = conv.step(y)
        return y

    run()
    return _best(run, repeat) / steps * 1e6


def offline_us(length: int, channels: int, repeat: int) -> float:
    phi = jnp.asarray(_filters(channels, length))
    u = jnp.ones((1, channels, length))
    conv = jax.jit(futurefill.causal_conv)
    conv(u, phi)
    return _best(lambda: conv(u, phi), repeat) / length * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    r = args.repeat
    x64 = jax.dtypes.canonicalize_dtype(np.float64) == np.float64
    print(f"jax {jax.__version__}, x64={x64}, {jax.devices()[0]}")
    roll = rollout_us(65536, 1, r)
    step = steps_us(65536, 1, 4096, r)
    print(f"D=1 L=65536 continuous: rollout {roll:.3f} us/token, step-by-step {step:.2f} us/token")
    floor = offline_us(32768, 64, r)
    cont = rollout_us(32768, 64, r)
    line = f"D=64 L=32768: continuous rollout {cont:.2f} us/token, offline floor {floor:.3f}"
    if not args.skip_naive:
        naive = rollout_us(32768, 64, 1, schedule="naive")
        line += f", naive rollout {naive:.2f} (naive/continuous {naive / cont:.1f}x)"
    print(line + f", continuous/floor {cont / floor:.1f}x")
    for k0 in (1, 4, 16, 32, 64):
        roll = rollout_us(65536, 1, r, direct_below=k0)
        s1 = steps_us(8192, 1, 2048, r, direct_below=k0)
        s64 = steps_us(8192, 64, 2048, r, direct_below=k0)
        print(
            f"direct_below={k0:3d}: rollout D=1 L=65536 {roll:.3f} us/token; "
            f"steps L=8192 D=1 {s1:.1f}, D=64 {s64:.1f} us/token"
        )


if __name__ == "__main__":
    main()
