"""
### Promote

One DAG per data contract with a model (`promote_<dataset>`), started when training registers a
challenger (asset `mlflow://models/<model>/challenger`). The challenger and the current champion
are scored on the same frozen evaluation snapshot (pinned by content hash); `champion` moves only
when the challenger improves the primary metric by the minimum margin without breaking a
guardrail (e.g. log loss, calibration error). The old champion gets alias `previous`. The
decision, its numbers and reasons are tagged on the version and appended to the audit log in
`reports` (`mlpipe model history <model>`).

Promotions run in the one-slot pool `promotion`, so two never interleave. A promotion updates
the asset `mlflow://models/<model>/champion`, which starts batch scoring once.

**For a person**: trigger with a **Model version** to evaluate a given version; **Force** promotes
it whatever the numbers say, and the audit record says it was forced and by whom (the Airflow
user who triggered the run).

**Approval** (`model.approval: required` in the contract): `evaluate` shows what the decision
would be, `approve` waits for a person (Airflow's human-in-the-loop: *Required actions*, or the
task's page) with the numbers of both versions; on **Approve**, `promote` decides again under the
lock and moves the alias, the audit record naming the approver; **Reject**, or no answer within
three days, moves nothing.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, RetryAction, RetryRule, dag, task

from _mlpipe import (
    APPROVAL_TIMEOUT,
    DAG_TIMEOUTS,
    alias_asset,
    as_stage,
    dag_args,
    event_extras,
    retry_policy,
    task_args,
    trained_contracts,
    triggering_user,
)
from ml.assets import CHALLENGER, CHAMPION, champion_event
from ml.contracts import Contract
from ml.promotion_rule import KNOWN_METRICS, DecisionRule

# Fail closed, then retry by kind: a registry or store that did not answer is retried; a refusal
# (a version that could not be evaluated) is not, since a retry would meet the same version.
PROMOTION_RETRY_POLICY = retry_policy(
    RetryRule(
        exception="ml.errors.TransientError",
        action=RetryAction.DEFAULT,
        reason="the registry or the object store did not answer: retried with backoff",
    ),
    RetryRule(
        exception="ml.errors.RefusedError",
        action=RetryAction.FAIL,
        reason="refused and audited: fix the version, or force the promotion",
    ),
)


def promotion_arguments(
    params: dict[str, Any], extras: list[dict[str, Any]], contract: Contract, user: str = ""
) -> dict[str, Any]:
    """The library's plain arguments from a run's Params and its challenger events' extras:
    the version (the Param, else the newest challenger event of this model, which also names
    its evaluation snapshot; None: the library takes the `challenger` alias), the rule (the
    contract's, overridden by the Params), the force and who asks (`user`: the Airflow user
    who triggered the run)."""
    version, snapshot = params.get("model_version"), None
    if not version:
        mine = [
            e for e in extras if e.get("model_name") == contract.model_name and e.get("version")
        ]
        if mine:
            version, snapshot = str(mine[-1]["version"]), mine[-1].get("eval_snapshot")
    rule = DecisionRule.for_contract(
        contract.model,
        metric=params.get("metric"),
        min_improvement=params.get("min_improvement"),
        guardrails=params.get("guardrails"),
    )
    return {
        "version": str(version) if version else None,
        "eval_snapshot": snapshot,
        "rule": rule,
        "force": bool(params.get("force", False)),
        "requested_by": user,
    }


def approval_summary(preview: Any) -> str:
    """What the approver reads (Markdown): the versions, the decision's reasons, the metrics."""
    metrics = sorted(preview.challenger_metrics)
    champion = preview.champion_metrics or {}
    rows = "\n".join(
        f"| {m} | {preview.challenger_metrics[m]:.4f} | "
        + (f"{champion[m]:.4f}" if m in champion else "-")
        + " |"
        for m in metrics
    )
    return (
        f"Promote **{preview.model_name}** version **{preview.version}** "
        f"(champion now: {preview.previous_champion or 'none'})?\n\n"
        f"Decision on the frozen evaluation snapshot ({preview.eval_rows} rows): "
        f"{preview.reason}\n\n"
        f"| metric | version {preview.version} | champion |\n| --- | --- | --- |\n{rows}\n"
    )


def approver(approval: Any) -> str:
    """The Airflow user who answered the approval (its XCom), empty when there is none."""
    user = (approval or {}).get("responded_by_user") or {}
    return str(user.get("name") or user.get("id") or "")


# long: DAG builder (the DAG, its Params and its tasks declared in one place)
def build(dataset: str, contract: Contract):
    model_name = contract.model_name
    challenger = alias_asset(model_name, CHALLENGER)
    champion = alias_asset(model_name, CHAMPION)
    default = DecisionRule.for_contract(contract.model)  # the Params' defaults

    args = dag_args("promote", dataset, contract.owner)
    if contract.approval_required:  # the run waits for a person, up to APPROVAL_TIMEOUT
        args["dagrun_timeout"] = APPROVAL_TIMEOUT + DAG_TIMEOUTS["promote"]

    @dag(
        dag_id=f"promote_{dataset}",
        schedule=[challenger],
        **args,
        max_active_runs=1,
        doc_md=__doc__,
        tags=["promote", dataset],
        params={
            "model_version": Param(
                None,
                type=["null", "string"],
                title="Model version",
                description="Empty: the challenger that started this run (or the alias).",
                section="Challenger",
            ),
            "metric": Param(
                default.metric,
                type="string",
                enum=list(KNOWN_METRICS),
                title="Primary metric",
                section="Decision rule",
            ),
            "min_improvement": Param(
                default.min_improvement,
                type="number",
                minimum=0,
                title="Minimum improvement of the primary metric over the champion",
                section="Decision rule",
            ),
            "guardrails": Param(
                dict(default.guardrails),
                type="object",
                title="Guardrails",
                description="metric -> how much worse than the champion the challenger may be.",
                section="Decision rule",
            ),
            "force": Param(
                False,
                type="boolean",
                title="Force the promotion (recorded as forced, with who triggered the run)",
                section="Override (recorded)",
            ),
        },
    )
    def promote_dag():
        @task(**task_args("promote", PROMOTION_RETRY_POLICY), pool="promotion", outlets=[champion])
        @as_stage("promote")
        def promote(
            params=None,
            triggering_asset_events=None,
            outlet_events=None,
            run_id=None,
            dag_run=None,
            ti=None,
        ):
            from airflow.sdk.exceptions import AirflowSkipException

            from ml.registry import promote_challenger

            events = event_extras(triggering_asset_events)
            args = promotion_arguments(params, events, contract, triggering_user(dag_run))
            approved_by = ""
            if contract.approval_required:
                approved_by = approver(ti.xcom_pull(task_ids="approve"))
                args["version"] = ti.xcom_pull(task_ids="evaluate")["version"]  # what was shown
            decision = promote_challenger(
                dataset, **args, run_id=run_id or "", approved_by=approved_by
            )
            if not decision.promoted:
                raise AirflowSkipException(
                    f"not promoted: {decision.reason} (audit: {decision.audit_record})"
                )
            outlet_events[champion].extra = champion_event(
                model_name,
                {
                    "version": decision.version,
                    "action": decision.action,
                    "audit_record": decision.audit_record,
                },
            )
            return {
                "version": decision.version,
                "promoted": decision.promoted,
                "reason": decision.reason,
                "audit_record": decision.audit_record,
                "approved_by": approved_by or None,
            }

        if not contract.approval_required:
            promote()
            return

        @task(**task_args("promote", PROMOTION_RETRY_POLICY))
        @as_stage("promote")
        def evaluate(params=None, triggering_asset_events=None, run_id=None, dag_run=None):
            """What the promotion would decide; a refusal is decided (and audited) here."""
            from airflow.sdk.exceptions import AirflowSkipException

            from ml.registry import preview_challenger, promote_challenger

            events = event_extras(triggering_asset_events)
            args = promotion_arguments(params, events, contract, triggering_user(dag_run))
            preview = preview_challenger(dataset, **args)
            if not preview.promoted:  # nothing to approve: the refusal is recorded as usual
                decision = promote_challenger(dataset, **args, run_id=run_id or "")
                raise AirflowSkipException(
                    f"not promoted: {decision.reason} (audit: {decision.audit_record})"
                )
            return {
                "model_name": model_name,
                "version": preview.version,
                "summary": approval_summary(preview),
            }

        approve = ApprovalOperator(
            task_id="approve",
            subject=f"Promote {model_name} version "
            "{{ ti.xcom_pull(task_ids='evaluate')['version'] }}?",
            body="{{ ti.xcom_pull(task_ids='evaluate')['summary'] }}",
            defaults="Reject",  # no answer in time: nothing moves
            response_timeout=APPROVAL_TIMEOUT,
            **task_args("plan"),  # the try before the wait: small reads only
        )
        evaluate() >> approve >> promote()

    return promote_dag()


for _dataset, _contract in trained_contracts():
    build(_dataset, _contract)
