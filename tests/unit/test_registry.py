"""A promotion decision as the audit log, the version's tags and the DAG edge see it (no servers)."""

from __future__ import annotations

import json

import pytest

from ml.promotion_rule import DecisionRule
from ml.registry import PromotionDecision

pytestmark = pytest.mark.unit

CHALLENGER = {"roc_auc": 0.6, "accuracy": 0.8, "log_loss": 0.5, "brier": 0.17, "ece": 0.02}
CHAMPION = {**CHALLENGER, "roc_auc": 0.7}


def _decision(**changes) -> PromotionDecision:
    fields = {
        "model_name": "flights_delay",
        "version": "4",
        "promoted": True,
        "forced": True,
        "reasons": ("FORCED by alice despite the rule", "roc_auc 0.6000 does not beat ..."),
        "previous_champion": "3",
        "rule": DecisionRule(),
        "force": True,
        "requested_by": "alice",
        "by": "alice",
        "challenger_metrics": CHALLENGER,
        "champion_metrics": CHAMPION,
        "eval_snapshot": "s3://features/flights/fv-1/eval/",
        "eval_snapshot_hash": "abc123",
        "eval_rows": 900,
        "run_id": "manual__1",
        "audit_record": "s3://reports/promotions/flights_delay/x.json",
    }
    return PromotionDecision(**{**fields, **changes})


def test_the_audit_record_keeps_its_keys_in_their_order():
    record = _decision().audit_fields()
    assert list(record) == [
        "action",
        "version",
        "promoted",
        "forced",
        "previous_champion",
        "champion_after",
        "reason",
        "rule",
        "challenger_metrics",
        "champion_metrics",
        "eval_snapshot",
        "eval_snapshot_hash",
        "eval_rows",
        "by",
        "run_id",
        "approved_by",
    ]
    assert record["action"] == "promote" and record["champion_after"] == "4"
    assert record["reason"] == "FORCED by alice despite the rule; roc_auc 0.6000 does not beat ..."
    # The rule as recorded: the numbers' rule, then what the person asked for.
    assert record["rule"] == {
        "metric": "roc_auc",
        "min_improvement": 0.0,
        "guardrails": {"log_loss": 0.02, "ece": 0.05},
        "force": True,
        "requested_by": "alice",
    }
    assert json.loads(json.dumps(record)) == record


def test_a_refusal_keeps_the_champion():
    refused = _decision(promoted=False, forced=False, force=False, reasons=("no",))
    assert refused.action == "refuse" and refused.champion_after == "3"
    assert refused.audit_fields()["champion_after"] == "3"


def test_tags_on_the_judged_version():
    tags = _decision().tags()
    assert tags["promotion.promoted"] == "True" and tags["promotion.forced"] == "True"
    assert tags["promotion.challenger_score"] == "0.600000"
    assert tags["promotion.champion_score"] == "0.700000"
    assert tags["promotion.audit_record"].endswith("x.json")
    first = _decision(champion_metrics=None, previous_champion=None, forced=False).tags()
    assert first["promotion.champion_score"] == "None"
    assert all(isinstance(v, str) for v in tags.values())
