"""Evaluation: model versions scored on a frozen snapshot, and the champion/challenger rule.

The snapshot (the joined raw rows of a feature set's test split) is pinned by its content hash,
so a decision names exactly the rows both models were scored on. `decide` is a pure function
of the two sets of metrics and the rule: it is what a promotion applies and what a person
reads back in the audit log.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ml import storage
from ml.errors import RefusedError
from ml.features.derived import TARGET
from ml.metrics import binary_metrics, brier_score
from ml.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = {"log_loss", "brier", "ece"}
KNOWN_METRICS = {"roc_auc", "accuracy", "log_loss", "brier", "ece"}
# Guardrails when neither the Params nor the contract set any: the challenger may not be
# worse than the champion by more than this on log loss or on calibration error.
DEFAULT_GUARDRAILS = {"log_loss": 0.02, "ece": 0.05}


class EvaluationError(RefusedError):
    """A snapshot or a rule that cannot be evaluated (names the input and the rule)."""


@dataclass
class DecisionRule:
    """Primary metric and minimum gain over the champion, plus guardrails on other metrics.

    `guardrails`: metric -> how much worse than the champion the challenger may be (in the
    metric's own units; 0 means "not worse"). `force`: a person promotes regardless of the
    numbers; the decision records that it was forced and by whom.
    """

    metric: str = "roc_auc"
    min_improvement: float = 0.0
    guardrails: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_GUARDRAILS))
    force: bool = False
    requested_by: str = ""

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
    def from_params(cls, model_spec: dict[str, Any], params: dict[str, Any] | None) -> DecisionRule:
        """From the contract's `model:` section (`metric`, `margin`) overridden by run Params."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        guardrails = params.get("guardrails")
        return cls(
            metric=params.get("metric") or model_spec.get("metric", "roc_auc"),
            min_improvement=float(params.get("min_improvement", model_spec.get("margin", 0.0))),
            guardrails=dict(DEFAULT_GUARDRAILS if guardrails is None else guardrails),
            force=bool(params.get("force", False)),
            requested_by=str(params.get("requested_by") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metrics(y_true, proba) -> dict[str, float]:
    """ROC AUC, accuracy, log loss, Brier score and expected calibration error."""
    import numpy as np

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1 - 1e-7)
    return {**binary_metrics(y, p), "brier": brier_score(y, p)}


def load_snapshot(uri: str) -> tuple[pd.DataFrame, str]:
    """The labelled rows of a frozen evaluation snapshot and their content hash."""
    import pandas as pd

    try:
        rows = pd.read_parquet(uri, storage_options=get_settings().s3_storage_options())
    except FileNotFoundError:
        raise EvaluationError(f"evaluation snapshot {uri}: not found") from None
    if TARGET not in rows.columns or rows.empty:
        raise EvaluationError(
            f"evaluation snapshot {uri}: needs labelled rows (a {TARGET!r} column), "
            f"got {len(rows)} rows with columns {list(rows.columns)[:8]}..."
        )
    return rows, storage.content_hash(rows)


def evaluate_version(model_name: str, version: str, rows: pd.DataFrame) -> dict[str, float]:
    """A registered model version's metrics on labelled joined raw rows (its own transform)."""
    import mlflow.pyfunc

    from ml.tracking import client

    client()  # sets the tracking URI
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    proba = model.predict(rows.drop(columns=[TARGET]))["probability"]
    return metrics(rows[TARGET], proba)


def _worse_by(metric: str, challenger: float, champion: float) -> float:
    """How much worse the challenger is than the champion (negative: better)."""
    return challenger - champion if metric in LOWER_IS_BETTER else champion - challenger


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, rule: DecisionRule
) -> tuple[bool, list[str]]:
    """(promote?, reasons) for a challenger's metrics against the champion's on one snapshot.

    Promoted when the primary metric improves by at least `min_improvement` (and strictly) and
    no guardrail is broken; or when forced, which is said in the reasons.
    """
    m = rule.metric
    reasons: list[str] = []
    if champion is None:
        ok, reasons = True, ["no champion yet"]
    else:
        gain = -_worse_by(m, challenger[m], champion[m])
        ok = gain > 0 and gain >= rule.min_improvement
        verb = "beats" if ok else "does not beat"
        reasons.append(
            f"{m} {challenger[m]:.4f} {verb} champion {champion[m]:.4f} "
            f"(gain {gain:+.4f}, required >= {rule.min_improvement})"
        )
        for g, bound in sorted(rule.guardrails.items()):
            worse = _worse_by(g, challenger[g], champion[g])
            if worse > bound:
                ok = False
                reasons.append(
                    f"guardrail {g}: {challenger[g]:.4f} is worse than champion "
                    f"{champion[g]:.4f} by {worse:.4f} (allowed {bound})"
                )
    if rule.force and not ok:
        who = rule.requested_by or "a person"
        reasons.insert(0, f"FORCED by {who} despite the rule")
        ok = True
    return ok, reasons
