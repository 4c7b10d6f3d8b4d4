"""The champion/challenger decision rule, on metrics alone (no servers)."""

from __future__ import annotations

import numpy as np
import pytest

from ml import evaluate
from ml.evaluate import DecisionRule, EvaluationError, decide

pytestmark = pytest.mark.unit

CHAMPION = {"roc_auc": 0.70, "accuracy": 0.80, "log_loss": 0.50, "brier": 0.17, "ece": 0.02}


def with_(**changes):
    return {**CHAMPION, **changes}


def test_no_champion_is_promoted_with_that_reason():
    assert decide(CHAMPION, None, DecisionRule()) == (True, ["no champion yet"])


def test_a_worse_challenger_is_refused_and_the_numbers_are_in_the_reason():
    ok, reasons = decide(with_(roc_auc=0.65), CHAMPION, DecisionRule())
    assert not ok
    assert "0.6500 does not beat champion 0.7000" in reasons[0]


def test_an_equal_challenger_is_not_promoted_even_without_a_margin():
    ok, _ = decide(dict(CHAMPION), CHAMPION, DecisionRule(min_improvement=0.0))
    assert not ok


def test_the_minimum_improvement_is_required():
    rule = DecisionRule(min_improvement=0.02)
    assert not decide(with_(roc_auc=0.71), CHAMPION, rule)[0]
    assert decide(with_(roc_auc=0.73), CHAMPION, rule)[0]


def test_a_broken_guardrail_blocks_a_better_primary_metric():
    rule = DecisionRule(guardrails={"log_loss": 0.01, "ece": 0.05})
    ok, reasons = decide(with_(roc_auc=0.80, log_loss=0.60), CHAMPION, rule)
    assert not ok
    assert any(r.startswith("guardrail log_loss") and "allowed 0.01" in r for r in reasons)
    # Within the bound it passes.
    assert decide(with_(roc_auc=0.80, log_loss=0.505), CHAMPION, rule)[0]


def test_lower_is_better_metric_as_the_primary_one():
    rule = DecisionRule(metric="log_loss", min_improvement=0.01, guardrails={})
    assert decide(with_(log_loss=0.45), CHAMPION, rule)[0]
    assert not decide(with_(log_loss=0.495), CHAMPION, rule)[0]


def test_force_promotes_a_worse_model_and_says_so_and_who():
    rule = DecisionRule(force=True, requested_by="alice")
    ok, reasons = decide(with_(roc_auc=0.5), CHAMPION, rule)
    assert ok and reasons[0] == "FORCED by alice despite the rule"
    assert "does not beat" in reasons[1]


def test_rule_from_contract_and_params():
    rule = DecisionRule.from_params({"metric": "roc_auc", "margin": 0.01}, None)
    assert rule.min_improvement == 0.01 and rule.guardrails == evaluate.DEFAULT_GUARDRAILS
    rule = DecisionRule.from_params(
        {"metric": "roc_auc", "margin": 0.01},
        {"min_improvement": 0.0, "guardrails": {}, "force": True, "requested_by": "bob"},
    )
    assert rule.min_improvement == 0.0 and rule.guardrails == {} and rule.force


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "f1"}, "unknown metric 'f1'"),
        ({"guardrails": {"auc": 0.1}}, "unknown metric 'auc'"),
        ({"min_improvement": -0.1}, "min_improvement must be >= 0"),
        ({"guardrails": {"log_loss": -1}}, "guardrail 'log_loss' must be a bound >= 0"),
    ],
)
def test_bad_rules_are_refused_with_the_rule_named(kwargs, message):
    with pytest.raises(EvaluationError, match=message):
        DecisionRule(**kwargs)


def test_metrics_include_calibration():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, 20000) < p).astype(int)  # outcomes drawn at the stated probability
    calibrated = evaluate.metrics(y, p)
    overconfident = evaluate.metrics(y, np.full(len(y), 0.99))
    assert calibrated["ece"] < 0.03 < 0.4 < overconfident["ece"]
    assert overconfident["brier"] > calibrated["brier"]
    assert set(calibrated) >= {"roc_auc", "log_loss", "accuracy", "brier", "ece"}
