"""Shared metrics: mode coverage, the image judge and what it measures, manifold metrics,
Frechet and kernel distances, held-out likelihood and the closest-distance ratio."""
import math

import pytest
import torch

from aigc_engine import metrics


# -- mode coverage -----------------------------------------------------------------------------
def test_mode_coverage_hand_computed():
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    samples = torch.tensor([[0.1, 0.0], [0.05, 0.05],  # mode 0, within 3 std = 0.3
                            [1.0, 0.2],                # mode 1
                            [0.0, 1.29],               # mode 2, just inside
                            [0.0, 1.31], [0.5, 0.5]])  # too far from every mode
    out = metrics.mode_coverage(samples, centres, std=0.1)
    assert out["modes"] == 3
    assert out["high_quality"] == pytest.approx(4 / 6)
    # histogram (1/2, 1/4, 1/4, 0): KL to uniform = log 4 - H = 2 log 2 - 1.5 log 2
    assert out["reverse_kl"] == pytest.approx(0.5 * math.log(2))
    assert metrics.mode_coverage(samples + 10, centres, std=0.1) == {
        "modes": 0, "high_quality": 0.0, "reverse_kl": math.inf}
