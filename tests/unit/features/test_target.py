"""Target encoding per kind: threshold, positive values, bins, listed classes, regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.features.target import (
    TARGET,
    RareClassError,
    TargetValueError,
    add_target,
    check_class_fractions,
    encode,
    target_spec,
    with_target,
)

pytestmark = pytest.mark.unit

ROWS = pd.DataFrame(
    {
        "delay": [-3.0, 15.0, 15.5, 60.0, 61.0, None],
        "weather": pd.array(["rain", "sun", "fog", None, "rain", "snow"], dtype="string"),
    }
)


def codes(target: dict) -> list:
    return [None if np.isnan(v) else v for v in encode(ROWS, target).tolist()]


def test_binary_threshold_keeps_the_flights_meaning():
    target = {"source_column": "delay", "threshold": 15, "task": "binary_classification"}
    assert codes(target) == [0.0, 0.0, 1.0, 1.0, 1.0, None]
    assert target_spec(target)["kind"] == "binary"
    assert encode(ROWS, target).dtype == "float32"


def test_binary_positive_values_of_a_categorical_column():
    target = {"source_column": "weather", "kind": "binary", "positive": ["rain", "snow"]}
    assert codes(target) == [1.0, 0.0, 0.0, None, 1.0, 1.0]


def test_multiclass_bins_include_their_right_edge():
    target = {
        "source_column": "delay",
        "kind": "multiclass",
        "bins": [15, 60],
        "classes": ["on_time", "short", "long"],
    }
    assert codes(target) == [0.0, 0.0, 1.0, 1.0, 2.0, None]
    assert target_spec(target)["classes"] == ["on_time", "short", "long"]


def test_multiclass_values_not_listed_go_to_other_or_are_refused():
    target = {"source_column": "weather", "kind": "multiclass", "classes": ["rain", "sun"]}
    with pytest.raises(TargetValueError, match=r"\['fog', 'snow'\] are not among the classes"):
        encode(ROWS, target)
    target["other"] = True
    assert target_spec(target)["classes"] == ["rain", "sun", "other"]
    assert codes(target) == [0.0, 1.0, 2.0, None, 0.0, 2.0]


def test_regression_keeps_the_value_and_missing_rows_are_dropped():
    target = {"source_column": "delay", "kind": "regression", "transform": None}
    assert codes(target) == [-3.0, 15.0, 15.5, 60.0, 61.0, None]
    kept = with_target(ROWS, target)
    assert len(kept) == 5 and kept[TARGET].notna().all()
    assert add_target(ROWS, target)[TARGET].isna().sum() == 1


def test_a_rare_class_is_refused_by_the_stated_rule():
    spec = {"kind": "multiclass", "source_column": "c", "classes": ["a", "b", "c"]}
    y = np.array([0] * 90 + [1] * 9 + [2])
    check_class_fractions(y, spec)  # no rule: nothing refused
    check_class_fractions(y, {**spec, "min_class_fraction": 0.01})
    with pytest.raises(RareClassError, match=r"\{'c': 0.01\} hold less than min_class_fraction"):
        check_class_fractions(y, {**spec, "min_class_fraction": 0.02})
