"""
### Validate

One DAG per data contract (`validate_<dataset>`), started by new batches in `s3://raw/<dataset>`.
Each batch is checked against the Great Expectations suite generated from the contract
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

import pendulum
from airflow.sdk import Asset, dag, task

from ml.contracts import available_datasets


def build(dataset: str):
    raw = Asset(uri=f"s3://raw/{dataset}", name=f"raw.{dataset}")
    validated = Asset(uri=f"s3://validated/{dataset}", name=f"validated.{dataset}")

    @dag(
        dag_id=f"validate_{dataset}",
        schedule=[raw],
        start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
        catchup=False,
        doc_md=__doc__,
        tags=["validate", dataset],
    )
    def validate_dag():
        @task
        def new_batches(triggering_asset_events=None) -> list[str]:
            # Events raised while this DAG was busy or paused arrive together: take them all.
            refs = {
                ref
                for events in triggering_asset_events.values()
                for e in events
                for ref in e.extra.get("batches", [])
            }
            return sorted(refs)

        # A contract violation is not transient: no retry.
        @task(retries=0, map_index_template="{{ ref.split('/')[-2] }}")
        def validate(ref: str) -> str:
            from ml.validation import validate_batch

            return validate_batch(ref, dataset).manifest.ref

        @task(outlets=[validated], trigger_rule="all_done")
        def publish(refs: list[str], outlet_events=None) -> list[str]:
            from airflow.sdk.exceptions import AirflowSkipException

            from ml.storage import committed_in_zone

            passed = committed_in_zone(refs, "validated")
            if not passed:
                raise AirflowSkipException(f"no {dataset} batch passed validation")
            outlet_events[validated].extra = {"batches": passed}
            return passed

        # The run fails when a whole batch was held back (and the contract says `on_failure:
        # fail`), even though the good ones went on. Batches whose bad rows alone were held
        # back went on (their good rows are published).
        @task(trigger_rule="all_done")
        def verdict(refs: list[str]) -> None:
            import logging

            from ml.contracts import load_contract
            from ml.storage import committed_in_zone

            held = [
                r
                for r in refs
                if committed_in_zone([r], "quarantine") and not committed_in_zone([r], "validated")
            ]
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

        refs = new_batches()
        validate.expand(ref=refs) >> publish(refs) >> verdict(refs)

    return validate_dag()


for _dataset in available_datasets():
    build(_dataset)
