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

import pendulum
from airflow.sdk import Asset, Param, dag, task

from ml.contracts import available_datasets, load_contract


def build(dataset: str, model_name: str, metric: str):
    features = Asset(uri=f"s3://features/{dataset}", name=f"features.{dataset}")
    challenger = Asset(
        uri=f"mlflow://models/{model_name}/challenger", name=f"challenger.{model_name}"
    )

    @dag(
        dag_id=f"train_{dataset}",
        schedule=[features],
        start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
        catchup=False,
        doc_md=__doc__,
        tags=["train", dataset],
        params={
            "feature_set": Param(
                None,
                type=["null", "string"],
                title="Feature set (s3://features/...)",
                description="Empty: the one that started this run.",
            ),
            "epochs": Param(8, type="integer", minimum=1, maximum=500, title="Epochs"),
            "batch_size": Param(1024, type="integer", minimum=16, title="Batch size"),
            "learning_rate": Param(0.002, type="number", exclusiveMinimum=0, title="Learning rate"),
            "hidden": Param(64, type="integer", minimum=4, title="Hidden units"),
            "seed": Param(42, type="integer", title="Random seed"),
        },
    )
    def train_dag():
        @task
        def feature_set(params=None, triggering_asset_events=None) -> str:
            if params["feature_set"]:
                return params["feature_set"]
            refs = [
                e.extra["feature_set"]
                for events in (triggering_asset_events or {}).values()
                for e in events
                if "feature_set" in e.extra
            ]
            if not refs:
                raise ValueError(
                    "no feature set: set the 'feature_set' param or let a new feature set start this DAG"
                )
            return refs[-1]

        @task(outlets=[challenger])
        def train_model(feature_ref: str, params=None, outlet_events=None) -> dict:
            from ml.train import train

            result = train(feature_ref, params)
            outlet_events[challenger].extra = {  # starts promote_<dataset>
                "model_name": result["model_name"],
                "version": result["model_version"],
                "run_id": result["run_id"],
                "feature_version": result["feature_version"],
                "eval_snapshot": result["eval_snapshot"],
            }
            return result

        train_model(feature_set())

    return train_dag()


for _dataset in available_datasets():
    _contract = load_contract(_dataset)
    if _contract.features and _contract.target:
        build(_dataset, _contract.model_name, _contract.model.get("metric", "roc_auc"))
