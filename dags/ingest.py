"""
### Ingest

One DAG per data contract in `data_contracts/` (`ingest_<dataset>`): the partitions of the
dataset's source (days; hours or months by the contract's `partition.granularity`) are read and
written to the `raw` zone, one immutable batch per partition, committed by its manifest.
Re-ingesting a partition whose source content did not change writes nothing. When it ends, the
asset `s3://raw/<dataset>` is updated with the batch references, which starts
`validate_<dataset>`. A snapshot reference table (`partition: {granularity: snapshot}`, e.g.
planes, airports) is ingested whole, once per run, as one batch of the partition `snapshot`.

**Scheduled contracts** (a `schedule` section, see `ml.contract_schedule`) run by themselves:
each tick of the cron is a run of one partition, whose key the grid shows (`2024-01-05`), so
Airflow's backfill (UI, CLI, REST) and catch-up work on partitions. A scheduled run whose data is
not there yet waits (a sensor in reschedule mode: no worker slot between looks) up to the
contract's `schedule.wait`; the run's deadline alert goes out at the same time. A manual run
(**First day**..**Last day**) of a scheduled contract publishes its batches under the range's
partition key (`2024-01-01..2024-01-31`), so their validation is one run.

Partitions are ingested in chunks (a month of days, a day of hours, a year of months per task):
a history load pays one task start-up per chunk, not per partition. Every partition is still
its own batch; one that fails is named and the others of its chunk go on. Retries follow the
error: when nothing of a chunk could be ingested because the source was unreachable or the data
is not there yet, the chunk is retried with backoff; an unreadable file fails at once (its bytes
are already kept in `quarantine`), and so does a misconfigured source. The partitions that were
ingested are published (so they are validated), then the run fails and names the ones that were
not.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronPartitionTimetable, Param, RetryAction, RetryRule, dag, task
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from _mlpipe import (
    VERDICT_POLICY,
    as_stage,
    contracts,
    dag_args,
    retry_policy,
    schedule_bounds,
    task_args,
    zone_asset,
)
from ml.contract_schedule import Schedule
from ml.settings import get_settings

# First matching rule wins; exceptions named by path so parsing imports nothing heavy. The
# stages' common rules (ml errors by kind) follow these.
SOURCE_RETRY_POLICY = retry_policy(
    RetryRule(
        exception="ml.sources.errors.UnreadableInput",
        action=RetryAction.FAIL,
        reason="unreadable input, kept in quarantine: a retry would read the same bytes",
    ),
    RetryRule(
        exception="ml.chunks.ChunkFailed",
        action=RetryAction.FAIL,
        reason="no partition of the chunk could be ingested, for reasons a retry meets again",
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


def timing(schedule: Schedule | None, granularity: str) -> dict:
    """The `@dag(...)` arguments of the schedule: a partition-aware cron timetable whose runs
    each carry the key of one partition, its first and last ticks, catch-up, and a deadline
    alert when a run's partition is not in after `schedule.wait`. None: manual runs only."""
    if schedule is None:
        return {"schedule": None}
    start, end = schedule_bounds(schedule)
    args = {
        "schedule": CronPartitionTimetable(
            schedule.cron,
            timezone=schedule.timezone,
            run_offset=-schedule.partition_lag,
            key_format=schedule.key_format(granularity),
        ),
        "start_date": start,
        "end_date": end,
        "catchup": schedule.catchup,
    }
    if schedule.wait:
        args["deadline"] = DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=schedule.wait,
            callback=AsyncCallback("ml.alerts.deadline_missed", kwargs={"what": "the partition"}),
        )
    return args


# long: DAG builder (its tasks declared in one place)
def build(dataset: str, contract):
    raw = zone_asset("raw", dataset)
    schedule, granularity = contract.schedule, contract.partition.get("granularity", "day")
    wait = schedule.wait if schedule else timedelta(0)
    poke = get_settings().arrival_poke_s

    @dag(
        dag_id=f"ingest_{dataset}",
        **{**dag_args("ingest", dataset, contract.owner), **timing(schedule, granularity)},
        doc_md=__doc__,
        tags=["ingest", dataset],
        params={
            "date_from": Param(
                "2013-01-01",
                type="string",
                format="date",
                title="First day",
                description="A manual run; a scheduled or backfilled run ingests its partition.",
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
        def plan(params=None, dag_run=None) -> list[list[str]]:
            """The run's partition keys, in chunks (one ingest task each)."""
            from ml.chunks import chunked
            from ml.ingest import plan_partitions

            key = getattr(dag_run, "partition_key", None)
            if key:  # a scheduled, backfilled or keyed run: its own partition
                keys = (
                    plan_partitions(dataset, key[:10], key[:10]) if contract.is_snapshot else [key]
                )
            else:
                keys = plan_partitions(dataset, params["date_from"], params["date_to"])
            return chunked(keys, granularity, max_size=get_settings().chunk_max_partitions)

        # A sensor in reschedule mode: a scheduled run whose data is not there yet looks again
        # every `arrival_poke_s` without holding a worker slot, up to `schedule.wait` (plus two
        # looks, so that the deadline alert goes out first). Other runs never wait.
        @task.sensor(
            **task_args("ingest", SOURCE_RETRY_POLICY),
            mode="reschedule",
            poke_interval=poke,
            timeout=(wait + timedelta(seconds=2 * poke)).total_seconds(),
            map_index_template="{{ keys[0] }}..{{ keys[-1] }}",
        )
        @as_stage("ingest")
        def ingest_partitions(keys: list[str], dag_run=None):
            from airflow.sdk import PokeReturnValue

            from ml.chunks import raise_when_nothing_went, still_waiting
            from ml.ingest import ingest_partitions

            outcomes = [o.to_dict() for o in ingest_partitions(dataset, keys)]
            waits = wait and getattr(dag_run, "run_type", "") == "scheduled"
            if waits and still_waiting(outcomes):
                return PokeReturnValue(is_done=False)
            raise_when_nothing_went(dataset, outcomes)
            return PokeReturnValue(is_done=True, xcom_value=outcomes)

        # Partial success: the partitions that were ingested go on even when others failed.
        @task(**task_args("publish"), outlets=[raw], trigger_rule="all_done")
        @as_stage("ingest")
        def publish(
            chunks: list[list[str]], results, dag_run=None, outlet_events=None
        ) -> list[str]:
            from airflow.sdk.exceptions import AirflowSkipException

            from ml.chunks import flat, range_key

            refs = [o["result"]["ref"] for o in flat(results) if o.get("result")]
            if not refs:
                raise AirflowSkipException(
                    f"no {dataset} partition was ingested: nothing to publish"
                )
            outlet_events[raw].extra = {"batches": refs}
            if schedule and not getattr(dag_run, "partition_key", None):
                outlet_events[raw].add_partitions(range_key(flat(chunks)))  # a manual range
            return refs

        @task(**task_args("publish", VERDICT_POLICY), trigger_rule="all_done")
        def verdict(chunks: list[list[str]], results) -> None:
            from ml.chunks import flat, verdict_message

            message = verdict_message(dataset, flat(chunks), flat(results))
            if message:
                raise RuntimeError(message)

        chunks = plan()
        results = ingest_partitions.expand(keys=chunks)
        publish(chunks, results) >> verdict(chunks, results)

    return ingest_dag()


for _dataset, _contract in contracts():
    if _contract.source:
        build(_dataset, _contract)
