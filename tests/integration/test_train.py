"""Training on real servers (S3 API, MLflow): a killed attempt resumes in the same run, a NaN loss
fails the run, one version per task instance, the registered pyfunc on raw rows, compression."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from tests.integration import _models

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARAMS = {"epochs": 10, "hidden": 16, "layers": 1, "emb_dim": 4, "batch_size": 128, "patience": 20}


@pytest.fixture(scope="module")
def contract_file(tmp_path_factory) -> str:
    """The flights contract under another dataset and model name: its own experiment and model."""
    return _models.contract_as(tmp_path_factory.mktemp("contract"), "trainsynth")


def write_feature_set(name: str, contract_file: str, rows: int, nan_in_train: bool = False) -> str:
    """A committed feature set in the `features` bucket, in the layout `ml.features` writes."""
    return _models.synthetic_feature_set("trainsynth", name, contract_file, rows, nan_in_train)


def task(run: str) -> dict:
    return {"dag_id": "train_trainsynth", "run_id": run, "task_id": "train_model", "map_index": -1}


def test_a_killed_training_resumes_in_the_same_run_and_registers_once(
    s3_server, mlflow_server, contract_file
):
    import mlflow

    from ml.training.checkpoint import CheckpointStore, task_key
    from ml.training.params import TrainParams
    from ml.training.run import train
    from ml.training.task_run import TASK_KEY_TAG

    ref = write_feature_set("fv-resume", contract_file, rows=5000)
    ti = task("manual__resume")
    key = task_key(**ti)
    code = (
        "import json, sys; from ml.training.run import train; "
        "train(sys.argv[1], json.loads(sys.argv[2]), task_instance=json.loads(sys.argv[3]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, ref, json.dumps(PARAMS), json.dumps(ti)],
        cwd=REPO,
        # The servers of this test session, named explicitly: an earlier test in this process
        # may have pointed MLFLOW_TRACKING_URI elsewhere (mlflow.set_tracking_uri sets it).
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "MLFLOW_TRACKING_URI": mlflow_server,
            "S3_ENDPOINT_URL": s3_server,
        },
        start_new_session=True,
    )
    # Where training keeps them: keyed by the task, the feature version and the params.
    store = CheckpointStore.for_task(
        "trainsynth",
        key,
        feature_version="fv-resume",
        params=asdict(TrainParams.from_dict(PARAMS)),
    )
    deadline = time.monotonic() + 240
    while (store.latest() or {}).get("epoch", -1) < 1:
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint of epoch 1 in time"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = store.latest()["epoch"]
    assert killed_at < PARAMS["epochs"] - 1, "the first attempt was not cut short"

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs(
        [client.get_experiment_by_name("trainsynth").experiment_id],
        filter_string=f"tags.{TASK_KEY_TAG} = '{key}'",
    )
    assert len(runs) == 1
    first_run = runs[0].info.run_id

    result = train(ref, PARAMS, task_instance=ti)  # the Airflow retry
    assert result.run_id == first_run
    starts = [m.value for m in client.get_metric_history(first_run, "attempt_start_epoch")]
    assert starts == [0, killed_at + 1]  # the retry did not repeat the epochs before the kill
    steps = sorted(m.step for m in client.get_metric_history(first_run, "train_loss"))
    assert steps == list(range(PARAMS["epochs"]))  # every epoch logged exactly once
    assert client.get_run(first_run).info.status == "FINISHED"
    # the feature set's splits are the run's dataset inputs, once each although logged twice
    inputs = client.get_run(first_run).inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs}
    assert sorted(contexts) == ["test", "train", "validation"] and len(inputs) == 3
    assert {d.digest for d in contexts.values()} == {"fv-resume"}
    assert contexts["train"].name == "trainsynth-train"
    assert json.loads(contexts["train"].source)["uri"].endswith("/train")
    versions = client.search_model_versions(f"name = 'trainsynth_delay' and run_id = '{first_run}'")
    assert [v.version for v in versions] == [result.version]
    tags = versions[0].tags
    assert tags["feature_version"] == "fv-resume" and tags["code_version"]
    assert json.loads(tags["input_batches"]) == ["s3://validated/trainsynth/fv-resume"]
    assert "contract_hash" in tags
    alias = client.get_model_version_by_alias("trainsynth_delay", "challenger")
    assert alias.version == result.version
    artifacts = {a.path for a in client.list_artifacts(first_run, "figures")}
    assert {
        "figures/loss_curves.png",
        "figures/roc_curve.png",
        "figures/calibration.png",
    } <= artifacts

    # A third attempt (e.g. cleared after success) changes nothing.
    again = train(ref, PARAMS, task_instance=ti)
    assert again.version == result.version and again.run_id == first_run
    assert (
        len(client.search_model_versions(f"name = 'trainsynth_delay' and run_id = '{first_run}'"))
        == 1
    )

    # The registered pyfunc takes raw rows and agrees with the network on transformed rows.
    from ml.features import sets
    from ml.training.compress import compress

    loaded = mlflow.pyfunc.load_model(f"models:/trainsynth_delay/{result.version}")
    raw = sets.read_split(sets.read_feature_manifest(ref), "eval")
    proba = loaded.predict(raw)["probability"].to_numpy()
    assert proba.shape == (len(raw),) and ((proba > 0) & (proba < 1)).all()
    assert result.metrics["test_roc_auc"] > 0.7

    compact = compress(result, {**PARAMS, "prune_amount": 0.3}, tolerance=0.05)
    v = client.get_model_version("trainsynth_delay", compact.version)
    assert v.tags["variant"] == "int8" and v.tags["parent_version"] == result.version
    assert {"delta_test_roc_auc", "cpu_latency_ms_compact", "size_bytes_compact"} <= set(v.tags)
    small = mlflow.pyfunc.load_model(f"models:/trainsynth_delay/{compact.version}")
    assert np.abs(small.predict(raw)["probability"].to_numpy() - proba).mean() < 0.05
    # A network this tiny does not shrink under int8 (packing overhead): no compact alias.
    assert compact.report["smaller"] == 0.0
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("trainsynth_delay", "challenger_compact")
    assert compress(result, PARAMS).version == compact.version  # once per version
    # challenger still names the full model
    assert (
        client.get_model_version_by_alias("trainsynth_delay", "challenger").version
        == result.version
    )


def test_a_nan_loss_fails_the_run_with_a_clear_error(s3_server, mlflow_server, contract_file):
    import mlflow

    from ml.training.fit import TrainingDivergedError
    from ml.training.run import train

    ref = write_feature_set("fv-nan", contract_file, rows=2000, nan_in_train=True)
    with pytest.raises(TrainingDivergedError, match=r"epoch 0.*fv-nan/train"):
        train(ref, {**PARAMS, "epochs": 2}, task_instance=task("manual__nan"))
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs(
        [client.get_experiment_by_name("trainsynth").experiment_id],
        filter_string="tags.feature_version = 'fv-nan'",
    )
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not client.search_model_versions(
        f"name = 'trainsynth_delay' and run_id = '{runs[0].info.run_id}'"
    )
