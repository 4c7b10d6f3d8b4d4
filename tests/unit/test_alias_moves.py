"""Which alias moves the webhook audits and schedules, from the audit log alone (no servers)."""

from __future__ import annotations

import pytest

from ml.alias_moves import (
    AliasMove,
    already_audited,
    guardrail_warnings,
    last_champion_record,
    move_record,
)

pytestmark = pytest.mark.unit

PROMOTED_3 = {"action": "promote", "promoted": True, "version": "3", "champion_after": "3"}
REFUSED_4 = {
    "action": "refuse",
    "promoted": False,
    "version": "4",
    "champion_after": "3",
    "reason": "roc_auc does not beat the champion",
}


def _move(version, delivery="d1"):
    return AliasMove("flights_delay", "champion", version, "mlflow:someone", delivery)


def test_our_promotion_is_already_audited():
    assert already_audited([PROMOTED_3], _move("3")) is PROMOTED_3
    rollback = {"action": "rollback", "promoted": True, "version": "2", "champion_after": "2"}
    assert already_audited([PROMOTED_3, rollback], _move("2")) is rollback


def test_a_refusal_does_not_move_the_champion():
    assert last_champion_record([PROMOTED_3, REFUSED_4]) is PROMOTED_3
    assert already_audited([PROMOTED_3, REFUSED_4], _move("4")) is None


def test_a_manual_move_is_not_audited_yet_and_warns():
    move = _move("4")
    records = [PROMOTED_3, REFUSED_4]
    assert already_audited(records, move) is None
    record = move_record(records, move)
    assert record["action"] == "alias_set" and record["champion_after"] == "4"
    assert record["previous_champion"] == "3" and record["by"] == "mlflow:someone"
    assert record["source"] == "mlflow-webhook" and record["delivery_id"] == "d1"
    assert any("no promotion record" in w for w in record["warnings"])
    assert any("refused it: roc_auc" in w for w in record["warnings"])
    # Once written, the same move is audited (a second delivery is not scored again).
    assert already_audited([*records, record], move) is record


def test_moving_back_to_a_promoted_version_keeps_the_guardrails():
    manual_4 = move_record([PROMOTED_3], _move("4"))
    back = _move("3")
    assert already_audited([PROMOTED_3, manual_4], back) is None
    assert guardrail_warnings([PROMOTED_3, manual_4], back) == []


def test_a_deleted_champion_is_recorded_with_a_warning():
    record = move_record([PROMOTED_3], _move(None))
    assert record["action"] == "alias_deleted" and record["champion_after"] is None
    assert "deleted" in record["warnings"][0]
    assert already_audited([PROMOTED_3, record], _move(None)) is record
    assert already_audited([], _move(None)) is None
