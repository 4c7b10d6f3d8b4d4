"""The demo's summary: its text and its JSON (`mlpipe demo [--json]`)."""

from __future__ import annotations

import json

import pytest

from ml.dev import demo

pytestmark = pytest.mark.unit


def _summary(**sections) -> demo.DemoSummary:
    return demo.DemoSummary(
        ok=True,
        dates="2013-01-01 .. 2013-01-10",
        runs={"ingest_flights": "success", "train_flights": "success"},
        ingested={"flights": 100, "planes": 5},
        validated={"flights": 90, "planes": 5},
        quarantined={"flights": 10, "planes": 0},
        urls={"Airflow UI": "http://127.0.0.1:8080", "S3 endpoint": "http://127.0.0.1:9000"},
        **sections,
    )


def test_chain_dag_ids():
    assert demo.chain_dag_ids("orders") == {
        "ingest": "ingest_orders",
        "validate": "validate_orders",
        "preprocess": "preprocess_orders",
        "train": "train_orders",
        "promote": "promote_orders",
        "batch_score": "batch_score_orders",
    }


def test_json_has_the_sections_that_are_there_in_order():
    bare = _summary().to_dict()
    assert list(bare) == ["ok", "dates", "runs", "ingested", "validated", "quarantined", "urls"]
    full = _summary(
        model=demo.ChampionSummary("flights_delay", "2", "0.71", "beat the champion", "r1"),
        challenger=demo.ChallengerSummary("3", "refused"),
        predictions=demo.PredictionsSummary("s3://predictions/x", 42, "2"),
        seconds=12.5,
    ).to_dict()
    assert list(full)[6:] == ["model", "challenger", "predictions", "urls", "seconds"]
    assert full["model"] == {
        "name": "flights_delay",
        "champion_version": "2",
        "test_roc_auc": "0.71",
        "promotion": "beat the champion",
        "run_id": "r1",
    }
    assert full["predictions"] == {"ref": "s3://predictions/x", "rows": 42, "model_version": "2"}
    json.dumps(full)


def test_text_summary():
    text = demo.format_summary(
        _summary(
            model=demo.ChampionSummary("flights_delay", "2", "0.71", "beat the champion", "r1"),
            predictions=demo.PredictionsSummary("s3://predictions/x", 42, "2"),
            seconds=12.5,
        )
    )
    lines = text.splitlines()
    assert "Pipeline demo: flights of 2013-01-01 .. 2013-01-10  ->  OK  (12.5 s)" in lines
    assert "Rows quarantined:           flights 10, planes 0" in lines
    assert "Model:                      flights_delay version 2 holds 'champion'" in lines
    assert "Predictions:                42 rows by version 2 at s3://predictions/x" in lines
    assert not any(line.startswith("Challenger:") for line in lines)
    failed = demo.format_summary(demo.DemoSummary(**{**_summary().__dict__, "ok": False}))
    assert "->  FAILED  (? s)" in failed
