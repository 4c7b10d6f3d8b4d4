"""The compact variant: pruned where it is close, int8, smaller, measured."""

from __future__ import annotations

import pytest

from ml.training.compact import compact_variant, prune_magnitude
from ml.training.tensors import frame_tensors
from tests.unit.training._fit import fit

pytestmark = pytest.mark.unit


def test_compact_variant_is_smaller_and_close(data):
    _, val, transform = data
    network, _ = fit(data, hidden=128)
    pruned = prune_magnitude(network, 0.5)
    zeros = float((pruned.mlp[0].weight == 0).float().mean())
    assert 0.45 < zeros < 0.55
    _, report = compact_variant(
        network, frame_tensors(val, transform), frame_tensors(val, transform), 0.3, tolerance=0.02
    )
    assert report["size_bytes_compact"] < 0.6 * report["size_bytes_full"]
    assert abs(report["delta_test_roc_auc"]) < 0.02 and report["within_tolerance"] == 1.0
    assert report["cpu_latency_ms_compact"] > 0
