"""
### Ingest

One DAG per data contract in `data_contracts/` (`ingest_<dataset>`): the rows of every day from
**First day** to **Last day** are read from the dataset's source and written to the `raw` zone as
one immutable batch per day, committed by its manifest. Re-ingesting a day whose source content
did not change writes nothing. When it ends, the asset `s3://raw/<dataset>` is updated with the
batch references, which starts `validate_<dataset>`. A snapshot reference table (`partition:
{granularity: snapshot}`, e.g. planes, airports) is ingested whole, once per run, as one batch
of the partition `snapshot`.

Retries follow the error: a source that could not be reached (network, S3, HTTP 429/5xx) is
retried with backoff; a day whose file is not there yet is retried like any failure; an
unreadable file fails at once (its bytes are already kept in `quarantine`, and a retry would
read the same bytes), and so does a misconfigured source.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import (
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    dag,
    task,
)

from _mlpipe import DAG_DEFAULTS, as_stage, contracts, zone_asset

# First matching rule wins; exceptions named by path so parsing imports nothing heavy.
SOURCE_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="ml.sources.errors.UnreadableInput",
            action=RetryAction.FAIL,
            reason="unreadable input, kept in quarantine: a retry would read the same bytes",
        ),
        RetryRule(
            exception="ml.sources.errors.TransientSourceError",
            action=RetryAction.RETRY,
            retry_delay=pendulum.duration(seconds=30),
            reason="source unreachable or busy",
        ),
        RetryRule(exception="ml.errors.NotFoundError", action=RetryAction.DEFAULT),
        RetryRule(
            exception=["ml.sources.errors.SourceError", "ml.errors.ContractError"],
            action=RetryAction.FAIL,
            reason="the contract's source or schema is wrong: fix it, then re-run",
        ),
    ],
)


def build(dataset: str):
    raw = zone_asset("raw", dataset)

    @dag(
        dag_id=f"ingest_{dataset}",
        schedule=None,
        **DAG_DEFAULTS,
        doc_md=__doc__,
        tags=["ingest", dataset],
        params={
            "date_from": Param("2013-01-01", type="string", format="date", title="First day"),
            "date_to": Param("2013-01-01", type="string", format="date", title="Last day"),
        },
    )
    def ingest_dag():
        @task
        @as_stage("ingest")
        def plan_days(params=None) -> list[str]:
            from ml.ingest import plan_partitions

            return plan_partitions(dataset, params["date_from"], params["date_to"])

        @task(
            retries=2,
            retry_delay=pendulum.duration(seconds=10),
            retry_policy=SOURCE_RETRY_POLICY,
            map_index_template="{{ day }}",
        )
        @as_stage("ingest")
        def ingest_day(day: str) -> dict:
            from ml.ingest import ingest_partition

            return ingest_partition(dataset, day).to_dict()

        @task(outlets=[raw])
        @as_stage("ingest")
        def publish(results, outlet_events=None) -> list[str]:
            refs = [r["ref"] for r in results]
            outlet_events[raw].extra = {"batches": refs}
            return refs

        publish(ingest_day.expand(day=plan_days()))

    return ingest_dag()


for _dataset, _contract in contracts():
    if _contract.source:
        build(_dataset)
