"""
### Preprocess

One DAG per data contract with a `features` section (`preprocess_<dataset>`), started when the
dataset and every table it joins by date (`features.joins`: weather) have new validated
batches. Lookup tables (`features.lookups`: planes, airports) are snapshots read at run time,
the latest validated one each; a new snapshot is used by the next run (or trigger one). On the Dask
cluster it reads the validated batches of the training window, joins the reference tables (the
same day's weather; the latest planes and airports snapshots), derives the features and the
target (rows without a target value, i.e. cancelled flights, are dropped), splits by date
(train before validation before test), fits the transform on the train split only and writes
the splits as zstd parquet plus the transform and a manifest listing every part to the
`features` zone. The feature version hashes the input batch ids, the contract, the feature code
version and the params: a feature set that exists already is reused (the task log says so).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from _mlpipe import as_stage, contracts, dag_args, task_args, zone_asset

# Light at parse time: numpy and pandas load only when a transform runs.
from ml.features.transform import DEFAULT_MIN_FREQUENCY


def build(dataset: str, joins: list[str], owner: str | None = None):
    inputs = [zone_asset("validated", name) for name in [dataset, *joins]]
    features = zone_asset("features", dataset)
    schedule = inputs[0]
    for asset in inputs[1:]:
        schedule = schedule & asset

    @dag(
        dag_id=f"preprocess_{dataset}",
        schedule=schedule,
        **dag_args("preprocess", dataset, owner),
        doc_md=__doc__,
        tags=["preprocess", dataset],
        params={
            "date_from": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Training window: first day",
                description="Empty: from the first validated day.",
                section="Window of validated days",
            ),
            "date_to": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Training window: last day",
                description="Empty: up to the last validated day.",
                section="Window of validated days",
            ),
            "min_frequency": Param(
                DEFAULT_MIN_FREQUENCY,
                type="integer",
                minimum=1,
                title="Minimum count of a category value in train",
                description="Rarer values share the out-of-vocabulary bucket.",
                section="Features",
            ),
        },
    )
    def preprocess_dag():
        @task(**task_args("features"), outlets=[features])
        @as_stage("preprocess")
        def build_features(params=None, outlet_events=None) -> dict:
            from ml.features.build import build_features

            result = build_features(
                dataset, params["date_from"], params["date_to"], params["min_frequency"]
            )
            outlet_events[features].extra = {
                "feature_set": result.ref,
                "feature_version": result.feature_version,
            }
            return {
                "ref": result.ref,
                "feature_version": result.feature_version,
                "rows": result.rows,
                "reused": result.reused,
            }

        build_features()

    return preprocess_dag()


for _dataset, _contract in contracts():
    if _contract.features:
        joins = [r["dataset"] for r in _contract.features.get("joins", [])]
        build(_dataset, joins, _contract.owner)
