"""A scoring run's plan and result as the batch_score DAG carries them in XCom and extras."""

from __future__ import annotations

import json

import pytest

from ml.scoring_plan import ScoredPartition, ScoringPlan, ScoringResult

pytestmark = pytest.mark.unit


def _scored(day: str, drifted: tuple[str, ...]) -> ScoredPartition:
    return ScoredPartition(
        ref=f"s3://predictions/flights/date={day}/model=3",
        rows=10,
        model_name="flights_delay",
        version="3",
        partition=f"date={day}",
        drift_report=f"s3://reports/drift/flights/date={day}/model=3.json",
        drifted=drifted,
        max_psi=0.5,
    )


def test_the_plan_round_trips_through_xcom_with_the_keys_it_always_had():
    plan = ScoringPlan("flights_delay", "3", ("date=2013-01-06", "date=2013-01-07"))
    xcom = json.loads(json.dumps(plan.to_dict()))
    assert xcom == {
        "model_name": "flights_delay",
        "version": "3",
        "partitions": ["date=2013-01-06", "date=2013-01-07"],
    }
    assert ScoringPlan.from_dict(xcom) == plan
    # No champion yet: nothing to score, and that survives the trip too.
    empty = ScoringPlan("flights_delay", None)
    assert ScoringPlan.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty


def test_the_result_spells_the_version_model_version_at_the_edge():
    plan = ScoringPlan("flights_delay", "3", ("date=2013-01-06", "date=2013-01-07"))
    result = ScoringResult.of(
        plan, [_scored("2013-01-06", ("temp",)), _scored("2013-01-07", ("dep_hour", "temp"))]
    )
    assert result.version == "3" and result.rows == 20
    assert result.drifted == ("dep_hour", "temp")  # every partition's, once, sorted
    xcom = result.to_dict()
    assert json.loads(json.dumps(xcom)) == xcom
    assert xcom == {
        "model_name": "flights_delay",
        "model_version": "3",
        "refs": [
            "s3://predictions/flights/date=2013-01-06/model=3",
            "s3://predictions/flights/date=2013-01-07/model=3",
        ],
        "rows": 20,
        "drift_reports": [
            "s3://reports/drift/flights/date=2013-01-06/model=3.json",
            "s3://reports/drift/flights/date=2013-01-07/model=3.json",
        ],
        "drifted": ["dep_hour", "temp"],
    }


def test_a_plan_with_nothing_to_score_gives_an_empty_result():
    result = ScoringResult.of(ScoringPlan("flights_delay", None), [])
    assert result.to_dict() == {
        "model_name": "flights_delay",
        "model_version": None,
        "refs": [],
        "rows": 0,
        "drift_reports": [],
        "drifted": [],
    }
