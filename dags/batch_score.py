"""
### Batch score

One DAG per model (`batch_score_<dataset>`), started two ways (and, for a contract with a
`schedule`, `score_partitions_<dataset>` too: one run per validated partition key, scoring the
partitions of the validated batches that started it, those the champion has not scored yet):

* when `champion` moves (asset `mlflow://models/<model>/champion`, raised by a promotion or a
  rollback): one run scores the newest validated day (or **Day to score**) with the new champion;
* daily at 06:00 UTC: the validated days the current champion has not scored yet (newest
  **Days at most**), read from the predictions manifests.

The first task resolves the alias to one version; every partition of the run is scored with that
version on the Dask cluster (the model is loaded once per worker) and the predictions (keys,
probability, label, model version) are checked against their contract and committed under
`predictions/<dataset>/date=<day>/model-<version>/` (each attempt under its own folder, made
visible by the manifest). Re-scoring a day with the same version replaces it by switching the
manifest; a failed re-run leaves the earlier predictions in place. Each scored day gets a drift report (PSI per feature against the model's training
data, JSON and SVG chart in `reports`); with **Retrain on drift** (on by default when the
contract says `model.retrain: {every: on_drift}`), drift over the threshold
starts `preprocess_<dataset>` (new features, then training and promotion). A run not done
an hour after it was queued (`MLPIPE_SCORING_DEADLINE_S`) raises a deadline alert.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import (
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    PartitionedAssetTimetable,
    dag,
    task,
)
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from _mlpipe import (
    alias_asset,
    as_stage,
    dag_args,
    event_batches,
    task_args,
    trained_contracts,
    zone_asset,
)
from ml.assets import CHAMPION
from ml.scoring_plan import DAILY_MAX_DAYS, DEFAULT_THRESHOLD, DRIFT_THRESHOLD
from ml.settings import get_settings


# long: DAG builder (the DAG, its Params and its tasks declared in one place)
def build(
    dataset: str,
    model_name: str,
    owner: str | None = None,
    retrain_on_drift: bool = False,
    partitioned: bool = False,
):
    champion = alias_asset(model_name, CHAMPION)
    predictions = zone_asset("predictions", dataset)
    if partitioned:  # a scheduled contract: each validated partition key, as it comes
        dag_id = f"score_partitions_{dataset}"
        schedule = PartitionedAssetTimetable(assets=zone_asset("validated", dataset))
        title = {"dag_display_name": f"{dataset}: score new partitions with the champion"}
    else:
        dag_id, title = f"batch_score_{dataset}", {}
        schedule = AssetOrTimeSchedule(
            timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=champion
        )

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        **{**dag_args("batch_score", dataset, owner), **title},
        # One run at a time moves through the days in order (the daily run, an alias move); the
        # runs of distinct partitions score distinct days: a backfill's go side by side.
        max_active_runs=4 if partitioned else 1,
        # Predictions late (the daily 06:00 run not done by 07:00 by default): people are told.
        deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(seconds=get_settings().scoring_deadline_s),
            callback=AsyncCallback(
                "ml.alerts.deadline_missed", kwargs={"what": f"predictions of {dataset}"}
            ),
        ),
        doc_md=__doc__,
        tags=["score", dataset],
        params={
            "score_date": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Day to score",
                description="Empty: the newest validated day (alias move) or every day not "
                "yet scored by the champion (daily run).",
                section="Days to score",
            ),
            "max_days": Param(
                DAILY_MAX_DAYS,
                type="integer",
                minimum=1,
                title="Days at most (daily run: the newest ones)",
                section="Days to score",
            ),
            "threshold": Param(
                DEFAULT_THRESHOLD,
                type="number",
                minimum=0,
                maximum=1,
                title="Probability threshold of a positive label",
                section="Predictions",
            ),
            "drift_threshold": Param(
                DRIFT_THRESHOLD,
                type="number",
                minimum=0,
                title="PSI over which a feature has drifted",
                section="Drift",
            ),
            "retrain_on_drift": Param(
                retrain_on_drift,  # on by default for `model.retrain: {every: on_drift}`
                type="boolean",
                title="Retrain on drift (starts preprocess_<dataset>)",
                section="Drift",
            ),
        },
    )
    def batch_score_dag():
        @task(**task_args("plan"))
        @as_stage("score")
        def plan(params=None, triggering_asset_events=None) -> dict:
            """Resolve `champion` to one version and pick the days this run scores."""
            from ml.score_select import plan_run

            return plan_run(
                dataset,
                params["score_date"],
                alias_moved=bool(triggering_asset_events) and not partitioned,
                max_days=params["max_days"],
                # A partition run: the partitions of the validated batches that started it,
                # those the champion has not scored yet (nothing is scored twice). Started by
                # hand (no event): what the daily run scores.
                batches=event_batches(triggering_asset_events)
                if partitioned and triggering_asset_events
                else None,
            ).to_dict()

        @task(**task_args("score"), outlets=[predictions])
        @as_stage("score")
        def score(run_plan: dict, params=None, outlet_events=None) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from ml.score import run_scoring
            from ml.scoring_plan import ScoringPlan

            plan = ScoringPlan.from_dict(run_plan)
            if not plan.partitions:
                raise AirflowSkipException("nothing to score: no new validated day, or no champion")

            result = run_scoring(dataset, plan, params["threshold"], params["drift_threshold"])
            xcom = result.to_dict()  # the version spelled `model_version`, as ever
            outlet_events[predictions].extra = {
                k: xcom[k] for k in ("model_version", "refs", "drifted")
            }
            return xcom

        @task.short_circuit(**task_args("plan"))
        @as_stage("score")
        def drifted(result: dict, params=None) -> bool:
            return bool(params["retrain_on_drift"] and result["drifted"])

        @task(**task_args("plan"))
        @as_stage("score")
        def retrain() -> None:
            """Start preprocess_<dataset> (new features -> train -> promote)."""
            # Imported here: the operator module costs over a second, too much for parsing.
            from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
            from airflow.sdk import get_current_context

            trigger = TriggerDagRunOperator(
                task_id="retrain_trigger", trigger_dag_id=f"preprocess_{dataset}"
            )
            trigger.execute(get_current_context())  # raises the "trigger a run" signal

        scored = score(plan())
        drifted(scored) >> retrain()

    return batch_score_dag()


for _dataset, _contract in trained_contracts():
    _drift = _contract.retrain.retrain_on_drift
    build(_dataset, _contract.model_name, _contract.owner, _drift)
    if _contract.schedule:  # validated partitions carry keys: a partition-aware DAG hears them
        build(_dataset, _contract.model_name, _contract.owner, _drift, partitioned=True)
