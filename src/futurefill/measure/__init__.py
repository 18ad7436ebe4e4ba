"""The measuring tools: benchmarks, latency, calibration of the cost model, tuning and plots.

Nothing in the library imports this package (``import futurefill`` loads none of it); the
command line and :func:`futurefill.tune` load it on demand. Modules:

* :mod:`~futurefill.measure.bench` — same-run comparison of schedules on one layer;
* :mod:`~futurefill.measure.bench_model` — end-to-end generation from a reference model;
* :mod:`~futurefill.measure.bench_open` — the cost of stopping an open-ended stream;
* :mod:`~futurefill.measure.bench_serve` — a serving trace: the pool server vs baselines;
* :mod:`~futurefill.measure.gpu_table` — the GPU table (``scripts/gpu-table.sh``): one layer
  and models end to end within a budget, with peak device memory;
* :mod:`~futurefill.measure.latency` — per-step latency percentiles;
* :mod:`~futurefill.measure.calibration` — the cost model's constants, measured;
* :mod:`~futurefill.measure.tuning` — :func:`futurefill.tune`;
* :mod:`~futurefill.measure.plot` — plan tilings, scaling and latency figures (matplotlib).
"""
