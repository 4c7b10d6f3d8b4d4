"""The results training tasks hand on: XCom dicts and back."""

from __future__ import annotations

import pytest

from ml.training.result import BaselineResult, CompactResult, TrainResult

pytestmark = pytest.mark.unit


def test_results_round_trip_through_xcom_dicts():
    result = TrainResult("m", "3", "run", "fv", "s3://features/x/eval", {"test_roc_auc": 0.7})
    assert TrainResult.from_dict(result.to_dict()) == result
    assert result.to_dict()["version"] == "3" and "model_version" not in result.to_dict()
    baseline = BaselineResult("run", {"test_roc_auc": 0.6}, "key")
    assert BaselineResult.from_dict(baseline.to_dict()) == baseline


def test_the_compact_result_keeps_its_report_at_the_top_level_of_the_xcom():
    out = CompactResult("m", "4", False, {"smaller": 1.0}).to_dict()
    assert out == {"model_name": "m", "version": "4", "reused": False, "smaller": 1.0}
