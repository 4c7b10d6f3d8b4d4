"""
### Operations a person decides

Two DAGs per data contract, triggered by hand from their forms; every audit record names the
Airflow user who triggered the run (not a free-text field).

- `rollback_<dataset>` (contracts with a model): `champion` moves back to `previous` in one step,
  audited like a promotion (`mlpipe model history <model>`); the champion asset event starts
  batch scoring with the restored champion. The **Reason** is recorded.
- `quarantine_<dataset>`: with its defaults it lists what validation holds back for the dataset;
  **Release** copies a held batch (or its bad rows) to `validated` (PII handled as the contract
  says), **Drop** marks it dropped; nothing is deleted, both are audited. The CLI does the same
  (`mlpipe quarantine ...`, `mlpipe model rollback ...`).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from _mlpipe import (
    alias_asset,
    as_stage,
    contracts,
    dag_args,
    task_args,
    trained_contracts,
    triggering_user,
)
from ml.assets import CHAMPION, champion_event
from ml.contracts import Contract

QUARANTINE_ACTIONS = ("list", "release", "drop")


def build_rollback(dataset: str, contract: Contract):
    model_name = contract.model_name
    champion = alias_asset(model_name, CHAMPION)

    @dag(
        dag_id=f"rollback_{dataset}",
        schedule=None,
        **dag_args("rollback", dataset, contract.owner),
        doc_md=__doc__,
        tags=["rollback", dataset],
        params={
            "reason": Param(
                None,
                type=["null", "string"],
                title="Why (recorded in the audit log)",
                section="Rollback",
            ),
        },
    )
    def rollback_dag():
        @task(**task_args("promote"), pool="promotion", outlets=[champion])
        @as_stage("promote")
        def rollback(params=None, dag_run=None, outlet_events=None):
            from ml.registry import rollback as roll_back

            who, reason = triggering_user(dag_run), params.get("reason") or ""
            record = roll_back(model_name, by=who, reason=reason)
            outlet_events[champion].extra = champion_event(model_name, record)
            return {**record, "model_name": model_name}

        rollback()

    return rollback_dag()


def build_quarantine(dataset: str, contract: Contract):
    @dag(
        dag_id=f"quarantine_{dataset}",
        schedule=None,
        **dag_args("quarantine", dataset, contract.owner),
        doc_md=__doc__,
        tags=["quarantine", dataset],
        params={
            "action": Param(
                "list",
                type="string",
                enum=list(QUARANTINE_ACTIONS),
                title="What to do",
                description="list: what is held; release: on to validated; drop: not wanted.",
                section="Action",
            ),
            "batch": Param(
                None,
                type=["null", "string"],
                title="Held batch (for release and drop)",
                description=f"s3://quarantine/{dataset}/<partition>/<batch id>, as listed.",
                section="Action",
            ),
            "note": Param(
                None,
                type=["null", "string"],
                title="Why (recorded in the audit log)",
                section="Action",
            ),
        },
    )
    def quarantine_dag():
        @task(**task_args("validate"))
        @as_stage("validate")
        def act(params=None, dag_run=None):
            from ml import quarantine
            from ml.errors import BadInputError

            action, batch = params["action"], params.get("batch")
            if action == "list":
                return {"held": [item.to_dict() for item in quarantine.held(dataset)]}
            if not batch or not str(batch).startswith(f"s3://quarantine/{dataset}/"):
                raise BadInputError(
                    f"quarantine_{dataset}: action {action!r} needs the Param 'batch', a held "
                    f"batch of {dataset} (s3://quarantine/{dataset}/...); got {batch!r}"
                )
            who, note = triggering_user(dag_run), params.get("note") or ""
            if action == "release":
                return quarantine.release(batch, by=who, note=note, contract=dataset)
            return quarantine.drop(batch, by=who, reason=note)

        act()

    return quarantine_dag()


for _dataset, _contract in trained_contracts():
    build_rollback(_dataset, _contract)
for _dataset, _contract in contracts():
    build_quarantine(_dataset, _contract)
