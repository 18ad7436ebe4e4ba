"""The cost model of a plan: :class:`PlanCost` (cheap to build, the table on demand)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._tables import PlanTables

__all__ = ["PlanCost", "fft_flops", "plan_cost"]


def fft_flops(n: np.ndarray | float) -> np.ndarray | float:
    """FLOPs of one real FFT of size ``n``: the usual ``2.5 n log2 n``."""
    return 2.5 * n * np.log2(np.maximum(n, 2))


@dataclass(frozen=True)
class PlanCost:
    """Cost estimate of a :class:`~futurefill.plan.Plan` for a number of channels and a batch.

    FLOP model: a real FFT of size ``n`` costs ``2.5 n log2 n``; a task is a forward FFT, a
    complex spectrum product (``6 (n/2+1)``) and an inverse FFT, plus the addition into the
    accumulator; a local window of ``w`` taps costs ``2 w``. ``repr`` is one line;
    ``str`` is the whole table.
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

    @property
    def flops_per_step(self) -> float:
        """Average online FLOPs per step."""
        return self.online_flops / max(self.plan.length, 1)

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
        lines = [
            f"Plan({p.schedule!r}, {', '.join(params)})",
            f"  channels x batch          : {self.channels} x {self.batch}",
            f"  FutureFill tasks          : {p.num_tasks}",
            f"  prefill FLOPs             : {self.prefill_flops:.4g}"
            + (f" (FFT size {p.prefill_fft_size})" if p.prompt else ""),
            f"  online FLOPs              : {self.online_flops:.4g}"
            f" ({self.flops_per_step:.4g} per step)",
            f"  worst step                : t={self.worst_step}"
            f" ({self.worst_step_flops:.4g} FLOPs)",
            f"  state (inputs + future)   : {self.state_values} values",
            f"  filter spectra            : {self.spectrum_values} complex values",
            f"  longest local window      : {p.window_length} taps",
        ]
        if self.tasks_by_fft_size:
            lines.append("  FFT size   tasks        FLOPs")
            for size, (count, flops) in sorted(self.tasks_by_fft_size.items()):
                lines.append(f"  {size:>8d} {count:>7d} {flops:>12.4g}")
        return "\n".join(lines)


def plan_cost(plan: PlanTables, *, channels: int = 1, batch: int = 1) -> PlanCost:
    """The :class:`PlanCost` of ``plan`` for ``channels`` channels and a batch of ``batch``."""
    bc = channels * batch
    n = plan.fft_size.astype(np.float64)
    task_flops = 2 * fft_flops(n) + 6.0 * (n // 2 + 1) + (plan.dst_stop - plan.dst_start)
    per_step_tasks = np.zeros(plan.length)
    np.add.at(per_step_tasks, plan.after_step, task_flops)
    window = 2.0 * (plan.slot.astype(np.float64) - plan.window_slot + 1)
    step_flops = (window + per_step_tasks) * bc
    prefill = 0.0
    if plan.prompt:
        m = float(plan.prefill_fft_size)
        prefill = float(3 * fft_flops(m) + 6 * (m // 2 + 1)) * bc
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
        prefill_flops=prefill,
        online_flops=float(step_flops.sum()),
        worst_step=int(np.argmax(step_flops)),
        worst_step_flops=float(step_flops.max()),
        state_values=plan.buffer_length * bc,
        spectrum_values=spectra * channels,
        window_values=plan.window_length * channels,
        tasks_by_fft_size=by_size,
    )
