"""The JAX backend on several devices: sharded functional states, and executors on a device
other than the default one.

JAX fixes its devices when it starts, so every test runs a script in a subprocess with forced
host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``) and float64 on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import selected_backends

if "jax" not in selected_backends():
    pytest.skip("jax is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)
pytest.importorskip("jax")


def run_on_devices(devices: int, script: str, folder: Path) -> str:
    """Run ``script`` in a fresh Python on ``devices`` forced CPU devices, float64 on; return
    its standard output (failing the test with its standard error if it fails)."""
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        JAX_ENABLE_X64="1",
    )
    path = folder / "script.py"
    path.write_text(script)
    done = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


SHARDED = textwrap.dedent(
    """
    import numpy as np, jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from futurefill import PlanSpec, make_plan
    from futurefill_jax import functional as ff
    assert len(jax.devices()) == 4, jax.devices()
    rng = np.random.default_rng(5)
    B, C = 2, 8
    MESHES = (((4,), ("c",)), ((2, 2), ("b", "c")))
    # (length, schedule, prompt, exact): small tasks are Toeplitz products summed in a fixed
    # order (bit for bit); FFT tasks (and the prompt's FFT) run per shard: the same float64
    # transforms of the same rows, within 1e-12 of the largest output.
    CASES = [
        (64, PlanSpec("continuous", direct_below=4), 0, True),
        (512, PlanSpec("continuous", direct_below=16), 40, False),
        (300, PlanSpec("epoched", epoch=64), 0, False),  # masked FFT kernels
    ]


    def run(state, up, u0, L):
        ys0 = None
        if up is not None:
            state, ys0 = ff.prefill(state, up)
        state, ys = ff.rollout(state, u0, jnp.tanh, L)
        return state, ys if ys0 is None else jnp.concatenate([ys0, ys], -1)


    run = jax.jit(run, static_argnums=3)
    for L, spec, prompt, exact in CASES:
        phi = rng.standard_normal((C, prompt + L)) * np.exp(-np.arange(prompt + L) / 100)
        u0, up = rng.standard_normal((B, C)), rng.standard_normal((B, C, prompt))
        plan = make_plan(L, spec, prompt=prompt)
        runner = ff.layout_for(plan).runner
        assert exact == all(runner.direct), (spec, runner.direct)  # FFT tasks unless exact
        fresh = lambda: ff.init(plan, phi, batch=B, dtype=jnp.float64)  # noqa: E731
        _, want = run(fresh(), jnp.asarray(up) if prompt else None, jnp.asarray(u0), L)
        want = np.asarray(want)
        for shape, names in MESHES:
            mesh = Mesh(np.array(jax.devices()).reshape(shape), names)
            batch_axis = "b" if "b" in names else None
            placed = NamedSharding(mesh, P(batch_axis, "c"))
            state = ff.shard(fresh(), mesh, batch_axis=batch_axis, channel_axis="c")
            u = jax.device_put(jnp.asarray(u0), placed)
            state, got = run(state, jax.device_put(jnp.asarray(up), placed) if prompt else None,
                             u, L)
            assert len(state.buffer.sharding.device_set) == 4
            if exact:
                np.testing.assert_array_equal(np.asarray(got), want)
            else:
                tol = 1e-12 * np.abs(want).max()
                np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=tol)
            print("sharded ok", L, spec, names)
    """
)


def test_sharded_over_four_devices_equals_one_device(tmp_path: Path) -> None:
    """Sharded over a channel mesh and a batch-by-channel mesh, with and without FFT tasks
    (``L >= 256``) and a prompt: the outputs of one device (before FFTs ran per shard, XLA
    gathered their operands and XLA:CPU failed on their layout)."""
    assert run_on_devices(4, SHARDED, tmp_path).count("sharded ok") == 6


PLACED = textwrap.dedent(
    """
    import numpy as np, jax, jax.numpy as jnp
    import futurefill
    from futurefill import PlanSpec
    from futurefill.models import ConvLM
    from futurefill_jax.decode import greedy
    assert len(jax.devices()) == 2, jax.devices()
    dev = jax.devices()[1]


    def on_device_1(what, tree):
        leaves = jax.tree_util.tree_leaves(tree)
        assert leaves, what
        for leaf in leaves:
            assert isinstance(leaf, jax.Array), (what, type(leaf))
            assert leaf.devices() == {dev}, (what, leaf.devices())


    rng = np.random.default_rng(0)
    C, P, L = 3, 5, 300
    phi = rng.standard_normal((C, P + L)) * np.exp(-np.arange(P + L) / 50)
    u = jax.device_put(rng.standard_normal((2, C, P + L)), dev)
    spec = PlanSpec("continuous", direct_below=16)  # FFT tasks too (from 256 steps)
    # An array made on the default device and used with device 1's would be moved there
    # implicitly: a device-to-device transfer, which the guard turns into an error.
    with jax.transfer_guard_device_to_device("disallow"):
        conv = futurefill.OnlineConv(
            phi, L, schedule=spec, prompt=P, batch=2, backend="jax", device=dev
        )
        ys = [conv.prefill(u[..., :P])] + [conv.step(u[..., P + t]) for t in range(40)]
        ys.append(conv.rollout(u[..., P + 40], jnp.tanh, 100))
        conv.backend.synchronize()
        state, ws = conv._state, conv._state.workspace
        on_device_1("outputs", ys)
        on_device_1("buffer", state.buffer)
        on_device_1("filters", [state.filters, state.taps_reversed, state.spectra])
        on_device_1("functional constants", ws.stream)
        on_device_1("rollout constants", ws.rollout_consts)
        model = ConvLM(mixer="hyena", dim=16, layers=2, vocab_size=32, max_len=96, seed=3)
        tokens = greedy(model, np.arange(5)[None, :], 12, executor=conv.backend).tokens
        assert tokens.shape == (1, 12)
    print("placed ok")
    """
)


def test_an_executor_on_device_1_keeps_every_array_there(tmp_path: Path) -> None:
    """Two CPU devices: the state, its constants, the compiled rollout's constants, the
    outputs and the compiled generation's operands all live on the executor's device, not the
    default one (checked on every array, and no implicit transfer between devices)."""
    assert "placed ok" in run_on_devices(2, PLACED, tmp_path)
