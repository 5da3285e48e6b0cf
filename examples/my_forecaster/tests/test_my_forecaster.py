"""The plugin's own tests: trajbench's conformance suite, plus what is special about it."""

from __future__ import annotations

import numpy as np
import pytest
from my_forecaster import DampedTrend

import trajbench
from trajbench.testing import check_forecaster


def test_conforms_to_the_forecaster_contract() -> None:
    check_forecaster(DampedTrend())


def test_learns_no_damping_on_straight_lines() -> None:
    lines = np.arange(30, dtype=np.float32)[:, None] * np.array(
        [[0.5, -1.0, 2.0]], dtype=np.float32
    )
    model = DampedTrend().fit(trajbench.TrainingData.from_arrays([lines]))
    assert model.phi_ == 1.0
    np.testing.assert_allclose(model.predict(lines[:5].T, horizon=3), lines[5:8].T, rtol=1e-6)


def test_needs_fit() -> None:
    with pytest.raises(trajbench.NotFittedError):
        DampedTrend().predict(np.zeros((2, 5)), horizon=1)


def test_found_through_its_entry_point() -> None:
    # true once the package is installed (pip install -e examples/my_forecaster)
    assert isinstance(trajbench.get_forecaster("damped"), DampedTrend)
