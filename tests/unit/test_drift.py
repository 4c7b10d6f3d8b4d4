"""Drift arithmetic: PSI, bin counts through the model's transform, summing partitions."""

from __future__ import annotations

import pandas as pd
import pytest

from ml import drift
from ml.features.transform import FeatureTransform
from ml.scoring_plan import DRIFT_THRESHOLD

pytestmark = pytest.mark.unit


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    ref = [0.25, 0.25, 0.25, 0.25]
    assert drift.psi(ref, [25, 25, 25, 25]) == pytest.approx(0.0)
    small = drift.psi(ref, [30, 25, 25, 20])
    large = drift.psi(ref, [70, 10, 10, 10])
    assert 0 < small < 0.1 < DRIFT_THRESHOLD < large


def test_empty_bins_stay_finite():
    assert drift.psi([0.5, 0.5, 0.0], [0, 10, 10]) < float("inf")


def _transform() -> FeatureTransform:
    return FeatureTransform(
        numeric=["distance"],
        categorical=["origin"],
        derived=[],
        means={"distance": 1000.0},
        stds={"distance": 500.0},
        vocab={"origin": ["EWR", "JFK", "LGA"]},
    )


def test_batch_counts_bin_numeric_and_categorical_inputs():
    profile = {
        "features": {
            "distance": {"kind": "numeric", "edges": [-1.0, 0.0, 1.0], "shares": [0.25] * 4},
            "origin": {"kind": "categorical", "size": 4, "shares": [0.0, 0.5, 0.25, 0.25]},
        }
    }
    df = pd.DataFrame(
        {"distance": [100, 800, 1200, 2000, None], "origin": ["EWR", "EWR", "JFK", "XXX", "LGA"]}
    )
    counts = drift.batch_counts(df, _transform(), profile)
    # scaled: -1.8, -0.4, 0.4, 2.0, and the missing one imputed to the mean (0.0)
    assert counts["distance"] == [1, 1, 2, 1]
    assert counts["origin"] == [1, 2, 1, 1]  # code 0: out of vocabulary
    total = drift.add_counts([counts, counts])
    assert total["origin"] == [2, 4, 2, 2]


def test_chart_marks_drifted_features():
    doc = {
        "dataset": "flights",
        "partition": "date=2013-01-07",
        "model_name": "m",
        "model_version": "3",
        "threshold": 0.2,
        "psi": {"distance": 0.05, "origin": 0.9},
    }
    svg = drift.chart_svg(doc)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count('fill="#d62728"') == 1  # only origin is over the threshold
