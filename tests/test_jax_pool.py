"""The JAX pool kernels (``futurefill_jax._pool``): the tasks of a pool step are one program.

``fill_groups`` runs, per task shape of the plan, a loop over the rows due in batches of a
fixed size (:func:`tick_table`), with the rows due packed in one index table. Tested here: the
table's batches and sizes; the pool's outputs against
``numpy.convolve`` (float64: 1e-12 of the largest |output|, as in ``test_pool.py``) when a
shape's rows due outnumber its batch (several loop iterations; two tasks of one shape after
one step in one slot, a plan's *lanes*, run on every backend in ``test_pool.py``); and that
admitting, releasing and stepping any slots compiles no new program once each (padded row
count, window width) was seen: the task program once per pool, whatever is due.
"""

from __future__ import annotations

import numpy as np
import pytest

from futurefill import StreamPool, make_plan
from futurefill.pool.grouping import task_lanes

from .conftest import decaying_filters, oracle, selected_backends
from .test_pool import _lane_plans

if "jax" not in selected_backends():
    pytest.skip("jax is not among FUTUREFILL_TEST_BACKENDS", allow_module_level=True)
jax = pytest.importorskip("jax")
if not jax.config.read("jax_enable_x64"):
    pytest.skip("these float64 tests need JAX_ENABLE_X64=1", allow_module_level=True)

from futurefill_jax import _pool  # noqa: E402

RTOL64 = 1e-12


@pytest.mark.parametrize("kind", ["epoched", "two_lanes"])
def test_tick_table_holds_every_task_a_step_can_have_due(kind: str) -> None:
    plan = make_plan(256, "epoched", epoch=16) if kind == "epoched" else _lane_plans()[0]
    capacity, channels = 8, 4
    table = _pool.tick_table(plan, capacity, channels, 10**9)
    which = plan.step_patterns.shape_of_task
    lanes = task_lanes(plan)
    assert table.shapes == plan.step_patterns.shapes
    for j in range(len(table.shapes)):
        most = capacity * (int(lanes[which == j].max()) + 1)
        batch, size = table.batches[j], table.sizes[j]
        assert size >= most and size % batch == 0
        assert batch & (batch - 1) == 0 and 1 <= batch <= _pool._padded(most)
    assert list(table.offsets) == np.cumsum([0, *table.sizes[:-1]]).tolist()
    assert max(lanes) == (1 if kind == "two_lanes" else 0)
    # a memory cap of one FFT row per batch: every batch is one row
    tight = _pool.tick_table(plan, capacity, channels, channels * 2)
    assert set(tight.batches) == {1}
    # no bound: the table of a bound no batch reaches (one program whatever is due)
    assert _pool.tick_table(plan, capacity, channels, None) == table


def test_pack_puts_each_group_at_its_shape() -> None:
    plan = make_plan(64, "continuous", direct_below=4)
    table = _pool.tick_table(plan, 4, 2, 10**9)
    shape = table.shapes[1]
    groups = [
        _pool.TaskGroup(shape, np.array([0, 3]), np.array([8, 12])),
        _pool.TaskGroup(shape, np.array([2]), np.array([4])),
    ]
    packed, counts = _pool._pack(table, groups)
    at = table.offsets[1]
    np.testing.assert_array_equal(packed[at : at + 3], [[0, 8], [3, 12], [2, 4]])
    assert counts.tolist() == [3 if j == 1 else 0 for j in range(len(table.shapes))]


def _scattered_run(pool: StreamPool, u: np.ndarray, lags: list[int], rng) -> np.ndarray:
    """Step the pool's slots, slot ``i`` starting ``lags[i]`` steps late and skipping some
    calls; return each slot's outputs ``(S, C, L)``."""
    S, _, L = u.shape
    slots = [pool.admit() for _ in range(S)]
    got = np.zeros_like(u)
    t = np.zeros(S, int)
    call = 0
    while (t < L).any():
        ready = [i for i in range(S) if call >= lags[i] and t[i] < L and rng.random() < 0.85]
        call += 1
        if not ready:
            continue
        y = pool.step([slots[i] for i in ready], u[ready, :, t[ready]])
        got[ready, :, t[ready]] = np.asarray(y)
        t[ready] += 1
    return got


SCHEDULES = [("continuous", {"direct_below": 2}), ("epoched", {"epoch": 8}), ("deadline", {})]


# One row per batch compiles a program of its own per pool: for continuous in the quick run,
# for the others in nox -s tests_deep.
@pytest.mark.parametrize(
    ("schedule", "params", "group_bytes"),
    [
        pytest.param(
            s, p, 1, marks=[pytest.mark.slow] if s != "continuous" else [], id=f"{s}-one_row"
        )
        for s, p in SCHEDULES
    ]
    + [pytest.param(s, p, 1 << 28, id=s) for s, p in SCHEDULES],
)
def test_pool_tasks_program_equals_numpy_convolve(
    rng, monkeypatch: pytest.MonkeyPatch, schedule: str, params: dict, group_bytes: int
) -> None:
    """Slots at scattered positions; ``group_bytes=1``: one row per batch (loops of several
    iterations whenever two slots have a shape due together)."""
    most_due = []

    def pack(table: _pool.TickTable, groups: list) -> tuple:
        packed, counts = real_pack(table, groups)
        most_due.append(int(counts.max()))
        return packed, counts

    real_pack = _pool._pack
    monkeypatch.setattr(_pool, "_pack", pack)
    S, C, L = 6, 3, 80
    phi = decaying_filters(rng, C, L)
    u = rng.standard_normal((S, C, L))
    pool = StreamPool(
        phi, L, capacity=S, schedule=schedule, backend="jax", dtype="float64",
        max_group_bytes=group_bytes, **params,
    )  # fmt: skip
    got = _scattered_run(pool, u, [0, 0, 3, 9, 16, 40], rng)
    want = oracle(u, phi)
    assert np.abs(got - want).max() <= RTOL64 * np.abs(want).max()
    assert max(most_due) >= 2, "two slots had one shape due in one step"


def test_admitting_releasing_and_stepping_any_slots_compiles_nothing_new(rng) -> None:
    S, C, L = 8, 2, 64
    phi = decaying_filters(rng, C, L)
    pool = StreamPool(phi, L, capacity=S, backend="jax", dtype="float64", direct_below=4)
    slots = [pool.admit() for _ in range(S)]

    def drive(calls: int) -> None:
        for _ in range(calls):
            live = pool.active_slots
            some = sorted(rng.choice(live, size=min(4, len(live)), replace=False).tolist())
            if min(pool.remaining(s) for s in some) == 0:
                for s in some:
                    pool.release(s)
                    pool.admit()
                continue
            pool.step(some, rng.standard_normal((len(some), C)))

    programs = (_pool._emit, _pool._tasks)
    drive(L)  # every (row count 4, window width) pair seen
    before = [p._cache_size() for p in programs]
    pool.release(slots[0])
    pool.admit(prompt=rng.standard_normal((C, 5)), length=L - 5)
    drive(L)
    assert [p._cache_size() for p in programs] == before


def _buffer_copies(compiled_text: str, buffer_type: str) -> int:
    """Instructions of compiled HLO text that copy a whole ``buffer_type`` array."""
    assert buffer_type in compiled_text, "the program's text names its buffer"
    return sum(
        1
        for line in compiled_text.splitlines()
        if " copy(" in line and buffer_type in line.split(" copy(")[0]
    )


def test_pool_programs_update_the_buffer_in_place(rng) -> None:
    """Neither program copies the donated ``(S, C, N)`` buffer: the window sums' store is
    ordered after their read (a copy of the whole buffer per call otherwise)."""
    S, C, L = 4, 8, 512
    phi = decaying_filters(rng, C, L)
    pool = StreamPool(phi, L, capacity=S, backend="jax", dtype="float64", direct_below=4)
    state = pool._state
    buffer_type = "f64[{},{},{}]".format(*state.buffer.shape)
    jnp = jax.numpy
    rows = jnp.arange(S)
    index = jnp.stack([rows, rows + 40, rows + 30]).astype(jnp.int32)
    emit = _pool._emit.lower(
        state.buffer, state.taps_reversed, index, jnp.zeros((S, C)), 0,
        count=C, width=int(state.taps_reversed.shape[-1]),
    )  # fmt: skip
    assert _buffer_copies(emit.compile().as_text(), buffer_type) == 0
    table = _pool.tick_table(state.plan, S, C, 10**9)
    spectra = tuple(state.spectra[shape.spectrum] for shape in table.shapes)
    packed = jnp.zeros((table.entries, 2), jnp.int32)
    tasks = _pool._tasks.lower(
        state.buffer, spectra, packed, jnp.zeros(len(table.shapes), jnp.int32), table=table
    )
    assert _buffer_copies(tasks.compile().as_text(), buffer_type) == 0
