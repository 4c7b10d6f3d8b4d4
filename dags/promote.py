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
it whatever the numbers say, and the audit record says it was forced and by whom.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from _mlpipe import DAG_DEFAULTS, alias_asset, trained_contracts


def build(dataset: str, model_name: str, metric: str, margin: float):
    challenger = alias_asset(model_name, "challenger")
    champion = alias_asset(model_name, "champion")

    @dag(
        dag_id=f"promote_{dataset}",
        schedule=[challenger],
        **DAG_DEFAULTS,
        max_active_runs=1,
        doc_md=__doc__,
        tags=["promote", dataset],
        params={
            "model_version": Param(
                None,
                type=["null", "string"],
                title="Model version",
                description="Empty: the challenger that started this run (or the alias).",
            ),
            "metric": Param(
                metric,
                type="string",
                enum=["roc_auc", "accuracy", "log_loss", "brier", "ece"],
                title="Primary metric",
            ),
            "min_improvement": Param(
                float(margin),
                type="number",
                minimum=0,
                title="Minimum improvement of the primary metric over the champion",
            ),
            "guardrails": Param(
                {"log_loss": 0.02, "ece": 0.05},
                type="object",
                title="Guardrails",
                description="metric -> how much worse than the champion the challenger may be.",
            ),
            "force": Param(False, type="boolean", title="Force the promotion (recorded as forced)"),
            "requested_by": Param(
                None, type=["null", "string"], title="Who asks (recorded in the audit log)"
            ),
        },
    )
    def promote_dag():
        @task(pool="promotion", outlets=[champion])
        def promote(params=None, triggering_asset_events=None, outlet_events=None, run_id=None):
            from airflow.sdk.exceptions import AirflowSkipException

            from ml.registry import promote_challenger

            decision = promote_challenger(dataset, params, triggering_asset_events, run_id or "")
            if not decision["promoted"]:
                raise AirflowSkipException(
                    f"not promoted: {decision['reason']} (audit: {decision['audit_record']})"
                )
            outlet_events[champion].extra = {
                "model_name": model_name,
                "version": decision["version"],
                "action": "promote",
                "audit_record": decision["audit_record"],
            }
            return {k: decision[k] for k in ("version", "promoted", "reason", "audit_record")}

        promote()

    return promote_dag()


for _dataset, _contract in trained_contracts():
    build(
        _dataset,
        _contract.model_name,
        _contract.model.get("metric", "roc_auc"),
        _contract.model.get("margin", 0.0),
    )
