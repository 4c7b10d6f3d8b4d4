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

One bad day does not hold back the others: the days that were ingested are published (so they
are validated), then the run fails and names the days that were not.
"""

from __future__ import annotations

from airflow.sdk import Param, RetryAction, RetryRule, dag, task

from _mlpipe import as_stage, contracts, dag_args, retry_policy, task_args, zone_asset

# First matching rule wins; exceptions named by path so parsing imports nothing heavy. The
# stages' common rules (ml errors by kind) follow these.
SOURCE_RETRY_POLICY = retry_policy(
    RetryRule(
        exception="ml.sources.errors.UnreadableInput",
        action=RetryAction.FAIL,
        reason="unreadable input, kept in quarantine: a retry would read the same bytes",
    ),
    RetryRule(
        exception="ml.sources.errors.TransientSourceError",
        action=RetryAction.DEFAULT,
        reason="source unreachable or busy: retried with exponential backoff",
    ),
    RetryRule(exception="ml.errors.NotFoundError", action=RetryAction.DEFAULT),
    RetryRule(
        exception=["ml.sources.errors.SourceError", "ml.errors.ContractError"],
        action=RetryAction.FAIL,
        reason="the contract's source or schema is wrong: fix it, then re-run",
    ),
)


def failed_days(days: list[str], results) -> list[str]:
    """The planned days that no ingest task returned a batch for."""
    done = {r["day"] for r in results}
    return [d for d in days if d not in done]


# long: DAG builder (its tasks declared in one place)
def build(dataset: str, owner: str | None = None):
    raw = zone_asset("raw", dataset)

    @dag(
        dag_id=f"ingest_{dataset}",
        schedule=None,
        **dag_args("ingest", dataset, owner),
        doc_md=__doc__,
        tags=["ingest", dataset],
        params={
            "date_from": Param(
                "2013-01-01",
                type="string",
                format="date",
                title="First day",
                section="Days to ingest",
            ),
            "date_to": Param(
                "2013-01-01",
                type="string",
                format="date",
                title="Last day",
                section="Days to ingest",
            ),
        },
    )
    def ingest_dag():
        @task(**task_args("plan"))
        @as_stage("ingest")
        def plan_days(params=None) -> list[str]:
            from ml.ingest import plan_partitions

            return plan_partitions(dataset, params["date_from"], params["date_to"])

        @task(**task_args("ingest", SOURCE_RETRY_POLICY), map_index_template="{{ day }}")
        @as_stage("ingest")
        def ingest_day(day: str) -> dict:
            from ml.ingest import ingest_partition

            return {**ingest_partition(dataset, day).to_dict(), "day": day}

        # Partial success: the days that were ingested go on even when others failed.
        @task(**task_args("publish"), outlets=[raw], trigger_rule="all_done")
        @as_stage("ingest")
        def publish(results, outlet_events=None) -> list[str]:
            from airflow.sdk.exceptions import AirflowSkipException

            refs = [r["ref"] for r in results]
            if not refs:
                raise AirflowSkipException(f"no {dataset} day was ingested: nothing to publish")
            outlet_events[raw].extra = {"batches": refs}
            return refs

        @task(**task_args("publish"), trigger_rule="all_done")
        def verdict(days: list[str], results) -> None:
            missing = failed_days(days, results)
            if missing:
                raise RuntimeError(
                    f"{len(missing)} of {len(days)} {dataset} day(s) were not ingested: "
                    f"{missing}; the other days were published (see the ingest_day tasks)"
                )

        days = plan_days()
        results = ingest_day.expand(day=days)
        publish(results) >> verdict(days, results)

    return ingest_dag()


for _dataset, _contract in contracts():
    if _contract.source:
        build(_dataset, _contract.owner)
