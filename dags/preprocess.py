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
version and the params: a feature set that exists already is reused (the task log says so), and
then `publish` is skipped: no asset event, so no training starts on features it trained on before.

When it runs follows the contract's retraining policy (`model.retrain`, `ml.retrain_policy`):
`every: <N>d | <N>h` runs on that clock (a new validated batch starts nothing; a tick with no new
validated data reuses the feature set, so nothing retrains), `each_batch` (the default) on new
validated batches as above, `on_drift` only when scoring's drift check (or a person) starts it.
`window: <N>d` builds over the last N validated days, ending at the newest validated day (the
run's **Training window** Params win over it). For a contract with a `schedule` (validated events
carry partition keys), `each_batch` is partition-aware: one run per key, once every scheduled
input (the dataset and its scheduled joins) has that key; unscheduled joins are read as they are.
"""

from __future__ import annotations

from airflow.sdk import (
    CronTriggerTimetable,
    DeltaTriggerTimetable,
    Param,
    PartitionedAssetTimetable,
    dag,
    task,
)

from _mlpipe import as_stage, contracts, dag_args, task_args, zone_asset
from ml.contracts import load_contract

# Light at parse time: numpy and pandas load only when a transform runs.
from ml.features.transform import DEFAULT_MIN_FREQUENCY
from ml.retrain_policy import RetrainPolicy


def schedule_of(policy: RetrainPolicy, inputs: list, keyed: list | None = None):
    """The schedule of `preprocess_<dataset>` under its retraining policy: the validated assets
    (each_batch), a clock (a cron when one states the cadence exactly, else a fixed delta), or
    none (on_drift: scoring's drift check triggers it). `keyed`: the inputs of scheduled
    contracts, whose events carry partition keys: each_batch then waits for the same key of
    each of them (`PartitionedAssetTimetable`; the other inputs are read at run time)."""
    if policy.mode == "on_drift":
        return None
    if policy.mode == "interval":
        cron = policy.cron()
        return (
            CronTriggerTimetable(cron, timezone="UTC")
            if cron
            else DeltaTriggerTimetable(policy.every)
        )
    chosen = keyed or inputs
    schedule = chosen[0]
    for asset in chosen[1:]:
        schedule = schedule & asset
    return PartitionedAssetTimetable(assets=schedule) if keyed else schedule


# long: DAG builder (Params, tasks and their wiring)
def build(
    dataset: str, joins: list[str], owner: str | None = None, policy: RetrainPolicy | None = None
):
    policy = policy or load_contract(dataset).retrain
    inputs = [zone_asset("validated", name) for name in [dataset, *joins]]
    scheduled = [name for name in [dataset, *joins] if load_contract(name).schedule]
    keyed = [zone_asset("validated", name) for name in scheduled] if dataset in scheduled else []
    features = zone_asset("features", dataset)
    window = f"the last {policy.window.days} validated days" if policy.window else None

    @dag(
        dag_id=f"preprocess_{dataset}",
        schedule=schedule_of(policy, inputs, keyed),
        **dag_args("preprocess", dataset, owner),
        doc_md=f"{__doc__}\n**This dataset** {policy.describe()}.",
        tags=["preprocess", dataset],
        params={
            "date_from": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Training window: first day",
                description=f"Empty: the first day of {window}."
                if window
                else "Empty: from the first validated day.",
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
        @task(**task_args("features"))
        @as_stage("preprocess")
        def build_features(params=None, dag_run=None) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from ml import storage
            from ml.errors import NotFoundError
            from ml.features.build import build_features

            date_from, date_to = params["date_from"], params["date_to"]
            try:
                if policy.window and not date_from:  # the window ends at the newest validated day
                    validated = storage.latest_batches("validated", dataset)
                    date_from, date_to = policy.window_dates(validated, date_from, date_to)
                result = build_features(dataset, date_from, date_to, params["min_frequency"])
            except NotFoundError as exc:
                if policy.mode == "interval" and getattr(dag_run, "run_type", "") == "scheduled":
                    raise AirflowSkipException(f"nothing validated to build on yet: {exc}") from exc
                raise
            return {
                "ref": result.ref,
                "feature_version": result.feature_version,
                "rows": result.rows,
                "reused": result.reused,
                "date_from": date_from,
                "date_to": date_to,
            }

        @task(**task_args("publish"), outlets=[features])
        def publish(built: dict, outlet_events=None) -> None:
            """Announce a new feature set (starts train_<dataset>); a reused one starts nothing."""
            from airflow.sdk.exceptions import AirflowSkipException

            if built["reused"]:
                raise AirflowSkipException(
                    f"feature set {built['feature_version']} was reused (no new validated data "
                    f"since it was built): no new training. To train on it again, trigger "
                    f"train_{dataset}."
                )
            outlet_events[features].extra = {
                "feature_set": built["ref"],
                "feature_version": built["feature_version"],
            }

        publish(build_features())

    return preprocess_dag()


for _dataset, _contract in contracts():
    if _contract.features:
        joins = [r["dataset"] for r in _contract.features.get("joins", [])]
        build(_dataset, joins, _contract.owner, _contract.retrain)
