"""The open-ended benchmark: both methods run, agree, and are timed from construction."""

from __future__ import annotations

import pytest

from futurefill import open_length
from futurefill.measure.bench_open import measure_open_ended


def test_open_ended_and_known_length_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(open_length, "FIRST_SEGMENT", 8)  # several segments at these lengths
    results = measure_open_ended([5, 40], channels=3, backend="numpy", repeats=1)
    assert [r.length for r in results] == [5, 40]
    for r in results:
        assert r.max_deviation <= 1e-12  # the same outputs, up to FFT rounding
        assert r.open_seconds > 0 and r.known_seconds > 0
        assert r.as_dict()["ratio"] == pytest.approx(r.open_seconds / r.known_seconds)
    with pytest.raises(ValueError, match="repeats"):
        measure_open_ended([5], repeats=0)
