"""Batch scoring on real servers (S3 API, Dask, MLflow): one version per run, replace on re-run,
predictions contract, drift report, and lineage both ways."""

from __future__ import annotations

import pandas as pd
import pytest

from ml import cli, lineage, registry, score, score_select, storage, tracking
from ml.errors import TransientError
from ml.model_versions import CHAMPION, version_uri
from ml.score import PREDICTIONS_CONTRACT
from ml.validation.suite import validate_frame
from tests.integration import _models

pytestmark = pytest.mark.integration

NAME = "flights_delay_scoring"


@pytest.fixture(scope="module")
def champion(s3_server, dask_cluster, mlflow_server):
    fs = _models.feature_set()
    good = _models.trained(fs.ref, epochs=3)
    v1 = _models.copy_version(good, NAME)
    v2 = _models.copy_version(good, NAME)
    registry.promote(NAME, v1, fs.eval_snapshot)
    return {"fs": fs, "good": good, "v1": v1, "v2": v2}


@pytest.fixture(scope="module")
def scored(champion):
    """A daily run planned with v1; `champion` moves to v2 before it scores."""
    plan = score_select.plan_run("flights", model_name=NAME, max_days=3)
    assert plan.version == champion["v1"]
    # The newest three validated days (other modules of the package may validate later ones).
    newest = sorted(storage.latest_batches("validated", "flights"))[-3:]
    assert list(plan.partitions) == newest and f"date={_models.DAYS[-1]}" in storage.latest_batches(
        "validated", "flights"
    )
    tracking.client().set_registered_model_alias(NAME, CHAMPION, champion["v2"])
    try:
        result = score.run_scoring("flights", plan)
    finally:
        tracking.client().set_registered_model_alias(NAME, CHAMPION, champion["v1"])
    return {**result.to_dict(), "plan": plan}


def test_a_run_scores_every_partition_with_the_one_version_it_resolved(champion, scored):
    v1 = champion["v1"]
    assert scored["model_version"] == v1 and len(scored["refs"]) == 3
    for ref in scored["refs"]:
        manifest = storage.read_manifest(ref)
        assert manifest.extra["model_version"] == v1 and ref.endswith(f"model-{v1}")
        rows = storage.read_batch(manifest)
        assert (rows["model_version"] == v1).all()
        assert rows["probability"].between(0, 1).all()
        assert (rows["label"] == (rows["probability"] >= 0.5)).all()
        day_rows = storage.latest_batches("validated", "flights")[manifest.partition].rows
        assert len(rows) == manifest.rows == day_rows
    # The daily run has nothing left to do for v1 on these days.
    pending = score_select.pending_partitions("flights", v1, model_name=NAME)
    assert not set(scored["plan"].partitions) & set(pending)


def test_a_partition_run_scores_its_batches_partitions_the_champion_has_not(champion, scored):
    """score_partitions_<dataset>: the validated batches that started the run name what it
    scores, less what the champion scored already (a re-delivered event scores nothing)."""
    validated = storage.latest_batches("validated", "flights")
    done = scored["plan"].partitions[-1]
    new = next(p for p in sorted(validated) if p not in scored["plan"].partitions)
    refs = [validated[done].ref, validated[new].ref]
    plan = score_select.plan_run("flights", model_name=NAME, batches=refs)
    assert plan.version == champion["v1"] and list(plan.partitions) == [new]
    assert score_select.plan_run("flights", model_name=NAME, batches=refs[:1]).partitions == ()


def test_the_model_is_loaded_once_per_worker(champion, scored, dask_cluster):
    from distributed import Client

    uri = version_uri(NAME, champion["v1"])
    with Client(dask_cluster) as client:
        loads = client.run(score.worker_loads)
    assert all(w.get(uri, 0) <= 1 for w in loads.values()), loads
    assert sum(w.get(uri, 0) for w in loads.values()) >= 1


def test_rescoring_a_day_with_the_same_version_replaces_it(champion, scored):
    day = _models.DAYS[-1]
    again = score.score("flights", day, version=champion["v1"], model_name=NAME)
    assert again.ref in scored["refs"] and again.version == champion["v1"]
    same = [
        m
        for m in storage.list_batches("predictions", "flights", f"date={day}")
        if m.extra.get("model_name") == NAME
    ]
    assert len(same) == 1
    assert len(storage.read_batch(same[0])) == same[0].rows
    # The superseded attempt was removed after the switch: only the committed one is left.
    fs = storage.filesystem()
    fs.invalidate_cache(same[0].prefix)
    # Objects, not a delimited listing: moto keeps listing a prefix whose objects were deleted
    # in a versioned bucket.
    folders = {p.removeprefix(same[0].prefix + "/").split("/")[0] for p in fs.find(same[0].prefix)}
    assert folders == {same[0].attempt, storage.MANIFEST}


def test_a_failed_rescore_leaves_the_committed_predictions(champion, scored, monkeypatch):
    day = _models.DAYS[-2]
    ref = next(r for r in scored["refs"] if f"date={day}" in r)
    before = storage.read_manifest(ref)

    def s3_went_away(*args, **kwargs):
        raise TransientError("S3 went away after the predictions were written")

    monkeypatch.setattr(score, "_check", s3_went_away)
    with pytest.raises(TransientError):
        score.score("flights", day, version=champion["v1"], model_name=NAME)
    after = storage.read_manifest(ref)
    assert after == before  # the day keeps its predictions, readable
    assert len(storage.read_batch(after)) == after.rows
    # A predictions reader never infers columns from the path (`date=...` folders).
    assert "date" not in storage.read_dask([after]).columns


def test_drift_report_per_scored_batch(champion, scored):
    assert len(scored["drift_reports"]) == 3
    doc = storage.read_json(scored["drift_reports"][0])
    assert doc["model_version"] == champion["v1"] and doc["metric"] == "psi"
    assert set(doc["psi"]) >= {"distance", "carrier", "temp", "dep_hour"}
    assert all(v >= 0 for v in doc["psi"].values())
    assert doc["feature_version"] == champion["fs"].feature_version
    svg = storage.filesystem().cat_file(doc["chart"].removeprefix("s3://")).decode()
    assert svg.startswith("<svg")
    manifest = storage.read_manifest(scored["refs"][0])
    assert manifest.extra["drift_report"] == scored["drift_reports"][0]
    # Drift is measured against the training data: a week of January drifts from its own
    # first days at least on the day-of-year features, and the report says which ones.
    assert doc["drifted"] == sorted(c for c, v in doc["psi"].items() if v > doc["threshold"])


def test_predictions_contract_refuses_bad_output():
    bad = pd.DataFrame(
        {
            "probability": [0.2, 1.5],
            "label": [False, True],
            "model_version": pd.Series(["3", "champion"], dtype="string"),
        }
    )
    report = validate_frame(bad, str(PREDICTIONS_CONTRACT))
    assert not report.success
    assert set(report.failed_rules) == {
        "predictions.probability.max",
        "predictions.model_version.regex",
    }


def test_lineage_round_trips(champion, scored, capsys):
    pred_ref = scored["refs"][-1]
    up = lineage.upstream(pred_ref)
    assert up["model"]["version"] == champion["v1"]
    assert up["mlflow_run"]["run_id"] == champion["good"].run_id
    assert up["feature_set"]["feature_version"] == champion["fs"].feature_version
    assert len(up["training_batches"]) == len(champion["fs"].manifest["inputs"])
    scored_flights = [b for b in up["scored_batches"] if "/flights/" in b["ref"]]
    # flights + weather, and the planes and airports snapshots its features look up
    assert len(scored_flights) == 1 and len(up["scored_batches"]) == 4
    raw = scored_flights[0]["raw"][0]
    assert raw["ref"].startswith("s3://raw/flights/") and raw["source"]

    down = lineage.downstream(raw["ref"])
    assert scored_flights[0]["ref"] in [c["ref"] for c in down["checked"]]
    assert pred_ref in [p["ref"] for p in down["predictions"]]
    assert champion["fs"].feature_version in [f["feature_version"] for f in down["feature_sets"]]
    assert champion["good"].version in [
        m["version"] for m in down["model_versions"] if m["name"] == "flights_delay"
    ]

    assert cli.main(["lineage", pred_ref]) == 0
    out = capsys.readouterr().out
    assert f"model {NAME} version {champion['v1']}" in out and raw["ref"] in out
    assert cli.main(["lineage", "--raw", raw["ref"]]) == 0
    assert pred_ref in capsys.readouterr().out
    assert cli.main(["lineage", "--raw", pred_ref]) == 1  # not a raw batch: a clear error
