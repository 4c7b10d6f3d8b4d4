"""The champion/challenger decision rule, on metrics alone (no servers)."""

from __future__ import annotations

import pytest

from ml import promotion_rule
from ml.promotion_rule import DecisionRule, EvaluationError, Verdict, decide

pytestmark = pytest.mark.unit

CHAMPION = {"roc_auc": 0.70, "accuracy": 0.80, "log_loss": 0.50, "brier": 0.17, "ece": 0.02}


def with_(**changes):
    return {**CHAMPION, **changes}


def test_no_champion_is_promoted_with_that_reason():
    assert decide(CHAMPION, None, DecisionRule()) == Verdict(True, ("no champion yet",))


def test_a_worse_challenger_is_refused_and_the_numbers_are_in_the_reason():
    verdict = decide(with_(roc_auc=0.65), CHAMPION, DecisionRule())
    assert not verdict.promoted
    assert "0.6500 does not beat champion 0.7000" in verdict.reasons[0]


def test_an_equal_challenger_is_not_promoted_even_without_a_margin():
    verdict = decide(dict(CHAMPION), CHAMPION, DecisionRule(min_improvement=0.0))
    assert not verdict.promoted


def test_the_minimum_improvement_is_required():
    rule = DecisionRule(min_improvement=0.02)
    assert not decide(with_(roc_auc=0.71), CHAMPION, rule).promoted
    assert decide(with_(roc_auc=0.73), CHAMPION, rule).promoted


def test_a_broken_guardrail_blocks_a_better_primary_metric():
    rule = DecisionRule(guardrails={"log_loss": 0.01, "ece": 0.05})
    verdict = decide(with_(roc_auc=0.80, log_loss=0.60), CHAMPION, rule)
    assert not verdict.promoted
    assert any(r.startswith("guardrail log_loss") and "allowed 0.01" in r for r in verdict.reasons)
    # Within the bound it passes.
    assert decide(with_(roc_auc=0.80, log_loss=0.505), CHAMPION, rule).promoted


def test_lower_is_better_metric_as_the_primary_one():
    rule = DecisionRule(metric="log_loss", min_improvement=0.01, guardrails={})
    assert decide(with_(log_loss=0.45), CHAMPION, rule).promoted
    assert not decide(with_(log_loss=0.495), CHAMPION, rule).promoted


def test_force_promotes_a_worse_model_and_says_so_and_who():
    verdict = decide(with_(roc_auc=0.5), CHAMPION, DecisionRule(), force=True, requested_by="alice")
    assert verdict.promoted and verdict.reasons[0] == "FORCED by alice despite the rule"
    assert "does not beat" in verdict.reasons[1]
    assert verdict.forced


def test_force_is_only_recorded_when_it_changed_the_outcome():
    better = decide(with_(roc_auc=0.9), CHAMPION, DecisionRule(), force=True)
    assert better.promoted and not better.forced
    assert not any(r.startswith("FORCED") for r in better.reasons)
    nobody = decide(with_(roc_auc=0.5), CHAMPION, DecisionRule(), force=True)
    assert nobody.forced and nobody.reasons[0] == "FORCED by a person despite the rule"


def test_rule_from_contract_and_params():
    rule = DecisionRule.for_contract({"metric": "roc_auc", "margin": 0.01})
    assert rule.min_improvement == 0.01 and rule.guardrails == promotion_rule.DEFAULT_GUARDRAILS
    rule = DecisionRule.for_contract(
        {"metric": "roc_auc", "margin": 0.01}, min_improvement=0.0, guardrails={}
    )
    assert rule.min_improvement == 0.0 and rule.guardrails == {}
    # Not given (None) or empty: the contract's metric, else the default one.
    assert DecisionRule.for_contract({"metric": "log_loss"}, metric=None).metric == "log_loss"
    assert DecisionRule.for_contract({}, metric="").metric == promotion_rule.DEFAULT_METRIC


def test_the_rule_as_recorded():
    assert DecisionRule().to_dict() == {
        "metric": "roc_auc",
        "min_improvement": 0.0,
        "guardrails": {"log_loss": 0.02, "ece": 0.05},
    }


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


def test_regression_and_multiclass_metrics_know_their_direction():
    rule = DecisionRule.for_contract({"metric": "rmse"})
    assert rule.guardrails == {}  # log loss and ECE measure classes, not values
    assert decide({"rmse": 9.0}, {"rmse": 10.0}, rule).promoted  # lower RMSE is better
    assert not decide({"rmse": 11.0}, {"rmse": 10.0}, rule).promoted
    assert not decide({"r2": 0.1}, {"r2": 0.2}, DecisionRule("r2", guardrails={})).promoted
    multi = DecisionRule.for_contract({"metric": "macro_f1"})
    assert multi.guardrails == {"log_loss": 0.02, "ece": 0.05}
    better = {"macro_f1": 0.5, "log_loss": 0.8, "ece": 0.01}
    assert decide(better, {"macro_f1": 0.4, "log_loss": 0.8, "ece": 0.01}, multi).promoted


def test_a_metric_the_target_does_not_measure_is_refused_not_ignored():
    rule = DecisionRule.for_contract({"metric": "roc_auc"})
    with pytest.raises(EvaluationError, match="'roc_auc' is not measured"):
        decide({"rmse": 1.0}, {"rmse": 2.0}, rule)
