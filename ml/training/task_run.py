"""The set-up of a training task: its feature set, and its MLflow run in the dataset's experiment,
found again by the task instance's key on a retry (`train` and `train_baseline` share it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from ml import contracts, tracking
from ml.alerts import airflow_url
from ml.features import sets
from ml.features.transform import FeatureTransform
from ml.training.checkpoint import task_key

TASK_KEY_TAG = "mlpipe_task_key"


@dataclass(frozen=True)
class TaskRun:
    """A training task's feature set and its MLflow run (found again by a retry of the task)."""

    manifest: dict
    contract: Any
    transform: FeatureTransform
    key: str
    client: Any
    run_id: str


def open_task_run(
    feature_ref: str, task_instance: dict | None, role: str, name: str, tags: dict | None = None
) -> TaskRun:
    """Read the feature set, then find or create the `role` run (named `<name>-<version>`) of
    this task instance in the dataset's MLflow experiment."""
    manifest = sets.read_feature_manifest(feature_ref)
    contract = contracts.load_contract(manifest["dataset"])
    transform = sets.load_transform(manifest)
    key = (
        task_key(**_key_parts(task_instance)) if task_instance else f"adhoc-{uuid.uuid4().hex[:16]}"
    )
    tracking.use_server()
    experiment = mlflow.set_experiment(contract.dataset)
    client = tracking.client()
    version = manifest["feature_version"]
    run_id = tracking.find_or_create_run(
        client,
        experiment.experiment_id,
        TASK_KEY_TAG,
        key,
        f"{name}-{version}",
        {
            "feature_version": version,
            "contract_hash": contract.hash,
            **(tags or {}),
            **airflow_tags(task_instance or {}),
            "role": role,
        },
    )
    if task_instance and "try_number" in task_instance:  # which attempt wrote last
        client.set_tag(run_id, "airflow.try_number", str(task_instance["try_number"]))
    log_feature_inputs(client, run_id, manifest, contract.dataset)
    return TaskRun(manifest, contract, transform, key, client, run_id)


SPLITS = ("train", "validation", "test")


def log_feature_inputs(client, run_id: str, manifest: dict, dataset_name: str) -> None:
    """The feature set's splits as the run's dataset inputs (MLflow's Datasets panel): each split
    by its folder in object storage, named `<dataset>-<split>`, its digest the feature version,
    its context the split. A retry logs the same inputs again; MLflow keeps one of each."""
    inputs = []
    for split in SPLITS:
        if split not in manifest.get("parts", {split: None}):
            continue
        dataset = MetaDataset(
            resolve_dataset_source(sets.split_url(manifest, split)),
            name=f"{dataset_name}-{split}",
            digest=manifest["feature_version"],
        )
        context = InputTag(key=MLFLOW_DATASET_CONTEXT, value=split)
        inputs.append(DatasetInput(dataset=dataset._to_mlflow_entity(), tags=[context]))
    client.log_inputs(run_id, datasets=inputs)


KEY_PARTS = ("dag_id", "run_id", "task_id", "map_index")


def _key_parts(task_instance: dict) -> dict:
    return {k: task_instance[k] for k in KEY_PARTS if k in task_instance}


def airflow_tags(task_instance: dict) -> dict[str, str]:
    """Where a run comes from in Airflow (dag, run, task, map index) and a link back to the
    task in the Airflow UI; nothing for a run started outside Airflow."""
    if not task_instance:
        return {}
    ti = _key_parts(task_instance)
    url = airflow_url(ti["dag_id"], ti["run_id"], ti["task_id"], ti.get("map_index", -1))
    return {
        "airflow.dag_id": ti["dag_id"],
        "airflow.run_id": ti["run_id"],
        "airflow.task_id": ti["task_id"],
        "airflow.map_index": str(ti.get("map_index", -1)),
        "airflow.url": url,
    }
