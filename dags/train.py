"""
### Train

One DAG per data contract with a model (`train_<dataset>`), started by a new feature set in
`s3://features/<dataset>`. It trains the PyTorch model (CUDA when the worker has a GPU, CPU
otherwise), logs params, per-epoch metrics and the model to MLflow, and registers a new model
version (alias `challenger`). The new version updates the asset
`mlflow://models/<model>/challenger` (extra: model name, version, run id, feature version, eval
snapshot), which starts `promote_<dataset>`: champion/challenger evaluation lives there.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from _mlpipe import (
    alias_asset,
    as_stage,
    dag_args,
    event_extras,
    task_args,
    task_key_parts,
    trained_contracts,
    zone_asset,
)
from ml.assets import CHALLENGER
from ml.training.params import CALIBRATIONS, PRECISIONS, CompressParams, TrainParams

# Param defaults are the library's defaults (light dataclasses: no torch at parse time).
TRAIN, COMPRESS = TrainParams(), CompressParams()


# long: DAG builder (Params, tasks and their wiring)
def build(dataset: str, model_name: str, owner: str | None = None):
    features = zone_asset("features", dataset)
    challenger = alias_asset(model_name, CHALLENGER)

    @dag(
        dag_id=f"train_{dataset}",
        schedule=[features],
        **dag_args("train", dataset, owner),
        doc_md=__doc__,
        tags=["train", dataset],
        params={
            "feature_set": Param(
                None,
                type=["null", "string"],
                title="Feature set (s3://features/...)",
                description="Empty: the one that started this run, else the newest committed "
                "one of this dataset.",
                section="Input",
            ),
            "epochs": Param(
                TRAIN.epochs,
                type="integer",
                minimum=1,
                maximum=500,
                title="Epochs",
                section="Optimisation",
            ),
            "batch_size": Param(
                TRAIN.batch_size,
                type="integer",
                minimum=16,
                title="Batch size",
                section="Optimisation",
            ),
            "learning_rate": Param(
                TRAIN.learning_rate,
                type="number",
                exclusiveMinimum=0,
                title="Learning rate",
                section="Optimisation",
            ),
            "weight_decay": Param(
                TRAIN.weight_decay,
                type="number",
                minimum=0,
                title="AdamW weight decay",
                section="Optimisation",
            ),
            "hidden": Param(
                TRAIN.hidden,
                type="integer",
                minimum=4,
                title="Hidden units per layer",
                section="Network",
            ),
            "layers": Param(
                TRAIN.layers,
                type="integer",
                minimum=1,
                maximum=8,
                title="Hidden layers",
                section="Network",
            ),
            "emb_dim": Param(
                TRAIN.emb_dim,
                type="integer",
                minimum=1,
                title="Max embedding width",
                section="Network",
            ),
            "dropout": Param(
                TRAIN.dropout,
                type="number",
                minimum=0,
                maximum=0.9,
                title="Dropout",
                section="Network",
            ),
            "patience": Param(
                TRAIN.patience,
                type="integer",
                minimum=1,
                title="Early-stopping patience",
                section="Optimisation",
            ),
            "seed": Param(TRAIN.seed, type="integer", title="Random seed", section="Optimisation"),
            "precision": Param(
                TRAIN.precision,
                enum=list(PRECISIONS),
                title="Precision (auto: bf16/fp16 on CUDA, fp32 on CPU)",
                section="Optimisation",
            ),
            "pos_weight": Param(
                TRAIN.pos_weight,
                type="boolean",
                title="Weight positives / classes (imbalance)",
                section="Optimisation",
            ),
            "calibration": Param(
                TRAIN.calibration,
                enum=list(CALIBRATIONS),
                title="Calibration after training (scale_prior: scale on validation, bias on "
                "train; prior: bias on train; affine, temperature: on validation)",
                section="Calibration",
            ),
            "memory_budget_mb": Param(
                TRAIN.memory_budget_mb,
                type="integer",
                minimum=1,
                title="Above this, stream shards",
                section="Resources",
            ),
            "nproc_per_node": Param(
                TRAIN.nproc_per_node,
                type="integer",
                minimum=1,
                title="Training processes (GPUs) via torchrun",
                section="Resources",
            ),
            "compress": Param(
                False,
                type="boolean",
                title="Also make an int8 compact variant",
                section="Compact variant",
            ),
            "prune_amount": Param(
                COMPRESS.prune_amount,
                type="number",
                minimum=0,
                maximum=0.95,
                title="Magnitude pruning share",
                section="Compact variant",
            ),
            "compress_tolerance": Param(
                COMPRESS.compress_tolerance,
                type="number",
                minimum=0,
                title="Max ROC AUC loss of the compact variant",
                section="Compact variant",
            ),
        },
    )
    def train_dag():
        @task(**task_args("plan"))
        @as_stage("train")
        def feature_set(params=None, triggering_asset_events=None) -> str:
            if params["feature_set"]:
                return params["feature_set"]
            refs = [
                extra["feature_set"]
                for extra in event_extras(triggering_asset_events)
                if "feature_set" in extra
            ]
            if refs:
                return refs[-1]
            from ml.features.sets import newest_feature_set  # a manual run with the defaults

            return newest_feature_set(dataset)

        @task(**task_args("train"))
        @as_stage("train")
        def baseline(feature_ref: str, params=None, ti=None) -> dict:
            from ml.training.baseline import train_baseline

            return train_baseline(feature_ref, params, task_instance=task_key_parts(ti)).to_dict()

        # GPU work: the `gpu` pool has one slot per GPU, the `gpu` queue is served by the GPU
        # worker. A retry resumes from the last checkpoint in the same MLflow run.
        @task(
            **task_args("train"),
            pool="gpu",
            queue="gpu",
            outlets=[challenger],
        )
        @as_stage("train")
        def train_model(
            feature_ref: str, baseline_result: dict, params=None, ti=None, outlet_events=None
        ) -> dict:
            from ml.training.result import BaselineResult
            from ml.training.run import train

            result = train(
                feature_ref,
                params,
                task_instance=task_key_parts(ti),
                baseline=BaselineResult.from_dict(baseline_result),
            )
            outlet_events[challenger].extra = {  # starts promote_<dataset>
                "model_name": result.model_name,
                "version": result.version,
                "run_id": result.run_id,
                "feature_version": result.feature_version,
                "eval_snapshot": result.eval_snapshot,
            }
            return result.to_dict()

        @task(**task_args("train", retries=1))
        @as_stage("train")
        def compress(result: dict, params=None) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            if not params["compress"]:
                raise AirflowSkipException("compression is off (param 'compress')")
            from ml.training.compress import compress as make_compact
            from ml.training.result import TrainResult

            return make_compact(TrainResult.from_dict(result), params).to_dict()

        ref = feature_set()
        compress(train_model(ref, baseline(ref)))

    return train_dag()


for _dataset, _contract in trained_contracts():
    build(_dataset, _contract.model_name, _contract.owner)
