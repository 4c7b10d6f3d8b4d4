"""
### Validate

One DAG per data contract (`validate_<dataset>`), started by new batches in `s3://raw/<dataset>`
(for a scheduled contract, once per partition key the ingest runs publish: the key shows in the
grid). Batches are validated in chunks (a month of days per task, as ingestion chunks them), one
GX context per task; each batch is checked against the Great Expectations suite generated from the contract
(large batches partition by partition on the Dask cluster): a batch that passes is committed to
the `validated` zone (PII dropped or hashed); a batch that fails goes to `quarantine` with its
report, as the contract's `failure_policy` says: the whole batch (`quarantine_batch`), or only
its bad rows while the good ones go on (`quarantine_rows`, up to `max_bad_fraction`). With
`on_failure: fail` the batch's task fails with a message naming the broken rules and the report;
with `warn` it logs that message and succeeds. Reports (JSON and HTML) are in the `reports` zone
under `validation/`. Batches with validated rows update `s3://validated/<dataset>`.
`mlpipe quarantine list | show | release | drop` acts on what was held back.
"""

from __future__ import annotations

from airflow.sdk import PartitionedAssetTimetable, dag, task

from _mlpipe import (
    VERDICT_POLICY,
    as_stage,
    contracts,
    dag_args,
    event_batches,
    task_args,
    zone_asset,
)


# long: DAG builder (the task graph of one contract's validate DAG)
def build(dataset: str, contract):
    raw = zone_asset("raw", dataset)
    validated = zone_asset("validated", dataset)
    granularity = contract.partition.get("granularity", "day")
    # A scheduled contract's raw events carry partition keys: only a partition-aware DAG hears
    # them (Airflow 3.3 queues no other consumer for a keyed event).
    schedule = PartitionedAssetTimetable(assets=raw) if contract.schedule else [raw]

    @dag(
        dag_id=f"validate_{dataset}",
        schedule=schedule,
        **dag_args("validate", dataset, contract.owner),
        doc_md=__doc__,
        tags=["validate", dataset],
    )
    def validate_dag():
        @task(**task_args("plan"))
        @as_stage("validate")
        def new_batches(triggering_asset_events=None) -> list[list[str]]:
            """The batches the triggering events name, in chunks (one validate task each)."""
            from ml.chunks import chunked, key_of

            # Events raised while this DAG was busy or paused arrive together: take them all.
            refs = event_batches(triggering_asset_events)
            from ml.settings import get_settings

            most = get_settings().chunk_max_partitions
            return chunked(refs, granularity, key=key_of, max_size=most)

        # A batch that breaks its contract is held by its policy and the chunk goes on. An S3
        # blip or a lost Dask worker fails the chunk once it is through: retried with backoff,
        # so no raw batch is left neither validated nor quarantined. A retry (or a re-run) of a
        # batch already validated under the same contract is a no-op.
        @task(
            **task_args("validate"),
            map_index_template="{{ refs[0].split('/')[-2] }}..{{ refs[-1].split('/')[-2] }}",
        )
        @as_stage("validate")
        def validate(refs: list[str]) -> list[dict]:
            from ml.validation.batch import validate_batches

            return validate_batches(refs, dataset)

        @task(**task_args("publish"), outlets=[validated], trigger_rule="all_done")
        @as_stage("validate")
        def publish(chunks: list[list[str]], outlet_events=None) -> list[str]:
            from airflow.sdk.exceptions import AirflowSkipException

            from ml.chunks import flat
            from ml.storage import committed_in_zone

            refs = flat(chunks)
            passed = committed_in_zone(refs, "validated")
            if not passed:
                raise AirflowSkipException(f"no {dataset} batch passed validation")
            outlet_events[validated].extra = {"batches": passed}
            return passed

        # The run fails when a whole batch was held back (and the contract says `on_failure:
        # fail`), or when a batch could not be validated at all (its retries ran out), even
        # though the good ones went on. Batches whose bad rows alone were held back went on
        # (their good rows are published).
        @task(**task_args("publish", VERDICT_POLICY), trigger_rule="all_done")
        @as_stage("validate")
        def verdict(chunks: list[list[str]]) -> None:
            import logging

            from ml.chunks import flat
            from ml.contracts import load_contract
            from ml.storage import committed_in_zone

            refs = flat(chunks)
            passed = set(committed_in_zone(refs, "validated"))
            held_all = set(committed_in_zone(refs, "quarantine"))
            ref_of = {r: r.split("/", 3)[-1] for r in refs}  # dataset/partition/batch_id
            kept = {r.split("/", 3)[-1] for r in passed}
            held_keys = {r.split("/", 3)[-1] for r in held_all}
            held = [r for r in refs if ref_of[r] in held_keys and ref_of[r] not in kept]
            stranded = [r for r in refs if ref_of[r] not in kept | held_keys]
            if stranded:
                raise RuntimeError(
                    f"{len(stranded)} {dataset} batch(es) neither validated nor quarantined "
                    f"after their retries: {stranded}; the others went on. Re-run this DAG "
                    "(validation is idempotent) once the validate tasks' errors are fixed"
                )
            if not held:
                return
            message = (
                f"{len(held)} {dataset} batch(es) quarantined: {held}; the validate tasks name "
                "the rules and reports (mlpipe quarantine list)"
            )
            if load_contract(dataset).policy.on_failure == "warn":
                logging.getLogger(__name__).warning("%s", message)
                return
            raise RuntimeError(message)

        chunks = new_batches()
        validate.expand(refs=chunks) >> publish(chunks) >> verdict(chunks)

    return validate_dag()


for _dataset, _contract in contracts():
    build(_dataset, _contract)
