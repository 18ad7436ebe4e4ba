"""The cost model of a plan: :class:`PlanCost` (FLOPs, in units of the offline floor too) and a
calibrated prediction of time, :func:`predicted_seconds` (cheap to build, the table on demand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .._checks import next_pow2
from ._tables import PlanTables
from .transforms import FORWARD, INVERSE, PRODUCT

__all__ = [
    "PlanCost",
    "PredictedTime",
    "TimeModel",
    "fft_flops",
    "floor_flops",
    "plan_cost",
    "predict_time",
    "predicted_seconds",
    "window_widths",
]


def fft_flops(n: np.ndarray | float) -> np.ndarray | float:
    """FLOPs of one real FFT of size ``n``: the usual ``2.5 n log2 n``."""
    return 2.5 * n * np.log2(np.maximum(n, 2))


def _product_flops(n: np.ndarray | float) -> np.ndarray | float:
    """FLOPs of the complex spectrum product of a real FFT of size ``n``: ``6 (n/2 + 1)``."""
    return 6.0 * (n // 2 + 1)


def floor_flops(total: int) -> float:
    """FLOPs of the offline floor of ``total`` positions, per channel and batch row.

    The floor is the FFT convolution of the whole sequence, all inputs known at once, with
    the filter spectrum precomputed: one forward and one inverse real FFT of size
    ``next_pow2(2 total - 1)`` and the spectral product.
    """
    n = float(next_pow2(2 * total - 1))
    return float(2 * fft_flops(n) + _product_flops(n))


@dataclass(frozen=True)
class PlanCost:
    """Cost estimate of a :class:`~futurefill.plan.Plan` for a number of channels and a batch.

    FLOP model: a real FFT of size ``n`` costs ``2.5 n log2 n``; a task is a forward FFT, a
    complex spectrum product (``6 (n/2+1)``) and an inverse FFT, plus the addition into the
    accumulator; a local window of ``w`` taps costs ``2 w``. The FLOPs split into *transform*
    FLOPs (the FFTs of the tasks and of the prefill) and *multiply-add* FLOPs (local windows,
    spectrum products, accumulations), each also given in units of the offline floor
    (:func:`floor_flops` of ``prompt + length`` positions). ``repr`` is one line; ``str`` is
    the whole table, which says whether its figures are per channel and batch row
    (:attr:`per_channel`: no width was given, as when a plan is printed) or for ``channels x
    batch`` rows.

    Examples
    --------
    >>> import futurefill
    >>> cost = futurefill.make_plan(16, "naive").cost()
    >>> cost.worst_step, int(cost.worst_step_flops)  # the last step sums 16 taps
    (15, 32)
    >>> print(futurefill.make_plan(8, "continuous").cost(channels=2))  # doctest: +ELLIPSIS
    Plan('continuous', length=8, prompt=0, direct_below=1 [default])
      figures                   : channels x batch = 2 x 1
      FutureFill tasks          : 7
    ...
    """

    plan: PlanTables
    channels: int
    batch: int
    prefill_flops: float
    online_flops: float
    worst_step: int
    worst_step_flops: float
    state_values: int
    spectrum_values: int
    window_values: int
    tasks_by_fft_size: dict[int, tuple[int, float]]
    transform_flops: float = 0.0
    multiply_add_flops: float = 0.0
    floor_flops: float = 0.0
    per_channel: bool = False

    @property
    def flops_per_step(self) -> float:
        """Average online FLOPs per step."""
        return self.online_flops / max(self.plan.length, 1)

    @property
    def transform_vs_floor(self) -> float:
        """Transform FLOPs (prefill and online) in units of the offline floor's FLOPs."""
        return self.transform_flops / self.floor_flops

    @property
    def multiply_add_vs_floor(self) -> float:
        """Multiply-add FLOPs (prefill and online) in units of the offline floor's FLOPs."""
        return self.multiply_add_flops / self.floor_flops

    @property
    def total_vs_floor(self) -> float:
        """All FLOPs (prefill and online) in units of the offline floor's FLOPs."""
        return self.transform_vs_floor + self.multiply_add_vs_floor

    def __repr__(self) -> str:
        return (
            f"PlanCost({self.plan!r}, channels={self.channels}, batch={self.batch}, "
            f"online_flops={self.online_flops:.4g})"
        )

    def __str__(self) -> str:
        p = self.plan
        params = [f"length={p.length}", f"prompt={p.prompt}"]
        if p.spec is not None:
            for name, value in p.spec.params.items():
                params.append(f"{name}={value}" + (" [default]" if name in p.defaulted else ""))
        width = (
            "per channel and batch row (a stream's: plan.cost(channels=C, batch=B))"
            if self.per_channel
            else f"channels x batch = {self.channels} x {self.batch}"
        )
        lines = [
            f"Plan({p.schedule!r}, {', '.join(params)})",
            f"  figures                   : {width}",
            f"  FutureFill tasks          : {p.num_tasks}",
            f"  prefill FLOPs             : {self.prefill_flops:.4g}"
            + (f" (FFT size {p.prefill_fft_size})" if p.prompt else ""),
            f"  online FLOPs              : {self.online_flops:.4g}"
            f" ({self.flops_per_step:.4g} per step)",
            f"  x offline floor           : {self.total_vs_floor:.3g}"
            f" (transforms {self.transform_vs_floor:.3g}, multiply-adds"
            f" {self.multiply_add_vs_floor:.3g}; floor {self.floor_flops:.4g} FLOPs)",
            f"  worst step                : t={self.worst_step}"
            f" ({self.worst_step_flops:.4g} FLOPs)",
            f"  state (inputs + future)   : {self.state_values} values",
            f"  filter spectra            : {self.spectrum_values} complex values",
            f"  longest local window      : {p.window_length} taps",
        ]
        program = getattr(p, "transforms", None)
        if program is not None and program.shares:
            lines.append(
                f"  shared transforms         : {program.count(FORWARD)} forward,"
                f" {program.count(PRODUCT)} products, {program.count(INVERSE)} inverse"
                f" ({program.num_registers} spectrum registers)"
            )
        if self.tasks_by_fft_size:
            lines.append("  FFT size   tasks        FLOPs")
            for size, (count, flops) in sorted(self.tasks_by_fft_size.items()):
                lines.append(f"  {size:>8d} {count:>7d} {flops:>12.4g}")
        return "\n".join(lines)


def window_widths(plan: PlanTables) -> np.ndarray:
    """Taps of the local window of every online step (``1``: the step's own input only)."""
    return plan.slot.astype(np.int64) - plan.window_slot + 1


def plan_cost(
    plan: PlanTables, *, channels: int | None = None, batch: int | None = None
) -> PlanCost:
    """The :class:`PlanCost` of ``plan`` for ``channels`` channels and a batch of ``batch``
    (per channel and batch row when neither is given)."""
    per_channel = channels is None and batch is None
    channels = 1 if channels is None else channels
    batch = 1 if batch is None else batch
    bc = channels * batch
    task_transforms, task_multiply_adds = _task_flops(plan)
    task_flops = task_transforms + task_multiply_adds
    per_step_tasks = np.zeros(plan.length)
    np.add.at(per_step_tasks, plan.after_step, task_flops)
    window = 2.0 * window_widths(plan)
    step_flops = (window + per_step_tasks) * bc
    prefill_transforms = prefill_products = 0.0
    if plan.prompt:
        m = float(plan.prefill_fft_size)
        prefill_transforms = float(3 * fft_flops(m)) * bc
        prefill_products = float(_product_flops(m)) * bc
    spectra = sum(k[2] // 2 + 1 for k in plan.spectrum_keys)
    sizes, counts = np.unique(plan.fft_size, return_counts=True)
    by_size = {
        int(s): (int(k), float(task_flops[plan.fft_size == s].sum() * bc))
        for s, k in zip(sizes, counts, strict=True)
    }
    return PlanCost(
        plan=plan,
        channels=channels,
        batch=batch,
        prefill_flops=prefill_transforms + prefill_products,
        online_flops=float(step_flops.sum()),
        worst_step=int(np.argmax(step_flops)),
        worst_step_flops=float(step_flops.max()),
        state_values=plan.buffer_length * bc,
        spectrum_values=spectra * channels,
        window_values=plan.window_length * channels,
        tasks_by_fft_size=by_size,
        transform_flops=prefill_transforms + float(task_transforms.sum()) * bc,
        multiply_add_flops=prefill_products + float(task_multiply_adds.sum() + window.sum()) * bc,
        floor_flops=floor_flops(plan.total) * bc,
        per_channel=per_channel,
    )


def _alone_flops(plan: PlanTables) -> tuple[np.ndarray, np.ndarray]:
    """Transform and multiply-add FLOPs of every task run on its own: two transforms, a
    spectral product and the addition into its target."""
    n = plan.fft_size.astype(np.float64)
    extent = plan.dst_stop - plan.dst_start
    return np.asarray(2 * fft_flops(n)), np.asarray(_product_flops(n) + extent)


def _task_flops(plan: PlanTables) -> tuple[np.ndarray, np.ndarray]:
    """Transform and multiply-add FLOPs of every task, shared transforms counted once.

    A task run on its own costs :func:`_alone_flops`. Tasks of steps that share transforms
    (:attr:`Plan.transforms`) are charged what their ops cost: each forward transform to the
    task that writes its register, the product (and its addition into the sum of its target)
    to each task, and the inverse transform and the addition into the target to the task
    named by the inverse.
    """
    transforms, multiply_adds = _alone_flops(plan)
    program = getattr(plan, "transforms", None)
    if program is None or not program.shares:
        return transforms, multiply_adds
    shared = ~program.fused[plan.after_step]
    transforms[shared] = 0.0
    multiply_adds[shared] = 0.0
    task, kind = program.task, program.kind
    m = plan.fft_size[task].astype(np.float64)
    op_transforms = np.where(kind == PRODUCT, 0.0, fft_flops(m))
    target = (plan.dst_stop - plan.dst_start)[task]
    op_multiply_adds = np.select(
        [kind == PRODUCT, kind == INVERSE], [_product_flops(m) + m + 2, target], 0.0
    )
    np.add.at(transforms, task, op_transforms)
    np.add.at(multiply_adds, task, op_multiply_adds)
    return transforms, multiply_adds


# ---------------------------------------------------------------------- calibrated time
@runtime_checkable
class TimeModel(Protocol):
    """Measured costs of one backend, dtype and width from which a plan's time follows
    (:class:`futurefill.measure.calibration.Calibration` is one).

    Examples
    --------
    Any object with these four members is one:

    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(  # made-up costs: 1 per step, 0.5 per extra tap, n/2 per task
    ...     call_seconds=0.5, output_seconds=0.0,
    ...     window_seconds=lambda widths: 1.0 + 0.5 * (widths - 1),
    ...     task_seconds=lambda sizes: sizes / 2)
    >>> from futurefill.plan import TimeModel
    >>> isinstance(model, TimeModel)
    True
    """

    @property
    def call_seconds(self) -> float:
        """What one ``OnlineConv.step`` call costs beyond a step of a rollout."""

    @property
    def output_seconds(self) -> float:
        """What one step of a rollout as long as the plan's costs beyond the steps of the
        short rollouts :meth:`window_seconds` was measured in: writing its share of a large,
        freshly allocated output (first touch of new memory)."""

    def window_seconds(self, widths: np.ndarray) -> np.ndarray:
        """Seconds of one rollout step whose local window has ``widths`` taps (per-step
        overhead included), elementwise."""

    def task_seconds(self, sizes: np.ndarray) -> np.ndarray:
        """Seconds of one FutureFill task of FFT size ``sizes``, elementwise."""


@dataclass(frozen=True)
class PredictedTime:
    """A plan's online time predicted from a :class:`TimeModel`, split by where it goes.

    Attributes
    ----------
    steps : float
        ``length`` steps with a one-tap window: the per-step overhead (dispatch, feedback).
    output : float
        A rollout's writes into its fresh output array beyond what short rollouts pay
        (0 for ``OnlineConv.step`` calls).
    windows : float
        The local windows beyond their first tap.
    tasks : float
        The FutureFill tasks.
    task_overhead : float
        The part of :attr:`tasks` that the smallest task (FFT size 2) would cost each task:
        the per-call overhead of a task.
    calls : float
        The per-call overhead of ``OnlineConv.step`` (0 for a rollout).

    Examples
    --------
    >>> from futurefill.plan import PredictedTime
    >>> t = PredictedTime(steps=8.0, windows=0.0, tasks=12.0, task_overhead=7.0, calls=0.0)
    >>> t.seconds, t.overhead, t.overhead_share
    (20.0, 15.0, 0.75)
    """

    steps: float
    windows: float
    tasks: float
    task_overhead: float
    calls: float
    output: float = 0.0

    @property
    def seconds(self) -> float:
        """The predicted time in all."""
        return self.steps + self.output + self.windows + self.tasks + self.calls

    @property
    def overhead(self) -> float:
        """The part that does no arithmetic to speak of: per-step (the output included),
        per-task and per-call."""
        return self.steps + self.output + self.task_overhead + self.calls

    @property
    def overhead_share(self) -> float:
        """:attr:`overhead` as a fraction of :attr:`seconds`."""
        return min(self.overhead / self.seconds, 1.0) if self.seconds > 0 else 0.0


def predict_time(plan: PlanTables, model: TimeModel, *, calls: bool = False) -> PredictedTime:
    """The online time of ``plan`` predicted by ``model``, split by where it goes.

    A task that shares transforms (:attr:`Plan.transforms`) is charged the calibrated time
    of a task of its FFT size in proportion to the FLOPs it is charged (see
    :func:`plan_cost`): a transform shared by four tasks costs each a quarter.

    Parameters
    ----------
    plan : Plan
        The schedule (its prefill is not counted).
    model : TimeModel
        Measured costs for the backend, dtype and width the plan will run with.
    calls : bool
        Predict ``length`` calls of ``OnlineConv.step`` instead of one rollout.

    Returns
    -------
    PredictedTime

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(  # made-up costs: 1 per step, 0.5 per extra tap, n/2 per task
    ...     call_seconds=0.5, output_seconds=0.0,
    ...     window_seconds=lambda widths: 1.0 + 0.5 * (widths - 1),
    ...     task_seconds=lambda sizes: sizes / 2)
    >>> import futurefill
    >>> from futurefill.plan import predict_time
    >>> predict_time(futurefill.make_plan(8, "continuous"), model)
    PredictedTime(steps=8.0, windows=0.0, tasks=12.0, task_overhead=7.0, calls=0.0, output=0.0)
    >>> predict_time(futurefill.make_plan(8, "naive"), model).windows  # 0 + 1 + ... + 7 taps
    14.0
    """
    per_step = model.window_seconds(window_widths(plan))
    one_tap = float(model.window_seconds(np.ones(1, np.int64))[0])
    tasks = model.task_seconds(plan.fft_size.astype(np.int64))
    # Tasks sharing transforms: their calibrated time in proportion to their FLOPs.
    tasks = tasks * sum(_task_flops(plan)) / sum(_alone_flops(plan))
    smallest = float(model.task_seconds(np.full(1, 2, np.int64))[0])
    return PredictedTime(
        steps=one_tap * plan.length,
        windows=float(per_step.sum()) - one_tap * plan.length,
        tasks=float(tasks.sum()),
        task_overhead=min(smallest, float(tasks.min(initial=smallest))) * plan.num_tasks,
        calls=model.call_seconds * plan.length if calls else 0.0,
        output=0.0 if calls else model.output_seconds * plan.length,
    )


def predicted_seconds(plan: PlanTables, model: TimeModel, *, calls: bool = False) -> float:
    """Predicted seconds of the online steps of ``plan`` (see :func:`predict_time`).

    Examples
    --------
    >>> import futurefill
    >>> from types import SimpleNamespace as made_up  # 1 per step, 0.5 per extra tap, n/2 a task
    >>> model = made_up(call_seconds=0.5, output_seconds=0.0, task_seconds=lambda n: n / 2,
    ...                 window_seconds=lambda widths: 1.0 + 0.5 * (widths - 1))
    >>> plans = {s: futurefill.make_plan(8, s) for s in ("naive", "epoched", "continuous")}
    >>> {s: futurefill.predicted_seconds(p, model) for s, p in plans.items()}
    {'naive': 22.0, 'epoched': 18.0, 'continuous': 20.0}
    >>> futurefill.predicted_seconds(plans["naive"], model, calls=True)  # 8 calls of 0.5 more
    26.0
    """
    return predict_time(plan, model, calls=calls).seconds
