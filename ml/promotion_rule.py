"""The champion/challenger rule: which metrics, what gain, which guardrails, and the verdict.

Pure and light (the standard library and `ml.errors` only): DAG files derive their Params from
it at parse time, and `ml.registry` applies it to the metrics `ml.evaluate` measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ml.errors import RefusedError

# In the order a person is offered them (the promote DAG's metric choice). Binary targets are
# measured by roc_auc, pr_auc, accuracy, log_loss, brier, ece; multiclass targets by macro_f1,
# ovr_auc (one-vs-rest ROC AUC), accuracy, log_loss, ece (top-label); regression targets by
# rmse, mae, r2.
KNOWN_METRICS = (
    "roc_auc", "accuracy", "log_loss", "brier", "ece", "pr_auc",
    "macro_f1", "ovr_auc", "rmse", "mae", "r2",
)  # fmt: skip
# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece", "rmse", "mae"})
REGRESSION_METRICS = frozenset({"rmse", "mae", "r2"})
DEFAULT_METRIC = "roc_auc"
# Guardrails when neither the Params nor the contract set any: the challenger may not be
# worse than the champion by more than this on log loss or on calibration error (a class
# target); a regression target is judged on its primary metric alone.
DEFAULT_GUARDRAILS: Mapping[str, float] = {"log_loss": 0.02, "ece": 0.05}


def default_guardrails(metric: str) -> dict[str, float]:
    """The guardrails that go with a primary metric when none are set: none for regression."""
    return {} if metric in REGRESSION_METRICS else dict(DEFAULT_GUARDRAILS)


class EvaluationError(RefusedError):
    """A snapshot or a rule that cannot be evaluated (names the input and the rule)."""


@dataclass(frozen=True)
class DecisionRule:
    """Primary metric and minimum gain over the champion, plus guardrails on other metrics.

    `guardrails`: metric -> how much worse than the champion the challenger may be (in the
    metric's own units; 0 means "not worse").
    """

    metric: str = DEFAULT_METRIC
    min_improvement: float = 0.0
    guardrails: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_GUARDRAILS))

    def __post_init__(self) -> None:
        for name in [self.metric, *self.guardrails]:
            if name not in KNOWN_METRICS:
                raise EvaluationError(
                    f"decision rule: unknown metric {name!r}; known: {sorted(KNOWN_METRICS)}"
                )
        if self.min_improvement < 0:
            raise EvaluationError(
                f"decision rule: min_improvement must be >= 0, got {self.min_improvement}"
            )
        for name, bound in self.guardrails.items():
            if bound is None or bound < 0:
                raise EvaluationError(
                    f"decision rule: guardrail {name!r} must be a bound >= 0, got {bound!r}"
                )

    @classmethod
    def for_contract(
        cls,
        model_spec: Mapping[str, Any],
        *,
        metric: str | None = None,
        min_improvement: float | None = None,
        guardrails: Mapping[str, float] | None = None,
    ) -> DecisionRule:
        """The contract's `model:` section (`metric`, `margin`), overridden where an argument
        is given (None: not given). Default guardrails follow the metric (`default_guardrails`)."""
        metric = metric or model_spec.get("metric", DEFAULT_METRIC)
        return cls(
            metric=metric,
            min_improvement=float(
                model_spec.get("margin", 0.0) if min_improvement is None else min_improvement
            ),
            guardrails=default_guardrails(metric) if guardrails is None else dict(guardrails),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """The rule applied to two sets of metrics: promote or not, whether a person forced it,
    and the reasons (numbers included) in the order a person reads them."""

    promoted: bool
    reasons: tuple[str, ...]
    forced: bool = False


def _worse_by(metric: str, challenger: float, champion: float) -> float:
    """How much worse the challenger is than the champion (negative: better)."""
    return challenger - champion if metric in LOWER_IS_BETTER else champion - challenger


def _compare(
    challenger: Mapping[str, float], champion: Mapping[str, float], rule: DecisionRule
) -> tuple[bool, list[str]]:
    m = rule.metric
    for name in [m, *rule.guardrails]:
        if name not in challenger or name not in champion:
            raise EvaluationError(
                f"decision rule: metric {name!r} is not measured for this model's target "
                f"(measured: {sorted(challenger)}); choose a metric of its kind"
            )
    gain = -_worse_by(m, challenger[m], champion[m])
    ok = gain > 0 and gain >= rule.min_improvement
    verb = "beats" if ok else "does not beat"
    reasons = [
        f"{m} {challenger[m]:.4f} {verb} champion {champion[m]:.4f} "
        f"(gain {gain:+.4f}, required >= {rule.min_improvement})"
    ]
    for g, bound in sorted(rule.guardrails.items()):
        worse = _worse_by(g, challenger[g], champion[g])
        if worse > bound:
            ok = False
            reasons.append(
                f"guardrail {g}: {challenger[g]:.4f} is worse than champion "
                f"{champion[g]:.4f} by {worse:.4f} (allowed {bound})"
            )
    return ok, reasons


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    rule: DecisionRule,
    *,
    force: bool = False,
    requested_by: str = "",
) -> Verdict:
    """The verdict on a challenger's metrics against the champion's on one snapshot.

    Promoted when the primary metric improves by at least `min_improvement` (and strictly) and
    no guardrail is broken; or when a person forces it (`force`), which the verdict says
    (`forced`, and the first reason names who).
    """
    if champion is None:
        ok, reasons = True, ["no champion yet"]
    else:
        ok, reasons = _compare(challenger, champion, rule)
    if force and not ok:
        reasons.insert(0, f"FORCED by {requested_by or 'a person'} despite the rule")
        return Verdict(promoted=True, reasons=tuple(reasons), forced=True)
    return Verdict(promoted=ok, reasons=tuple(reasons))
