"""
### Batch score

One DAG per model (`batch_score_<dataset>`), started when `champion` moves. The alias is resolved
to one version at the start of the run; every partition of the day is scored with that version
on the Dask cluster (the model is loaded once per worker), and the predictions (keys,
probability, label, model version) are committed to the `predictions` zone under
`<dataset>/date=<day>/model=<version>/`. Re-scoring a day with the same version replaces it.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from ml.contracts import available_datasets, load_contract


def build(dataset: str, model_name: str):
    champion = Asset(uri=f"mlflow://models/{model_name}/champion", name=f"champion.{model_name}")
    predictions = Asset(uri=f"s3://predictions/{dataset}", name=f"predictions.{dataset}")

    @dag(
        dag_id=f"batch_score_{dataset}",
        schedule=[champion],
        start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
        catchup=False,
        doc_md=__doc__,
        tags=["score", dataset],
        params={
            "score_date": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Day to score",
                description="Empty: the newest validated day.",
            ),
            "threshold": Param(
                0.5,
                type="number",
                minimum=0,
                maximum=1,
                title="Probability threshold of a positive label",
            ),
        },
    )
    def batch_score_dag():
        @task(outlets=[predictions], retries=2, retry_delay=pendulum.duration(seconds=15))
        def score_day(params=None, outlet_events=None) -> dict:
            from ml.score import score

            result = score(dataset, params["score_date"], params["threshold"])
            outlet_events[predictions].extra = result
            return result

        score_day()

    return batch_score_dag()


for _dataset in available_datasets():
    _contract = load_contract(_dataset)
    if _contract.features and _contract.target:
        build(_dataset, _contract.model_name)
