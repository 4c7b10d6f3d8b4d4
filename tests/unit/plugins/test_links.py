"""Extra-link URLs from what each task returns (its XCom), no Airflow and no storage."""

from __future__ import annotations

import pytest
from mlpipe_console import links
from mlpipe_console.links import evidence_links

pytestmark = pytest.mark.unit

BUCKETS = {z: z for z in links.ZONES}
UI = "http://mlflow.example:5000/"
P = "/mlpipe"


def _links(value, model_name=None):
    return evidence_links(value, buckets=BUCKETS, prefix=P, mlflow_ui=UI, model_name=model_name)


def test_a_validated_batch_links_to_its_validation_report():
    ref = "s3://validated/flights/date=2013-01-01/20260101T000000-abc"
    assert _links(ref) == {
        links.VALIDATION: "/mlpipe/reports/validation/flights/date%3D2013-01-01/"
        "20260101T000000-abc.html"
    }


def test_a_quarantined_batch_links_to_its_report_and_its_entry():
    ref = "s3://quarantine/flights/date=2013-01-01/b1"
    found = _links(ref)
    assert found[links.VALIDATION].endswith("/validation/flights/date%3D2013-01-01/b1.html")
    assert found[links.QUARANTINE] == (
        "/mlpipe/quarantine?ref=s3%3A%2F%2Fquarantine%2Fflights%2Fdate%3D2013-01-01%2Fb1"
    )


def test_a_validate_chunk_links_to_its_batch_or_to_the_list_of_their_reports():
    one = "s3://validated/flights/date=2013-01-01/b1"
    raw = "s3://raw/flights/date=2013-01-01/b1"
    assert _links([{"ref": raw, "validated": one}]) == _links(one)
    two = "s3://validated/flights/date=2013-01-02/b2"
    chunk = [
        {"ref": raw, "validated": one},
        {"ref": "s3://raw/flights/date=2013-01-02/b2", "validated": two},
        {"ref": "s3://raw/flights/date=2013-01-03/b3", "held": "broke flights.dep_delay.max"},
    ]
    page = _links(chunk)[links.VALIDATION]
    assert page.startswith("/mlpipe/validation-reports?ref=s3%3A%2F%2Fvalidated")
    assert page.count("ref=") == 2
    assert links.validation_report_links([one, two], BUCKETS, P) == [
        (one, "/mlpipe/reports/validation/flights/date%3D2013-01-01/b1.html"),
        (two, "/mlpipe/reports/validation/flights/date%3D2013-01-02/b2.html"),
    ]
    assert _links([{"ref": raw, "error": "S3 down"}]) == {}


def test_a_feature_set_links_to_its_page():
    ref = "s3://features/flights/fv-1"
    want = {links.FEATURES: "/mlpipe/feature-set?ref=s3%3A%2F%2Ffeatures%2Fflights%2Ffv-1"}
    assert _links(ref) == want  # the train DAG's feature_set task returns the ref
    assert _links({"ref": ref, "feature_version": "fv-1", "rows": {}, "reused": False}) == want


def test_training_links_to_the_mlflow_run_and_the_model_version():
    found = _links({"model_name": "flights_delay", "version": "4", "run_id": "r1"})
    assert found == {
        links.RUN: "http://mlflow.example:5000/#/runs/r1",
        links.VERSION: "http://mlflow.example:5000/#/models/flights_delay/versions/4",
    }
    assert _links({"run_id": "r2", "metrics": {}, "task_key": "k"}) == {
        links.RUN: "http://mlflow.example:5000/#/runs/r2"
    }


def test_a_promotion_links_to_its_audit_record_and_the_version_of_the_dags_model():
    value = {
        "version": "4",
        "promoted": True,
        "reason": "beat",
        "audit_record": "s3://reports/promotions/flights_delay/x-promote-v4.json",
    }
    found = _links(value, model_name="flights_delay")
    assert found[links.PROMOTION] == "/mlpipe/reports/promotions/flights_delay/x-promote-v4.json"
    assert found[links.VERSION].endswith("/#/models/flights_delay/versions/4")
    # An audit record outside the reports bucket is no evidence of ours: no link.
    assert links.PROMOTION not in _links({**value, "audit_record": "s3://raw/x.json"})


def test_scoring_links_to_predictions_drift_and_version():
    value = {
        "model_name": "flights_delay",
        "model_version": "4",
        "refs": ["s3://predictions/flights/date=2013-01-07/model=4"],
        "rows": 10,
        "drift_reports": ["s3://reports/drift/flights/date=2013-01-07/model=4.json"],
        "drifted": [],
    }
    found = _links(value)
    assert found[links.PREDICTIONS] == (
        "/mlpipe/batches?ref=s3%3A%2F%2Fpredictions%2Fflights%2Fdate%3D2013-01-07%2Fmodel%3D4"
    )
    assert (
        found[links.DRIFT]
        == "/mlpipe/drift?key=drift%2Fflights%2Fdate%3D2013-01-07%2Fmodel%3D4.json"
    )
    assert found[links.VERSION].endswith("/versions/4")


def test_values_without_evidence_have_no_links():
    assert _links(None) == {}
    assert _links(["s3://raw/flights/date=2013-01-01/b1"]) == {}
    assert _links({"ref": "s3://raw/flights/date=2013-01-01/b1", "rows": 1, "new": True}) == {}
    assert _links("not a ref") == {}
    assert set(links.NAMES) == {
        links.VALIDATION,
        links.QUARANTINE,
        links.FEATURES,
        links.RUN,
        links.VERSION,
        links.PROMOTION,
        links.DRIFT,
        links.PREDICTIONS,
    }
