"""The training task: the PyTorch model on a feature set, logged to MLflow, registered as a
new version.

One Airflow task instance gets one MLflow run and at most one model version, however many
attempts: the run is found again by the task's key (a tag), training resumes from the last
checkpoint in object storage, and a version already registered by an earlier attempt is
returned instead of registering another.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow

from ml import tracking
from ml.features import sets
from ml.features.derived import TARGET
from ml.metrics import PRIMARY_METRIC
from ml.training import figures
from ml.training.calibration import calibrate_splits
from ml.training.checkpoint import CheckpointStore
from ml.training.device import pick_device
from ml.training.distributed import launch
from ml.training.fit import fit_network
from ml.training.heads import activate, n_outputs
from ml.training.loader import feature_set_head, training_data, training_head
from ml.training.measure import head_metrics
from ml.training.network import predict_raw
from ml.training.package import input_example, log_pyfunc
from ml.training.params import TrainParams
from ml.training.register import CODE_VERSION, register
from ml.training.result import BaselineResult, TrainResult
from ml.training.task_run import TaskRun, open_task_run

log = logging.getLogger(__name__)

VERSION_TAG = "mlpipe_model_version"


def train(
    feature_ref: str,
    params: dict[str, Any] | None = None,
    *,
    task_instance: dict | None = None,
    baseline: BaselineResult | None = None,
) -> TrainResult:
    """Train on a committed feature set; log to MLflow; register a new model version.

    `task_instance` (`dag_id`, `run_id`, `task_id`, `map_index`) makes the call idempotent per
    Airflow task instance: a retry continues the same MLflow run from the last checkpoint and
    registers at most one version. `baseline` (the result of `ml.training.baseline.train_baseline`)
    records the network's test ROC AUC minus the baseline's.
    """
    hp = TrainParams.from_dict(params)
    task = open_task_run(
        feature_ref, task_instance, "network", "train", {"code_version": CODE_VERSION}
    )
    done = task.client.get_run(task.run_id).data.tags.get(VERSION_TAG)
    if done:
        log.info("task key %s already registered version %s: nothing to do", task.key, done)
        return _result_of(task)
    store = CheckpointStore.for_task(
        task.contract.dataset,
        task.key,
        feature_version=task.manifest["feature_version"],
        params=asdict(hp),
    )
    with mlflow.start_run(run_id=task.run_id):
        _log_attempt(task, hp, store)
        if hp.nproc_per_node > 1:
            network, history = launch(feature_ref, hp, task.run_id, store.url)
        else:
            network, history = _fit_here(task, hp, store)
        logged = tracking.logged_steps(task.client, task.run_id, "train_loss")
        for row in history:  # epochs checkpointed by an attempt that died before logging them
            tracking.log_step(task.client, task.run_id, row, logged)
        return _finish(task, network, history, hp, baseline)


def _log_attempt(task: TaskRun, hp: TrainParams, store: CheckpointStore) -> None:
    """The params (first attempt only), the checkpoint folder, and the epoch this attempt
    starts from (metric `attempt_start_epoch`, one step per attempt)."""
    if not task.client.get_run(task.run_id).data.params:
        mlflow.log_params(
            {**asdict(hp), "device": pick_device(), "feature_ref": task.manifest["ref"]}
        )
    mlflow.set_tag("checkpoint", store.url)
    attempt = len(task.client.get_metric_history(task.run_id, "attempt_start_epoch"))
    start = (store.latest() or {"epoch": -1})["epoch"] + 1
    mlflow.log_metric("attempt_start_epoch", start, step=attempt)


def _fit_here(task: TaskRun, hp: TrainParams, store: CheckpointStore):
    device = pick_device()
    batches, validation = training_data(task.manifest, task.transform, hp, device)
    logged = tracking.logged_steps(task.client, task.run_id, "train_loss")
    head = training_head(task.manifest, batches)
    return fit_network(
        batches,
        validation,
        task.transform,
        hp,
        device=device,
        checkpoint=store,
        on_epoch=lambda row: tracking.log_step(task.client, task.run_id, row, logged),
        describe_input=sets.split_url(task.manifest, "train"),
        head=head,
    )


def _finish(task: TaskRun, network, history, hp: TrainParams, baseline) -> TrainResult:
    """Calibration (param `calibration`: `ml.training.calibration`), test metrics, figures and
    history, the model logged (with its calibrated head) and registered: the task's result."""
    raw_head = feature_set_head(task.manifest, task.transform)

    def outputs_of(split: str):
        frame = sets.read_split(task.manifest, split)
        return predict_raw(network, frame, task.transform), frame[TARGET].to_numpy()

    head = calibrate_splits(raw_head, outputs_of, hp.calibration)
    test_frame = sets.read_split(task.manifest, "test")
    raw = predict_raw(network, test_frame, task.transform)
    y_test = test_frame[TARGET].to_numpy()
    predicted = activate(raw, head)
    test = head_metrics(y_test, raw, head)
    before = head_metrics(y_test, raw, raw_head)
    metrics = _log_test_metrics(test, baseline, head["kind"], before)
    _log_figures_and_history(history, y_test, predicted, activate(raw, raw_head), head)
    example = input_example(task.manifest, task.transform)
    network_config = {**hp.network_config(), "outputs": n_outputs(head)}
    info = log_pyfunc(network, task.transform, network_config, example, {"target": head})
    version = register(
        task.client, task.run_id, info.model_uri, task.contract, task.manifest, metrics
    )
    mlflow.set_tag(VERSION_TAG, version)
    primary = PRIMARY_METRIC[head["kind"]]
    log.info(
        "registered %s version %s (test %s %.4f)",
        task.contract.model_name,
        version,
        primary,
        test[primary],
    )
    return TrainResult(
        model_name=task.contract.model_name,
        version=version,
        run_id=task.run_id,
        feature_version=task.manifest["feature_version"],
        eval_snapshot=task.manifest["eval_snapshot"],
        metrics=metrics,
    )


def _log_test_metrics(
    test: dict[str, float], baseline: BaselineResult | None, kind: str, before: dict[str, float]
) -> dict:
    """`test_*` metrics (the uncalibrated ones as `uncalibrated_test_*`, and the gap to the
    baseline's primary metric) logged to the active run."""
    metrics = {f"test_{k}": v for k, v in test.items()}
    primary = PRIMARY_METRIC[kind]
    if baseline and f"test_{primary}" in baseline.metrics:
        theirs = baseline.metrics[f"test_{primary}"]
        metrics[f"baseline_test_{primary}"] = theirs
        metrics[f"test_{primary}_minus_baseline"] = test[primary] - theirs
        mlflow.set_tag("baseline_run_id", baseline.run_id)
    mlflow.log_metrics({**metrics, **{f"uncalibrated_test_{k}": v for k, v in before.items()}})
    return metrics


def _log_figures_and_history(history: list[dict], y_test, predicted, before, head) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = figures.training_figures(history, y_test, predicted, Path(tmp), head, before)
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path="figures")
        (Path(tmp) / "history.json").write_text(json.dumps(history, indent=2))
        mlflow.log_artifact(str(Path(tmp) / "history.json"))


def _result_of(task: TaskRun) -> TrainResult:
    """The result an earlier attempt of this task instance registered (from its run)."""
    run = task.client.get_run(task.run_id)
    return TrainResult(
        model_name=task.contract.model_name,
        version=run.data.tags[VERSION_TAG],
        run_id=task.run_id,
        feature_version=task.manifest["feature_version"],
        eval_snapshot=task.manifest["eval_snapshot"],
        metrics={k: v for k, v in run.data.metrics.items() if k.startswith(("test_", "baseline"))},
    )
